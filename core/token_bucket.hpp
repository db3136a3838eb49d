// A token bucket (rate limiter) as a value type with time passed in: refills lazily at
// `rate` tokens per second up to `burst`. Not thread-safe; the owner serialises access.
#pragma once

#include <chrono>
#include <cstdint>

namespace gw::core {

using nanos = std::chrono::nanoseconds; // a point on a monotonic clock, as a duration since its epoch

struct rate_decision
{
    bool allowed = false;
    std::int64_t limit = 0;         // the burst (X-RateLimit-Limit)
    std::int64_t remaining = 0;     // whole tokens left after this decision (X-RateLimit-Remaining)
    std::int64_t reset_seconds = 0; // until the bucket is full again, rounded up (X-RateLimit-Reset)
    std::int64_t retry_after_seconds = 0; // when refused: until one token is available, rounded up
};

// The decision a bucket of `rate` and `burst` holding `tokens` reports. Seconds are rounded
// up and capped at about 31,700 years (a rate near zero makes them arbitrarily large).
rate_decision describe_bucket(double rate, double burst, double tokens, bool allowed);

class token_bucket
{
public:
    token_bucket(double rate_per_second, double burst, nanos now);

    // Takes one token if there is one.
    rate_decision try_acquire(nanos now);
    // The state without taking a token.
    rate_decision peek(nanos now);

    double tokens(nanos now);
    // New rate and burst (a config reload); the tokens held so far stay, up to the new burst.
    void reconfigure(double rate_per_second, double burst, nanos now);

private:
    void refill(nanos now);

    double rate_;
    double burst_;
    double tokens_;
    nanos last_;
};

} // namespace gw::core
