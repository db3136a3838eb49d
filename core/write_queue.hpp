// Writes that must reach a shared store eventually but never on the request path
// (settlements, lease releases and renewals, ownership records), as a sans-io queue with
// time passed in. Items are independent: they may land in any order. Items are sent in batches: when `batch` are waiting, or `delay` after the
// oldest one arrived. A batch that did not land is tried again after a pause that doubles
// from `first_retry` to `max_retry`; an item still failing `give_up_after` after it was
// queued, or pushed while `max_pending` wait, is dropped and counted. Retried items must
// be idempotent: a failed batch may have been applied in part.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <deque>
#include <map>
#include <utility>
#include <vector>

namespace gw::core {

struct write_queue_limits
{
    std::chrono::milliseconds delay{2};
    std::size_t batch = 256;
    std::chrono::milliseconds first_retry{100};
    std::chrono::milliseconds max_retry{5'000};
    std::chrono::milliseconds give_up_after{300'000};
    std::size_t max_pending = 100'000;
};

template <typename Item> class write_queue
{
public:
    using clock = std::chrono::steady_clock;
    using time_point = clock::time_point;
    struct entry
    {
        Item item;
        time_point queued;
        std::chrono::milliseconds pause{0}; // before the last retry
    };

    explicit write_queue(write_queue_limits limits = {}) : limits_(limits) {}

    // False (the item is dropped and counted) when max_pending items already wait.
    bool push(Item item, time_point now)
    {
        if (size() >= limits_.max_pending) {
            ++dropped_;
            return false;
        }
        fresh_.push_back(entry{std::move(item), now, {}});
        return true;
    }

    // When the next batch is due: at once when `batch` items are waiting, else `delay`
    // after the oldest new item or at the earliest retry; time_point::max() when empty.
    time_point next_flush() const
    {
        auto at = time_point::max();
        if (!fresh_.empty()) at = fresh_.size() >= limits_.batch ? fresh_.front().queued : fresh_.front().queued + limits_.delay;
        if (!retries_.empty()) at = std::min(at, retries_.begin()->first);
        return at;
    }

    // The batch to send at `now`: new items, newest first, then due retries; at most
    // `batch` (or `most`, if smaller). Newest first: after an outage, what running requests
    // give back now must not wait behind the backlog (items must not depend on each other's
    // order; the oldest wait longest when writes come faster than they can be sent).
    std::vector<entry> take(time_point now, std::size_t most = std::numeric_limits<std::size_t>::max())
    {
        std::vector<entry> out;
        most = std::min(most, limits_.batch);
        while (!fresh_.empty() && out.size() < most) {
            out.push_back(std::move(fresh_.back()));
            fresh_.pop_back();
        }
        while (!retries_.empty() && retries_.begin()->first <= now && out.size() < most) {
            out.push_back(std::move(retries_.begin()->second));
            retries_.erase(retries_.begin());
        }
        return out;
    }

    // The new items (not retries) that `wanted` picks, oldest first, at most `most` (beyond
    // the batch size): what must reach the store before a call about to be sent.
    template <typename Pred> std::vector<entry> take_new_if(Pred wanted, std::size_t most)
    {
        std::vector<entry> out;
        std::deque<entry> rest;
        for (auto& e : fresh_) {
            if (out.size() < most && wanted(e.item))
                out.push_back(std::move(e));
            else
                rest.push_back(std::move(e));
        }
        fresh_ = std::move(rest);
        return out;
    }

    // Entries of a batch that did not land: queued again after their pause, unless they
    // have waited give_up_after (then dropped and counted).
    void retry(std::vector<entry> failed, time_point now)
    {
        for (auto& e : failed) {
            if (now - e.queued >= limits_.give_up_after) {
                ++dropped_;
                continue;
            }
            e.pause = e.pause.count() == 0 ? limits_.first_retry : std::min(limits_.max_retry, e.pause * 2);
            ++retried_;
            auto at = now + e.pause;
            retries_.emplace(at, std::move(e));
        }
    }

    // The store answers again: every waiting retry is due at `now` (pauses were for an outage).
    void retry_now(time_point now)
    {
        std::multimap<time_point, entry> due;
        for (auto& [at, e] : retries_) due.emplace(std::min(at, now), std::move(e));
        retries_ = std::move(due);
    }

    std::size_t size() const { return fresh_.size() + retries_.size(); }
    std::uint64_t dropped() const { return dropped_; }
    std::uint64_t retried() const { return retried_; }

private:
    write_queue_limits limits_;
    std::deque<entry> fresh_;
    std::multimap<time_point, entry> retries_;
    std::uint64_t dropped_ = 0;
    std::uint64_t retried_ = 0;
};

} // namespace gw::core
