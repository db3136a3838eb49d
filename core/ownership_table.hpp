// Which tenant created a Dify resource (task, conversation, workflow run, uploaded file),
// so that another tenant sharing the app cannot use it where Dify itself does not check
// the end user (stop of workflow tasks, workflow run details, file previews, file
// references: reference §3.3, §3.6, §7). The in-process table: bounded (oldest records
// go first), entries expire, time is passed in. Thread-safe: one short lock per call.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace gw::core {

enum class owned_kind
{
    task,
    conversation,
    workflow_run,
    file,
};
const char* kind_name(owned_kind k); // "task", "conversation", "workflow_run", "file"

class ownership_table
{
public:
    explicit ownership_table(std::size_t capacity = 1'000'000) : capacity_(capacity) {}

    // Records `tenant` as the owner of `id` for `ttl_seconds` from `now` (unix seconds).
    // The first owner stays while its record lasts: another tenant cannot take it over.
    void record(owned_kind kind, std::string_view id, std::string_view tenant, std::int64_t now, std::int64_t ttl_seconds);
    // The owner of `id` at `now`; nullopt when unknown or expired.
    std::optional<std::string> owner(owned_kind kind, std::string_view id, std::int64_t now);
    std::size_t size();

private:
    struct entry
    {
        std::string tenant;
        std::int64_t expires_at;
    };
    static std::string key(owned_kind kind, std::string_view id);

    std::mutex m_;
    std::size_t capacity_;
    std::unordered_map<std::string, entry> entries_;
    std::deque<std::string> order_; // insertion order, for the capacity bound
};

} // namespace gw::core
