// Retry decisions, Retry-After parsing, the retry budget and the circuit breaker, with
// injected time and randomness.
#include "core/retry.hpp"

#include <gtest/gtest.h>

namespace gw::core {
namespace {

using namespace std::chrono_literals;

const retry_settings settings{3, 100ms, 2000ms};
double half() { return 0.5; }
double one() { return 0.999999; }

TEST(Retry, WhatIsRetried)
{
    for (auto f : {upstream_failure::connect, upstream_failure::status_429, upstream_failure::status_502,
                   upstream_failure::status_503, upstream_failure::status_504, upstream_failure::concurrency_limit})
        EXPECT_TRUE(decide_retry(settings, 1, f, true, false, std::nullopt, 10s, half).retry) << static_cast<int>(f);
    EXPECT_FALSE(decide_retry(settings, 1, upstream_failure::other, false, true, std::nullopt, 10s, half).retry);
    EXPECT_FALSE(decide_retry(settings, 1, upstream_failure::status_500, true, false, std::nullopt, 10s, half).retry)
        << "a generation may have run";
    EXPECT_TRUE(decide_retry(settings, 1, upstream_failure::status_500, false, true, std::nullopt, 10s, half).retry)
        << "a GET once";
    EXPECT_FALSE(decide_retry(settings, 2, upstream_failure::status_500, false, true, std::nullopt, 10s, half).retry);
    EXPECT_FALSE(decide_retry(settings, 3, upstream_failure::status_503, false, true, std::nullopt, 10s, half).retry)
        << "max_attempts";
    auto stale = decide_retry(settings, 1, upstream_failure::stale_connection, true, false, std::nullopt, 10s, half);
    EXPECT_TRUE(stale.retry);
    EXPECT_EQ(stale.delay, 0ns);
}

TEST(Retry, FullJitterBackoffRetryAfterAndDeadline)
{
    EXPECT_EQ(decide_retry(settings, 1, upstream_failure::status_503, false, true, std::nullopt, 10s, half).delay, 50ms);
    EXPECT_EQ(decide_retry(settings, 2, upstream_failure::status_503, false, true, std::nullopt, 10s, half).delay, 100ms);
    auto capped = decide_retry(retry_settings{10, 100ms, 300ms}, 6, upstream_failure::status_503, false, true, std::nullopt, 10s, one);
    EXPECT_LE(capped.delay, 300ms);
    EXPECT_GT(capped.delay, 299ms);
    EXPECT_EQ(decide_retry(settings, 1, upstream_failure::status_503, false, true, std::nullopt, 10s, [] { return 0.0; }).delay, 0ns);
    auto honoured = decide_retry(settings, 1, upstream_failure::status_429, false, true, 2s, 10s, half);
    EXPECT_TRUE(honoured.retry);
    EXPECT_EQ(honoured.delay, 2s);
    EXPECT_FALSE(decide_retry(settings, 1, upstream_failure::status_429, false, true, 2s, 1s, half).retry)
        << "Retry-After beyond the deadline";
}

TEST(Retry, RetryAfterForms)
{
    EXPECT_EQ(parse_retry_after("2", 0), 2s);
    EXPECT_EQ(parse_retry_after(" 0 ", 0), 0s);
    EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111770), 7s);
    EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111790), 0s) << "a past date: at once";
    EXPECT_FALSE(parse_retry_after("-1", 0));
    EXPECT_FALSE(parse_retry_after("soon", 0));
}

TEST(Retry, Classification)
{
    EXPECT_EQ(classify_status(400, "invalid_param", "Too many requests. Please try again later."), upstream_failure::concurrency_limit);
    EXPECT_EQ(classify_status(400, "invalid_param", "query is required"), upstream_failure::other);
    EXPECT_EQ(classify_status(503, "", ""), upstream_failure::status_503);
    EXPECT_EQ(classify_status(200, "", ""), std::nullopt);
    EXPECT_EQ(classify_status(404, "not_found", ""), upstream_failure::other);
}

TEST(Retry, RepliesWorthHoldingForARetryDecision)
{
    for (int status : {400, 429, 500, 502, 503, 504}) EXPECT_TRUE(may_be_retryable_status(status)) << status;
    for (int status : {200, 201, 204, 301, 401, 403, 404, 413, 415, 422, 501, 505}) EXPECT_FALSE(may_be_retryable_status(status)) << status;
}

TEST(RetryBudget, CapsRetriesAtAShareOfRequests)
{
    retry_budget b(20, 10s, 3);
    nanos t = 100s;
    for (int i = 0; i < 100; ++i) b.on_request(t);
    int granted = 0;
    for (int i = 0; i < 50; ++i) granted += b.try_spend(t) ? 1 : 0;
    EXPECT_EQ(granted, 20);
    EXPECT_EQ(b.denied(), 30);
    // A quiet upstream still gets its floor of retries.
    retry_budget quiet(20, 10s, 3);
    quiet.on_request(t);
    EXPECT_TRUE(quiet.try_spend(t));
    EXPECT_TRUE(quiet.try_spend(t));
    EXPECT_TRUE(quiet.try_spend(t));
    EXPECT_FALSE(quiet.try_spend(t));
    // The window slides.
    EXPECT_TRUE(quiet.try_spend(t + 11s));
}

TEST(CircuitBreaker, OpensHalfOpensAndCloses)
{
    circuit_breaker cb(3, 5s);
    nanos t = 0s;
    for (int i = 0; i < 2; ++i) cb.on_failure(t);
    EXPECT_EQ(cb.current(), circuit_breaker::state::closed);
    cb.on_success(); // resets the count
    for (int i = 0; i < 3; ++i) cb.on_failure(t);
    EXPECT_EQ(cb.current(), circuit_breaker::state::open);
    EXPECT_FALSE(cb.allow(t + 4s));
    EXPECT_TRUE(cb.allow(t + 5s)) << "the probe";
    EXPECT_EQ(cb.current(), circuit_breaker::state::half_open);
    EXPECT_FALSE(cb.allow(t + 5s)) << "only one probe";
    cb.on_failure(t + 6s);
    EXPECT_EQ(cb.current(), circuit_breaker::state::open);
    EXPECT_FALSE(cb.allow(t + 10s));
    EXPECT_TRUE(cb.allow(t + 11s));
    cb.on_success();
    EXPECT_EQ(cb.current(), circuit_breaker::state::closed);
    EXPECT_TRUE(cb.allow(t + 11s));
    EXPECT_EQ(cb.transitions(), 5);
}

} // namespace
} // namespace gw::core
