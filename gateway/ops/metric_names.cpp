#include "gateway/ops/metric_names.hpp"

namespace gw::gateway {

metric_names& metric_names::process()
{
    static metric_names names;
    return names;
}

metric_names::metric_names()
{
    pair("", ""); // id 0: anonymous
}

std::uint32_t metric_names::intern(table& t, std::string_view name)
{
    std::lock_guard lock(mutex_);
    auto [it, added] = t.ids.try_emplace(std::string(name), static_cast<std::uint32_t>(t.names.size()));
    if (added) t.names.emplace_back(name);
    return it->second;
}

std::uint32_t metric_names::pair(std::string_view tenant, std::string_view app)
{
    std::string key(tenant);
    key.push_back('\0');
    key += app;
    std::lock_guard lock(mutex_);
    auto [it, added] = pair_ids_.try_emplace(std::move(key), static_cast<std::uint32_t>(pairs_.size()));
    if (added) pairs_.emplace_back(std::string(tenant), std::string(app));
    return it->second;
}

metric_names::labels metric_names::all() const
{
    std::lock_guard lock(mutex_);
    return {tenants_.names, upstreams_.names, pairs_};
}

} // namespace gw::gateway
