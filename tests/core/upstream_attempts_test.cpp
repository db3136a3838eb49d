// core::attempt_machine with simulated time and scripted outcomes: every retry sequence
// the gateway runs against a failing Dify (connect failures, 429/502/503/504, Dify's
// concurrency 400, 500 on generations and on GETs, stale pooled connections, streamed
// bodies), Retry-After, key rotation on 429, the retry budget, held replies, and the
// circuit breaker opening, refusing, probing and closing.
#include "core/upstream_attempts.hpp"

#include <gtest/gtest.h>

namespace gw::core {
namespace {

using namespace std::chrono_literals;
using step = attempt_step;

struct fixture
{
    circuit_breaker breaker{5, 5s};
    retry_budget budget{20.0};
    double jitter = 0.5; // every backoff is half of its cap

    attempt_machine call(attempt_settings s = {}, nanos now = 0s)
    {
        if (s.deadline == 0s) s.deadline = now + 30s;
        s.retry = {3, 100ms, 2000ms};
        return attempt_machine(s, breaker, budget, [this] { return jitter; });
    }
};

TEST(UpstreamAttempts, ASuccessIsRelayedAfterOneAttempt)
{
    fixture f;
    auto m = f.call();
    EXPECT_EQ(m.start(0s).step, step::acquire);
    EXPECT_EQ(m.replied(1ms, 200, std::nullopt, std::nullopt, false).step, step::relay);
    EXPECT_EQ(m.attempts(), 1);
    EXPECT_FALSE(m.holds_reply());
}

TEST(UpstreamAttempts, ConnectFailuresBackOffWithJitterThenFail)
{
    fixture f;
    auto m = f.call();
    ASSERT_EQ(m.start(0s).step, step::acquire);
    auto a = m.acquire_failed(0s);
    EXPECT_EQ(a.step, step::wait);
    EXPECT_EQ(a.delay, 50ms) << "full jitter: half of the 100 ms cap";
    EXPECT_EQ(a.retrying, upstream_failure::connect);
    ASSERT_EQ(m.resume(50ms).step, step::acquire);
    a = m.acquire_failed(50ms);
    EXPECT_EQ(a.delay, 100ms) << "the cap doubles";
    ASSERT_EQ(m.resume(150ms).step, step::acquire);
    EXPECT_EQ(m.acquire_failed(150ms).step, step::fail_connect) << "max_attempts 3";
    EXPECT_EQ(m.attempts(), 3);
}

TEST(UpstreamAttempts, RetryableRepliesAreHeldAndPassedOnWhenRetriesEnd)
{
    fixture f;
    auto m = f.call();
    m.start(0s);
    for (int status : {503, 502}) {
        auto a = m.replied(1ms, status, status == 503 ? upstream_failure::status_503 : upstream_failure::status_502, std::nullopt, false);
        EXPECT_EQ(a.step, step::wait) << status;
        EXPECT_TRUE(m.holds_reply());
        m.resume(1s);
    }
    EXPECT_EQ(m.replied(2s, 504, upstream_failure::status_504, std::nullopt, false).step, step::pass_held)
        << "the third attempt's reply is the answer";
    EXPECT_EQ(m.attempts(), 3);
}

TEST(UpstreamAttempts, A429TriesTheAppsNextKeyAtOnceThenBacksOff)
{
    fixture f;
    attempt_settings s;
    s.key_count = 2;
    auto m = f.call(s);
    m.start(0s);
    auto a = m.replied(0s, 429, upstream_failure::status_429, std::nullopt, false);
    EXPECT_EQ(a.step, step::wait);
    EXPECT_EQ(a.delay, 0s) << "another key: no reason to wait";
    EXPECT_TRUE(a.rotate_key);
    m.resume(0s);
    a = m.replied(1ms, 429, upstream_failure::status_429, std::nullopt, false);
    EXPECT_EQ(a.step, step::wait);
    EXPECT_FALSE(a.rotate_key) << "both keys tried";
    EXPECT_EQ(a.delay, 100ms);
}

TEST(UpstreamAttempts, RetryAfterIsHonouredAndNotBeyondTheDeadline)
{
    fixture f;
    attempt_settings s;
    s.deadline = 10s;
    auto m = f.call(s);
    m.start(0s);
    auto a = m.replied(0s, 503, upstream_failure::status_503, 3s, false);
    EXPECT_EQ(a.step, step::wait);
    EXPECT_EQ(a.delay, 3s) << "Retry-After longer than the backoff wins";
    m.resume(3s);
    EXPECT_EQ(m.replied(3s, 503, upstream_failure::status_503, 20s, false).step, step::pass_held)
        << "a retry that cannot finish before the deadline is not made";
}

TEST(UpstreamAttempts, A500IsRetriedOnceForAGetAndNeverForAGeneration)
{
    fixture f;
    attempt_settings gen;
    gen.generating = true;
    auto post = f.call(gen);
    post.start(0s);
    EXPECT_EQ(post.replied(0s, 500, upstream_failure::status_500, std::nullopt, false).step, step::pass_held)
        << "a generation may have run";
    attempt_settings get;
    get.safe_method = true;
    auto m = f.call(get);
    m.start(0s);
    EXPECT_EQ(m.replied(0s, 500, upstream_failure::status_500, std::nullopt, false).step, step::wait);
    m.resume(1s);
    EXPECT_EQ(m.replied(1s, 500, upstream_failure::status_500, std::nullopt, false).step, step::pass_held) << "once";
}

TEST(UpstreamAttempts, DifysConcurrencyRefusalIsRetriedAndOtherErrorsAreNot)
{
    fixture f;
    auto m = f.call();
    m.start(0s);
    EXPECT_EQ(m.replied(0s, 400, upstream_failure::concurrency_limit, std::nullopt, false).step, step::wait);
    m.resume(1s);
    EXPECT_EQ(m.replied(1s, 400, upstream_failure::other, std::nullopt, false).step, step::pass_held);
}

TEST(UpstreamAttempts, AStalePooledConnectionIsReplacedAtOnceAtNoCost)
{
    fixture f;
    f.budget = retry_budget(0.0, 10s, 0); // no retry budget at all
    auto m = f.call();
    m.start(0s);
    auto a = m.send_failed(0s, true, false);
    EXPECT_EQ(a.step, step::acquire) << "nothing reached Dify: no pause, no budget";
    EXPECT_EQ(a.retrying, upstream_failure::stale_connection);
    EXPECT_EQ(f.breaker.current(), circuit_breaker::state::closed);
    EXPECT_EQ(m.replied(1ms, 200, std::nullopt, std::nullopt, false).step, step::relay);
}

TEST(UpstreamAttempts, AFailureAfterTheRequestWentIsTheAnswerEvenWithAHeldReply)
{
    fixture f;
    auto m = f.call();
    m.start(0s);
    ASSERT_EQ(m.replied(0s, 503, upstream_failure::status_503, std::nullopt, false).step, step::wait);
    m.resume(1s);
    EXPECT_EQ(m.send_failed(1s, false, false).step, step::fail_response) << "it may have run at Dify: never resent";
    EXPECT_FALSE(m.holds_reply());
}

TEST(UpstreamAttempts, AStreamedBodyIsNeverSentTwice)
{
    fixture f;
    auto m = f.call();
    m.start(0s);
    EXPECT_EQ(m.replied(0s, 503, upstream_failure::status_503, std::nullopt, true).step, step::pass_held);
    auto again = f.call();
    again.start(0s);
    EXPECT_EQ(again.send_failed(0s, true, true).step, step::fail_response) << "not even on a stale connection";
}

TEST(UpstreamAttempts, AnEmptyRetryBudgetStopsRetries)
{
    fixture f;
    f.budget = retry_budget(0.0, 10s, 0);
    auto m = f.call();
    m.start(0s);
    EXPECT_EQ(m.replied(0s, 503, upstream_failure::status_503, std::nullopt, false).step, step::pass_held);
    auto c = f.call();
    c.start(0s);
    EXPECT_EQ(c.acquire_failed(0s).step, step::fail_connect);
}

TEST(UpstreamAttempts, TheBreakerOpensRefusesProbesAndCloses)
{
    fixture f;
    f.budget = retry_budget(0.0, 10s, 0); // each call one attempt: one failure each
    for (int i = 0; i < 5; ++i) {
        auto m = f.call();
        ASSERT_EQ(m.start(nanos(i)).step, step::acquire);
        m.acquire_failed(nanos(i));
    }
    EXPECT_EQ(f.breaker.current(), circuit_breaker::state::open) << "5 consecutive failures";
    auto refused = f.call();
    EXPECT_EQ(refused.start(1s).step, step::fail_circuit_open);
    EXPECT_EQ(refused.attempts(), 0);
    auto probe = f.call();
    ASSERT_EQ(probe.start(6s).step, step::acquire) << "after the cooldown one probe goes";
    auto other = f.call();
    EXPECT_EQ(other.start(6s).step, step::fail_circuit_open) << "only one probe at a time";
    EXPECT_EQ(probe.replied(6s, 200, std::nullopt, std::nullopt, false).step, step::relay);
    EXPECT_EQ(f.breaker.current(), circuit_breaker::state::closed);
    auto a429 = f.call();
    a429.start(7s);
    a429.replied(7s, 429, upstream_failure::status_429, std::nullopt, false);
    EXPECT_EQ(f.breaker.current(), circuit_breaker::state::closed) << "a 429 is an answer from a healthy Dify";
}

TEST(UpstreamAttempts, ACircuitOpenedDuringTheWaitPassesTheHeldReply)
{
    fixture f;
    auto m = f.call();
    m.start(0s);
    ASSERT_EQ(m.replied(0s, 502, upstream_failure::status_502, std::nullopt, false).step, step::wait);
    for (int i = 0; i < 5; ++i) f.breaker.on_failure(10ms); // other requests fail meanwhile
    EXPECT_EQ(m.resume(50ms).step, step::pass_held) << "Dify's own reply, not a bare 503";
}

TEST(UpstreamAttempts, AProbeThatLearnsNothingLeavesTheBreakerProbing)
{
    fixture f;
    for (int i = 0; i < 5; ++i) f.breaker.on_failure(0s);
    ASSERT_EQ(f.breaker.current(), circuit_breaker::state::open);
    auto probe = f.call({}, 6s);
    ASSERT_EQ(probe.start(6s).step, step::acquire) << "half-open: this call probes";
    EXPECT_EQ(probe.send_failed(6s, true, false).step, step::acquire) << "a stale pooled connection: the same call probes again";
    probe.abandoned(); // then its client went away
    auto next = f.call({}, 7s);
    EXPECT_EQ(next.start(7s).step, step::acquire) << "the probe was given back: the breaker is not wedged";
}

} // namespace
} // namespace gw::core
