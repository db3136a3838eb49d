// core::write_queue with simulated time: batching by size and delay, retries with a
// doubling pause, giving up (counted) after give_up_after, and the bound on what waits.
#include "core/write_queue.hpp"

#include <gtest/gtest.h>

namespace gw::core {
namespace {

using namespace std::chrono_literals;
using queue = write_queue<int>;

write_queue_limits limits()
{
    write_queue_limits l;
    l.delay = 2ms;
    l.batch = 3;
    l.first_retry = 100ms;
    l.max_retry = 400ms;
    l.give_up_after = 1000ms;
    l.max_pending = 5;
    return l;
}

std::vector<int> items(const std::vector<queue::entry>& batch)
{
    std::vector<int> out;
    for (const auto& e : batch) out.push_back(e.item);
    return out;
}

TEST(WriteQueue, ABatchGoesADelayAfterItsFirstItemOrAtOnceWhenFull)
{
    queue q(limits());
    const queue::time_point t0{};
    EXPECT_EQ(q.next_flush(), queue::time_point::max()) << "nothing to send";
    q.push(1, t0);
    q.push(2, t0 + 1ms);
    EXPECT_EQ(q.next_flush(), t0 + 2ms) << "the oldest item waits `delay` for company";
    q.push(3, t0 + 1ms);
    EXPECT_EQ(q.next_flush(), t0) << "a full batch is due at once";
    q.push(4, t0 + 1ms);
    EXPECT_EQ(items(q.take(t0 + 1ms)), (std::vector<int>{4, 3, 2})) << "at most `batch`, newest first";
    EXPECT_EQ(q.next_flush(), t0 + 2ms);
    EXPECT_EQ(items(q.take(t0 + 2ms)), (std::vector<int>{1}));
    EXPECT_EQ(q.size(), 0u);
}

TEST(WriteQueue, FailedItemsComeBackAfterADoublingPauseThenAreDroppedAndCounted)
{
    queue q(limits());
    const queue::time_point t0{};
    q.push(7, t0);
    auto batch = q.take(t0 + 2ms);
    q.retry(std::move(batch), t0 + 10ms);
    EXPECT_EQ(q.retried(), 1u);
    EXPECT_EQ(q.next_flush(), t0 + 110ms) << "first_retry after the failure";
    EXPECT_TRUE(q.take(t0 + 50ms).empty()) << "not before its pause";
    batch = q.take(t0 + 110ms);
    ASSERT_EQ(items(batch), std::vector<int>{7});
    q.retry(std::move(batch), t0 + 120ms);
    EXPECT_EQ(q.next_flush(), t0 + 320ms) << "the pause doubles";
    batch = q.take(t0 + 320ms);
    q.retry(std::move(batch), t0 + 330ms);
    EXPECT_EQ(q.next_flush(), t0 + 730ms) << "400 ms: max_retry caps it";
    batch = q.take(t0 + 730ms);
    q.retry(std::move(batch), t0 + 1000ms);
    EXPECT_EQ(q.size(), 0u) << "still failing give_up_after after it was queued";
    EXPECT_EQ(q.dropped(), 1u);
}

TEST(WriteQueue, WhenTheStoreAnswersAgainEveryRetryIsDueAtOnce)
{
    queue q(limits());
    const queue::time_point t0{};
    q.push(1, t0);
    q.push(2, t0);
    auto batch = q.take(t0 + 2ms);
    q.retry(std::move(batch), t0 + 10ms);
    EXPECT_EQ(q.next_flush(), t0 + 110ms);
    q.retry_now(t0 + 20ms);
    EXPECT_EQ(q.next_flush(), t0 + 20ms);
    EXPECT_EQ(items(q.take(t0 + 20ms)), (std::vector<int>{2, 1})) << "retries in the order they failed";
}

TEST(WriteQueue, NewItemsGoBeforeRetriesAndTheQueueIsBounded)
{
    queue q(limits());
    const queue::time_point t0{};
    q.push(1, t0);
    q.retry(q.take(t0), t0);
    for (int i = 2; i <= 5; ++i) EXPECT_TRUE(q.push(i, t0 + 100ms));
    EXPECT_FALSE(q.push(6, t0 + 100ms)) << "max_pending waiting: dropped";
    EXPECT_EQ(q.dropped(), 1u);
    EXPECT_EQ(items(q.take(t0 + 100ms)), (std::vector<int>{5, 4, 3})) << "new items first, newest first";
    EXPECT_EQ(items(q.take(t0 + 100ms)), (std::vector<int>{2, 1})) << "then the due retry";
}

TEST(WriteQueue, PickedNewItemsAreTakenAllAtOnceAndRetriesStay)
{
    auto l = limits();
    l.max_pending = 100;
    queue q(l);
    const queue::time_point t0{};
    q.push(10, t0);
    q.retry(q.take(t0), t0); // 10 waits as a retry
    for (int i = 1; i <= 8; ++i) q.push(i, t0);
    auto even = [](int i) { return i % 2 == 0; };
    EXPECT_EQ(items(q.take_new_if(even, 100)), (std::vector<int>{2, 4, 6, 8})) << "more than a batch, oldest first; the retry stays";
    EXPECT_EQ(q.size(), 5u);
    EXPECT_EQ(items(q.take(t0 + 1s)), (std::vector<int>{7, 5, 3})) << "the others keep their order";
    EXPECT_TRUE(q.take_new_if(even, 100).empty());
    for (int i = 20; i <= 28; i += 2) q.push(i, t0);
    EXPECT_EQ(items(q.take_new_if(even, 2)), (std::vector<int>{20, 22})) << "at most `most`";
    EXPECT_EQ(items(q.take_new_if(even, 100)), (std::vector<int>{24, 26, 28}));
}

} // namespace
} // namespace gw::core
