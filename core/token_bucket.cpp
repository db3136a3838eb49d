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

rate_decision token_bucket::describe(bool allowed) const
{
    rate_decision d;
    d.allowed = allowed;
    d.limit = static_cast<std::int64_t>(burst_);
    d.remaining = static_cast<std::int64_t>(std::floor(std::max(0.0, tokens_)));
    d.reset_seconds = static_cast<std::int64_t>(std::ceil((burst_ - tokens_) / rate_));
    if (!allowed) d.retry_after_seconds = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil((1.0 - tokens_) / rate_)));
    return d;
}

rate_decision token_bucket::try_acquire(nanos now)
{
    refill(now);
    if (tokens_ < 1.0) return describe(false);
    tokens_ -= 1.0;
    return describe(true);
}

rate_decision token_bucket::peek(nanos now)
{
    refill(now);
    return describe(true);
}

} // namespace gw::core
