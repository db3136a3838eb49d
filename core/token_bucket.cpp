#include "core/token_bucket.hpp"

#include <algorithm>
#include <cmath>

namespace gw::core {

token_bucket::token_bucket(double rate_per_second, double burst, nanos now)
    : rate_(rate_per_second), burst_(burst), tokens_(burst), last_(now)
{
}

void token_bucket::refill(nanos now)
{
    if (now > last_) {
        double elapsed = std::chrono::duration<double>(now - last_).count();
        tokens_ = std::min(burst_, tokens_ + elapsed * rate_);
        last_ = now;
    }
}

void token_bucket::reconfigure(double rate_per_second, double burst, nanos now)
{
    refill(now);
    rate_ = rate_per_second;
    burst_ = burst;
    tokens_ = std::min(tokens_, burst_);
}

double token_bucket::tokens(nanos now)
{
    refill(now);
    return tokens_;
}

namespace {

// Whole seconds, rounded up, within [0, 1e12]: a double beyond int64's range (or infinite)
// must not be converted.
std::int64_t whole_seconds(double s)
{
    return static_cast<std::int64_t>(std::clamp(std::ceil(s), 0.0, 1e12));
}

} // namespace

rate_decision describe_bucket(double rate, double burst, double tokens, bool allowed)
{
    rate_decision d;
    d.allowed = allowed;
    d.limit = static_cast<std::int64_t>(burst);
    d.remaining = static_cast<std::int64_t>(std::floor(std::max(0.0, tokens)));
    d.reset_seconds = whole_seconds((burst - tokens) / rate);
    if (!allowed) d.retry_after_seconds = std::max<std::int64_t>(1, whole_seconds((1.0 - tokens) / rate));
    return d;
}

rate_decision token_bucket::try_acquire(nanos now)
{
    refill(now);
    if (tokens_ < 1.0) return describe_bucket(rate_, burst_, tokens_, false);
    tokens_ -= 1.0;
    return describe_bucket(rate_, burst_, tokens_, true);
}

rate_decision token_bucket::peek(nanos now)
{
    refill(now);
    return describe_bucket(rate_, burst_, tokens_, true);
}

} // namespace gw::core
