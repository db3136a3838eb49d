// A daily LLM-token budget with reservations: a request is admitted while
// the day's budget is not spent and reserves an estimate of what it will use (at most
// what is left), so concurrent requests cannot overshoot a nearly spent budget unnoticed;
// when it ends it is settled exactly once with what it really used. Days are UTC days,
// from an injected wall clock. Not thread-safe; the owner serialises access.
#pragma once

#include <cstdint>

namespace gw::core {

// Days since the Unix epoch for a UTC time in seconds.
inline std::int64_t utc_day(std::int64_t unix_seconds)
{
    return unix_seconds >= 0 ? unix_seconds / 86400 : (unix_seconds - 86399) / 86400;
}

struct reservation
{
    std::int64_t day = 0;
    std::int64_t amount = 0; // tokens held back until settlement
    bool admitted = false;
};

class token_budget
{
public:
    explicit token_budget(std::int64_t tokens_per_day) : limit_(tokens_per_day) {}

    // Admits a request on `day` unless the budget is spent; reserves min(estimate, left).
    reservation reserve(std::int64_t day, std::int64_t estimate);
    // Settles a reservation with the tokens actually used. Usage of a reservation made on
    // an earlier day is charged to that day, which is gone: it no longer counts.
    void settle(const reservation& r, std::int64_t day, std::int64_t used);

    std::int64_t used(std::int64_t day);
    std::int64_t reserved(std::int64_t day);
    std::int64_t remaining(std::int64_t day);
    std::int64_t limit() const { return limit_; }
    void set_limit(std::int64_t tokens_per_day) { limit_ = tokens_per_day; } // a config reload; usage stays

private:
    void roll(std::int64_t day);

    std::int64_t limit_;
    std::int64_t day_ = 0;
    std::int64_t used_ = 0;
    std::int64_t reserved_ = 0;
};

// Estimates a request's token use from recent completed requests of the same app:
// an exponentially weighted moving average, seeded with `initial`.
class usage_estimator
{
public:
    explicit usage_estimator(std::int64_t initial = 1000, double weight = 0.2) : estimate_(static_cast<double>(initial)), weight_(weight) {}
    std::int64_t estimate() const { return static_cast<std::int64_t>(estimate_ + 0.5); }
    void observe(std::int64_t used) { estimate_ += weight_ * (static_cast<double>(used) - estimate_); }

private:
    double estimate_;
    double weight_;
};

} // namespace gw::core
