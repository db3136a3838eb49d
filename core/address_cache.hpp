// When a pool looks up its upstream's addresses, and which addresses it connects to
// meanwhile (sans-io: the pool runs the lookups and passes the time in; not thread-safe).
//
// Addresses are reused for `ttl` after a lookup. Past that they are still used while one
// new lookup runs in the background: a resolver that is slow or down neither holds up new
// connections nor fails them while the upstream's address has not changed (the last
// addresses are kept however long lookups fail). Only a pool with no address yet, or whose
// last connect failed (the address may have moved), waits for the lookup, and falls back
// to the addresses it had when the lookup fails or takes too long. One lookup at a time:
// every request needing one waits for the same. After a failed lookup the next starts no
// sooner than `retry_after`.
#pragma once

#include <chrono>
#include <vector>

namespace gw::core {

template <class Address>
class address_cache
{
public:
    using nanos = std::chrono::nanoseconds; // a point on a monotonic clock

    address_cache(nanos ttl, nanos retry_after) : ttl_(ttl), retry_after_(retry_after) {}

    struct use_step
    {
        bool start_lookup = false; // the caller starts the lookup (on_lookup reports its end)
        bool wait = false;         // wait for the running lookup (bounded), then use addresses()
    };
    // A connection is about to be opened.
    [[nodiscard]] use_step on_use(nanos now)
    {
        const bool need_fresh = addresses_.empty() || suspect_;
        if (!running_ && (need_fresh || now >= fresh_until_) && now >= retry_at_) {
            running_ = true;
            return {true, need_fresh};
        }
        return {false, running_ && need_fresh};
    }
    // The lookup ended: `found` empty means it failed (the last addresses stay).
    void on_lookup(const std::vector<Address>& found, nanos now)
    {
        running_ = false;
        if (found.empty()) {
            retry_at_ = now + retry_after_;
            ++failures_;
            return;
        }
        addresses_ = found;
        fresh_until_ = now + ttl_;
        suspect_ = false;
        failures_ = 0;
    }
    void on_connect_failed() { suspect_ = !addresses_.empty(); }
    void on_connected() { suspect_ = false; }

    const std::vector<Address>& addresses() const { return addresses_; }
    bool looking_up() const { return running_; }
    int failed_lookups() const { return failures_; } // in a row, since the last that found any

private:
    nanos ttl_;
    nanos retry_after_;
    std::vector<Address> addresses_;
    nanos fresh_until_{};
    nanos retry_at_{};
    bool running_ = false;
    bool suspect_ = false;
    int failures_ = 0;
};

} // namespace gw::core
