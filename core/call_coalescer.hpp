// Group commit for calls to a shared store, as a sans-io state machine: calls of one group
// (one tenant's admissions) made while an earlier call of that group is in flight wait,
// and go together as one call when it comes back. An idle group sends a call at once (no
// added delay at low load); under load each round trip carries everything that arrived
// during the previous one, so the store runs one script per batch instead of one per
// call. A group with `max_batch` calls waiting sends them without waiting (its calls are
// then in flight side by side). Groups are independent: one tenant's slow or busy calls
// never hold up another's.
// The driver sends every batch `add` or `done` returns, and calls `done` once per batch
// when it is answered (or failed). Not thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace gw::core {

template <typename Item> class call_coalescer
{
public:
    explicit call_coalescer(std::size_t max_batch = 64) : max_batch_(max_batch < 1 ? 1 : max_batch) {}

    // Adds a call to `group`: the batch to send now (the call, with any that waited), or
    // empty when the call waits for the group's batch in flight.
    std::vector<Item> add(const std::string& group, Item item)
    {
        auto& g = groups_[group];
        g.waiting.push_back(std::move(item));
        if (g.in_flight > 0 && g.waiting.size() < max_batch_) return {};
        ++g.in_flight;
        return std::exchange(g.waiting, {});
    }

    // A batch of `group` came back: the batch to send next (the calls that waited for it),
    // or empty when none did.
    std::vector<Item> done(const std::string& group)
    {
        auto it = groups_.find(group);
        if (it == groups_.end()) return {};
        auto& g = it->second;
        if (g.in_flight > 0) --g.in_flight;
        if (!g.waiting.empty() && g.in_flight == 0) {
            ++g.in_flight;
            return std::exchange(g.waiting, {});
        }
        if (g.in_flight == 0) groups_.erase(it); // idle: forgotten, so that groups do not accumulate
        return {};
    }

    std::size_t waiting(const std::string& group) const
    {
        auto it = groups_.find(group);
        return it == groups_.end() ? 0 : it->second.waiting.size();
    }
    std::size_t groups() const { return groups_.size(); }

private:
    struct group_state
    {
        std::vector<Item> waiting;
        std::size_t in_flight = 0;
    };
    std::size_t max_batch_;
    std::unordered_map<std::string, group_state> groups_;
};

} // namespace gw::core
