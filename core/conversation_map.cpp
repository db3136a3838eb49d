#include "core/conversation_map.hpp"

#include <algorithm>

namespace gw::core {

std::size_t conversation_map::tenant_index(std::string_view tenant)
{
    auto it = std::find(tenants_.begin(), tenants_.end(), tenant);
    if (it != tenants_.end()) return static_cast<std::size_t>(it - tenants_.begin());
    tenants_.emplace_back(tenant);
    return tenants_.size() - 1;
}

void conversation_map::remember(
    std::string_view tenant,
    std::string_view key,
    std::string_view conversation_id,
    std::int64_t now,
    std::int64_t ttl_seconds
)
{
    std::lock_guard lock(m_);
    const auto generation = ++next_generation_;
    entries_[std::string(key)] = entry{std::string(conversation_id), now + ttl_seconds, generation};
    order_.push(tenant_index(tenant), {std::string(key), generation});
    auto live = [this](const std::pair<std::string, std::uint64_t>& queued) {
        auto it = entries_.find(queued.first);
        return it != entries_.end() && it->second.generation == queued.second ? it : entries_.end();
    };
    // The tenant holding the most gives way; a queued write that a later one replaced only
    // leaves the queue.
    while (entries_.size() > capacity_) {
        const auto [owner, old] = order_.pop_from_largest();
        if (auto it = live(old); it != entries_.end()) entries_.erase(it);
    }
    if (order_.size() > 2 * capacity_ + 1) // mostly replaced writes: keep the live ones, in order (amortized O(1))
        order_.erase_if([&](std::size_t, const auto& queued) { return live(queued) == entries_.end(); });
}

std::optional<std::string> conversation_map::find(std::string_view key, std::int64_t now)
{
    std::lock_guard lock(m_);
    auto it = entries_.find(std::string(key));
    if (it == entries_.end()) return std::nullopt;
    if (it->second.expires_at <= now) {
        entries_.erase(it);
        return std::nullopt;
    }
    return it->second.conversation_id;
}

std::size_t conversation_map::size()
{
    std::lock_guard lock(m_);
    return entries_.size();
}

} // namespace gw::core
