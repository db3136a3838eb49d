#include "core/ownership_table.hpp"

namespace gw::core {

const char* kind_name(owned_kind k)
{
    switch (k) {
    case owned_kind::task: return "task";
    case owned_kind::conversation: return "conversation";
    case owned_kind::workflow_run: return "workflow_run";
    case owned_kind::file: return "file";
    }
    return "unknown";
}

std::string ownership_table::key(owned_kind kind, std::string_view id)
{
    std::string k(kind_name(kind));
    k += ':';
    k += id;
    return k;
}

void ownership_table::record(owned_kind kind, std::string_view id, std::string_view tenant, std::int64_t now,
                             std::int64_t ttl_seconds)
{
    const std::int64_t expires_at = now + ttl_seconds;
    if (id.empty() || capacity_ == 0) return;
    auto k = key(kind, id);
    std::lock_guard lock(m_);
    auto it = entries_.find(k);
    if (it != entries_.end()) {
        if (it->second.tenant == tenant) {
            it->second.expires_at = expires_at; // the owner's use extends it
        } else if (it->second.expires_at <= now) {
            it->second = entry{std::string(tenant), expires_at}; // the old record had expired
        }
        return;
    }
    while (entries_.size() >= capacity_ && !order_.empty()) {
        entries_.erase(order_.front());
        order_.pop_front();
    }
    entries_.emplace(k, entry{std::string(tenant), expires_at});
    order_.push_back(std::move(k));
}

std::optional<std::string> ownership_table::owner(owned_kind kind, std::string_view id, std::int64_t now)
{
    auto k = key(kind, id);
    std::lock_guard lock(m_);
    auto it = entries_.find(k);
    if (it == entries_.end() || it->second.expires_at <= now) return std::nullopt;
    return it->second.tenant;
}

std::size_t ownership_table::size()
{
    std::lock_guard lock(m_);
    return entries_.size();
}

} // namespace gw::core
