// The preconnect plan: how many upstream connections a worker keeps open ahead of demand.
#include "core/preconnect.hpp"

#include <gtest/gtest.h>

using gw::core::preconnect_plan;
using namespace std::chrono_literals;

namespace {
constexpr auto t0 = std::chrono::nanoseconds(std::chrono::hours(1));
}

TEST(Preconnect, ARatioOfOneOrLessOpensNothingAhead)
{
    for (double ratio : {0.0, 1.0}) {
        preconnect_plan plan(ratio, 100);
        plan.leased(50, t0);
        EXPECT_FALSE(plan.enabled());
        EXPECT_EQ(plan.wanted(t0), 0);
        EXPECT_EQ(plan.to_open(0, t0), 0);
    }
}

TEST(Preconnect, KeepsRatioTimesTheConnectionsInUseRoundedUp)
{
    preconnect_plan plan(1.5, 100);
    EXPECT_EQ(plan.wanted(t0), 0) << "nothing used yet: nothing opened ahead";
    plan.leased(1, t0);
    EXPECT_EQ(plan.wanted(t0), 2) << "one stream: one spare";
    EXPECT_EQ(plan.to_open(1, t0), 1);
    plan.leased(2, t0);
    EXPECT_EQ(plan.wanted(t0), 3) << "1.5 × 2 is 3, not 4 (no floating-point round-up)";
    EXPECT_EQ(plan.to_open(3, t0), 0) << "connections already opening count";
    plan.leased(10, t0 + 1ms);
    EXPECT_EQ(plan.to_open(12, t0 + 1ms), 3);
    EXPECT_EQ(plan.to_open(20, t0 + 1ms), 0) << "more open than wanted: nothing to open (the idle timeout closes spares)";
}

TEST(Preconnect, NeverWantsMoreThanMaxConnections)
{
    preconnect_plan plan(3.0, 8);
    plan.leased(5, t0);
    EXPECT_EQ(plan.wanted(t0), 8);
    EXPECT_EQ(plan.to_open(5, t0), 3);
}

TEST(Preconnect, APeakIsRememberedForAWindowAndForgottenAfterTwo)
{
    preconnect_plan plan(2.0, 100, 10s);
    plan.leased(10, t0);
    plan.leased(0, t0 + 1s); // the burst ended
    EXPECT_EQ(plan.wanted(t0 + 1s), 20) << "a burst's spares stay wanted after it";
    EXPECT_EQ(plan.wanted(t0 + 12s), 20) << "the previous window's peak still counts";
    plan.leased(3, t0 + 15s);
    EXPECT_EQ(plan.wanted(t0 + 15s), 20);
    EXPECT_EQ(plan.wanted(t0 + 23s), 6) << "the burst's window is two windows old; this window's peak is 3";
    EXPECT_EQ(plan.wanted(t0 + 60s), 0) << "quiet for two windows: nothing wanted";
}

TEST(Preconnect, AFailedPreconnectPausesPreconnectingForTheBackoff)
{
    preconnect_plan plan(2.0, 100, 10s, 1s);
    plan.leased(4, t0);
    plan.failed(t0);
    EXPECT_EQ(plan.to_open(4, t0 + 999ms), 0) << "the upstream may be down: requests connect on their own meanwhile";
    EXPECT_EQ(plan.wanted(t0 + 999ms), 8) << "what is wanted does not change";
    EXPECT_EQ(plan.to_open(4, t0 + 1s), 4);
}

TEST(Preconnect, AZeroWindowIsTheShortestOne)
{
    preconnect_plan plan(2.0, 100, std::chrono::nanoseconds(0)); // half of a 1 ms idle timeout, rounded down
    plan.leased(3, t0);
    EXPECT_EQ(plan.wanted(t0), 6);
    EXPECT_EQ(plan.wanted(t0 + 1ms), 0) << "windows of 1 ns: the peak is long gone";
}
