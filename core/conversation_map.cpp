#include "core/conversation_map.hpp"

namespace gw::core {

void conversation_map::remember(
    std::string_view key, std::string_view conversation_id, std::int64_t now, std::int64_t ttl_seconds
)
{
    std::lock_guard lock(m_);
    const auto generation = ++next_generation_;
    entries_[std::string(key)] = entry{std::string(conversation_id), now + ttl_seconds, generation};
    order_.emplace_back(std::string(key), generation);
    // The oldest writes go first; a queued write that a later one replaced only leaves the queue.
    while (entries_.size() > capacity_) {
        auto [old_key, old_generation] = std::move(order_.front());
        order_.pop_front();
        if (auto it = entries_.find(old_key); it != entries_.end() && it->second.generation == old_generation)
            entries_.erase(it);
    }
    if (order_.size() >
        2 * capacity_ + 1) { // mostly replaced writes: keep the live ones, in order (amortized O(1))
        std::erase_if(order_, [this](const auto& queued) {
            auto it = entries_.find(queued.first);
            return it == entries_.end() || it->second.generation != queued.second;
        });
    }
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
