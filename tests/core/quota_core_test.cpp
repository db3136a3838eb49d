// Quota arithmetic with injected clocks: the token bucket (burst, refill, headers,
// Retry-After) and the daily budget (reservation, settlement, UTC rollover).
#include "core/token_bucket.hpp"
#include "core/token_budget.hpp"

#include <gtest/gtest.h>

namespace gw::core {
namespace {

using namespace std::chrono_literals;

TEST(TokenBucket, BurstThenRefillAtTheConfiguredRate)
{
    nanos t = 1000s;
    token_bucket b(10, 20, t);
    for (int i = 0; i < 20; ++i) {
        auto d = b.try_acquire(t);
        ASSERT_TRUE(d.allowed) << i;
        EXPECT_EQ(d.remaining, 19 - i);
        EXPECT_EQ(d.limit, 20);
    }
    auto refused = b.try_acquire(t);
    EXPECT_FALSE(refused.allowed);
    EXPECT_EQ(refused.remaining, 0);
    EXPECT_EQ(refused.retry_after_seconds, 1) << "0.1 s, rounded up";
    EXPECT_EQ(refused.reset_seconds, 2) << "20 tokens at 10/s";
    EXPECT_FALSE(b.try_acquire(t + 99ms).allowed);
    EXPECT_TRUE(b.try_acquire(t + 100ms).allowed);
    // Over 10 s exactly 100 more are admitted.
    int admitted = 0;
    for (nanos now = t + 100ms; now <= t + 10100ms; now += 1ms) admitted += b.try_acquire(now).allowed ? 1 : 0;
    EXPECT_EQ(admitted, 100);
}

TEST(TokenBucket, NeverExceedsBurstAndHandlesSlowRates)
{
    nanos t = 0s;
    token_bucket b(0.5, 1, t);
    EXPECT_TRUE(b.try_acquire(t).allowed);
    auto d = b.try_acquire(t);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.retry_after_seconds, 2);
    EXPECT_DOUBLE_EQ(b.tokens(t + 1h), 1.0);
    EXPECT_TRUE(b.try_acquire(t + 1h).allowed);
    EXPECT_FALSE(b.try_acquire(t + 1h - 1s).allowed) << "time going backwards adds nothing";
}

TEST(TokenBucket, ARateNearZeroReportsCappedSecondsNotAnOverflow)
{
    // The config takes any rate above 0: seconds beyond int64's range (or infinite) are
    // capped, not converted (undefined behaviour, caught by UBSan).
    nanos t = 0s;
    token_bucket b(1e-320, 1e9, t);
    EXPECT_TRUE(b.try_acquire(t).allowed);
    auto d = describe_bucket(1e-320, 1e9, 0.5, false);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.retry_after_seconds, 1'000'000'000'000);
    EXPECT_EQ(d.reset_seconds, 1'000'000'000'000);
    EXPECT_EQ(d.remaining, 0);
    EXPECT_EQ(describe_bucket(2, 10, 10, true).reset_seconds, 0) << "a full bucket resets now";
    EXPECT_EQ(describe_bucket(2, 10, 9.5, true).reset_seconds, 1);
}

TEST(TokenBudget, ReservesAtMostWhatIsLeftAndSettlesOnce)
{
    token_budget b(1000);
    auto r1 = b.reserve(100, 300);
    ASSERT_TRUE(r1.admitted);
    EXPECT_EQ(r1.amount, 300);
    auto r2 = b.reserve(100, 900);
    ASSERT_TRUE(r2.admitted);
    EXPECT_EQ(r2.amount, 700) << "capped at what is left";
    EXPECT_FALSE(b.reserve(100, 1).admitted) << "reserved to the limit";
    b.settle(r1, 100, 120);
    EXPECT_EQ(b.used(100), 120);
    EXPECT_EQ(b.reserved(100), 700);
    EXPECT_EQ(b.remaining(100), 180);
    b.settle(r2, 100, 880); // the stream used more than reserved
    EXPECT_EQ(b.used(100), 1000);
    EXPECT_EQ(b.remaining(100), 0);
    EXPECT_FALSE(b.reserve(100, 10).admitted) << "budget spent";
}

TEST(TokenBudget, RollsOverAtUtcMidnight)
{
    EXPECT_EQ(utc_day(86399), 0);
    EXPECT_EQ(utc_day(86400), 1);
    EXPECT_EQ(utc_day(-1), -1);
    const std::int64_t day = utc_day(1'795'681'914);
    token_budget b(100);
    auto r = b.reserve(day, 100);
    EXPECT_FALSE(b.reserve(day, 1).admitted);
    auto next = b.reserve(day + 1, 40);
    EXPECT_TRUE(next.admitted) << "a new UTC day, a new budget";
    b.settle(r, day + 1, 90); // yesterday's request ends today: not charged to today
    EXPECT_EQ(b.used(day + 1), 0);
    EXPECT_EQ(b.reserved(day + 1), 40);
    b.settle(next, day + 1, 30);
    EXPECT_EQ(b.used(day + 1), 30);
    EXPECT_EQ(b.remaining(day + 1), 70);
}

TEST(UsageEstimator, FollowsRecentUsage)
{
    usage_estimator e(1000, 0.5);
    EXPECT_EQ(e.estimate(), 1000);
    e.observe(200);
    EXPECT_EQ(e.estimate(), 600);
    for (int i = 0; i < 20; ++i) e.observe(200);
    EXPECT_EQ(e.estimate(), 200);
}

} // namespace
} // namespace gw::core
