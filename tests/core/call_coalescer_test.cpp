// core::call_coalescer: an idle group sends at once, calls made while its batch is in
// flight go together when it returns, a full batch goes without waiting, groups are
// independent, and idle groups are forgotten.
#include "core/call_coalescer.hpp"

#include <gtest/gtest.h>

namespace gw::core {
namespace {

using coalescer = call_coalescer<int>;

TEST(CallCoalescer, AnIdleGroupSendsAtOnce)
{
    coalescer c;
    EXPECT_EQ(c.add("t", 1), std::vector<int>{1}) << "nothing in flight: no added wait";
    EXPECT_TRUE(c.done("t").empty()) << "nothing waited";
    EXPECT_EQ(c.groups(), 0u) << "an idle group is forgotten";
    EXPECT_EQ(c.add("t", 2), std::vector<int>{2});
}

TEST(CallCoalescer, CallsMadeWhileABatchIsInFlightGoTogetherWhenItReturns)
{
    coalescer c;
    ASSERT_EQ(c.add("t", 1), std::vector<int>{1});
    EXPECT_TRUE(c.add("t", 2).empty()) << "waits for the batch in flight";
    EXPECT_TRUE(c.add("t", 3).empty());
    EXPECT_EQ(c.waiting("t"), 2u);
    EXPECT_EQ(c.done("t"), (std::vector<int>{2, 3})) << "one batch, in arrival order";
    EXPECT_TRUE(c.add("t", 4).empty()) << "the batch of 2 and 3 is in flight now";
    EXPECT_EQ(c.done("t"), std::vector<int>{4});
    EXPECT_TRUE(c.done("t").empty());
    EXPECT_EQ(c.groups(), 0u);
}

TEST(CallCoalescer, AFullBatchGoesWithoutWaiting)
{
    coalescer c(3);
    ASSERT_EQ(c.add("t", 1), std::vector<int>{1});
    EXPECT_TRUE(c.add("t", 2).empty());
    EXPECT_TRUE(c.add("t", 3).empty());
    EXPECT_EQ(c.add("t", 4), (std::vector<int>{2, 3, 4})) << "max_batch waiting: sent beside the one in flight";
    EXPECT_TRUE(c.add("t", 5).empty());
    EXPECT_TRUE(c.done("t").empty()) << "another batch is still in flight: 5 waits for it";
    EXPECT_EQ(c.done("t"), std::vector<int>{5});
    EXPECT_TRUE(c.done("t").empty());
    EXPECT_EQ(c.groups(), 0u);
}

TEST(CallCoalescer, GroupsAreIndependent)
{
    coalescer c;
    ASSERT_EQ(c.add("busy", 1), std::vector<int>{1});
    EXPECT_TRUE(c.add("busy", 2).empty());
    EXPECT_EQ(c.add("other", 3), std::vector<int>{3}) << "another tenant's batch in flight does not hold this one";
    EXPECT_EQ(c.done("other"), std::vector<int>{});
    EXPECT_EQ(c.waiting("busy"), 1u);
    EXPECT_EQ(c.done("busy"), std::vector<int>{2});
}

TEST(CallCoalescer, DoneForAnUnknownGroupChangesNothing)
{
    coalescer c;
    EXPECT_TRUE(c.done("nobody").empty());
    EXPECT_EQ(c.groups(), 0u);
    coalescer one(0);
    ASSERT_EQ(one.add("t", 1), std::vector<int>{1}) << "a max_batch of 0 is taken as 1";
    EXPECT_EQ(one.add("t", 2), std::vector<int>{2});
}

} // namespace
} // namespace gw::core
