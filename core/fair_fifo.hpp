// Insertion order per owner, for bounded tables that tenants share (the ownership table,
// the conversation map): when such a table is full, the owner holding the most entries
// gives up its oldest. A tenant that fills the table evicts its own entries, never those
// of a tenant holding fewer than it does. Not thread-safe: the table's lock covers it.
#pragma once

#include <cstddef>
#include <deque>
#include <utility>
#include <vector>

namespace gw::core {

template <typename Key>
class fair_fifo
{
public:
    // `owner` is a small index (the table interns its tenants).
    void push(std::size_t owner, Key k)
    {
        if (owner >= queues_.size()) queues_.resize(owner + 1);
        queues_[owner].push_back(std::move(k));
        ++size_;
    }

    // The oldest entry of the owner holding the most (the first such owner on a tie).
    // Must not be called when empty.
    std::pair<std::size_t, Key> pop_from_largest()
    {
        const std::size_t largest = largest_owner();
        auto& q = queues_[largest];
        std::pair<std::size_t, Key> out{largest, std::move(q.front())};
        q.pop_front();
        --size_;
        return out;
    }

    // The entry pop_from_largest() would return next. Must not be called when empty.
    const Key& next_from_largest() const { return queues_[largest_owner()].front(); }

    // Drops the queued entries `stale(owner, key)` names, keeping the order of the rest.
    template <typename Pred>
    void erase_if(Pred stale)
    {
        size_ = 0;
        for (std::size_t owner = 0; owner < queues_.size(); ++owner) {
            auto& q = queues_[owner];
            std::erase_if(q, [&](const Key& k) { return stale(owner, k); });
            size_ += q.size();
        }
    }

    std::size_t size() const { return size_; }
    std::size_t size_of(std::size_t owner) const { return owner < queues_.size() ? queues_[owner].size() : 0; }

private:
    std::size_t largest_owner() const
    {
        std::size_t largest = 0;
        for (std::size_t i = 1; i < queues_.size(); ++i)
            if (queues_[i].size() > queues_[largest].size()) largest = i;
        return largest;
    }

    std::vector<std::deque<Key>> queues_;
    std::size_t size_ = 0;
};

} // namespace gw::core
