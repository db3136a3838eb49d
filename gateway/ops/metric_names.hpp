// Small ids for the names metrics are labelled with (tenants, apps, upstreams, and
// (tenant, app) pairs), given out when a configuration is loaded so that a request
// counts by index, never by string. Ids are process-wide and never reused: a request
// still running on an older configuration counts under the names it started with, and
// a reload that renames nothing changes no id. Locked: used at config load and by
// scrapes, never on the data path.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace gw::gateway {

class metric_names
{
public:
    // Pair id 0 is ("", ""): a request no tenant was found for.
    static constexpr std::uint32_t anonymous = 0;

    static metric_names& process();

    std::uint32_t tenant(std::string_view name) { return intern(tenants_, name); }
    std::uint32_t app(std::string_view name) { return intern(apps_, name); }
    std::uint32_t upstream(std::string_view name) { return intern(upstreams_, name); }
    // ("tenant", "") names a tenant's requests refused before an app was chosen.
    std::uint32_t pair(std::string_view tenant, std::string_view app);

    // Every name so far, indexed by id (for a scrape).
    struct labels
    {
        std::vector<std::string> tenants, upstreams;
        std::vector<std::pair<std::string, std::string>> pairs;
    };
    labels all() const;

    metric_names();

private:
    struct table
    {
        std::vector<std::string> names;
        std::unordered_map<std::string, std::uint32_t> ids;
    };
    std::uint32_t intern(table& t, std::string_view name);

    mutable std::mutex mutex_;
    table tenants_, apps_, upstreams_;
    std::unordered_map<std::string, std::uint32_t> pair_ids_; // "tenant\0app" -> index in pairs_
    std::vector<std::pair<std::string, std::string>> pairs_;
};

} // namespace gw::gateway
