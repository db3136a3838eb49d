// core::sse_relay with scripted pieces and simulated time, no sockets: whole events only
// whatever the piece boundaries, a tail held until its event ends, an oversized event,
// the client leaving before and after the task id, writes failing, Dify breaking off,
// going silent or being cut by a drain, and the wait for the task id bounded in time.
#include "core/sse_relay.hpp"

#include <gtest/gtest.h>

namespace gw::core {
namespace {

using namespace std::chrono_literals;

const std::string first = "data: {\"event\": \"message\", \"task_id\": \"t-1\", \"answer\": \"Hi\"}\n\n";
const std::string ping = "event: ping\n\n";
const std::string last =
    "data: {\"event\": \"message_end\", \"task_id\": \"t-1\", \"metadata\": {\"usage\": {\"total_tokens\": 42}}}\n\n";
const std::string no_task = "data: {\"event\": \"message\", \"answer\": \"x\"}\n\n";

sse_relay_limits limits(std::size_t max_event = 1024)
{
    sse_relay_limits l;
    l.max_event_bytes = max_event;
    l.max_read_after_client_left = 256;
    l.idle = 10s;
    return l;
}

// Feeds `stream` cut at `cuts` and returns what reached the client (the writes, then the
// finish), checking that every write ends on an event boundary. Every piece is read into
// one buffer, overwritten once the relay is done with it, as a worker's shared scratch is
// by its other streams.
std::string relay_in_pieces(const std::string& stream, const std::vector<std::size_t>& cuts, sse_relay& r)
{
    std::string out;
    std::vector<std::string> pieces;
    std::size_t from = 0;
    for (auto c : cuts) {
        pieces.push_back(stream.substr(from, c - from));
        from = c;
    }
    pieces.push_back(stream.substr(from));
    std::string scratch;
    for (const auto& p : pieces) {
        scratch.assign(p);
        auto a = r.feed(scratch);
        while (a.step == sse_step::write) {
            out.append(a.held).append(a.fresh);
            EXPECT_TRUE(out.ends_with("\n\n")) << "a write ends on an event boundary";
            a = r.written(true);
        }
        EXPECT_EQ(a.step, sse_step::read);
        std::fill(scratch.begin(), scratch.end(), '#'); // the next stream's bytes
    }
    auto end = r.upstream_ended();
    EXPECT_EQ(end.step, sse_step::finish);
    out.append(end.held);
    return out;
}

TEST(SseRelay, WholeEventsWhereverThePiecesAreCut)
{
    const std::string stream = first + ping + last;
    for (std::size_t a = 0; a <= stream.size(); ++a) {
        for (std::size_t b = a; b <= stream.size(); b += 7) {
            sse_relay r(limits());
            ASSERT_EQ(relay_in_pieces(stream, {a, b}, r), stream) << "cut at " << a << " and " << b;
            EXPECT_EQ(r.facts().task_id(), "t-1");
            EXPECT_EQ(r.facts().total_tokens(), 42);
        }
    }
}

TEST(SseRelay, AnUnfinishedEventIsHeldThenPassedOnWhenDifyEnds)
{
    sse_relay r(limits());
    std::string piece = first + "data: {\"answer\": \"tail"; // valid until written(), as the contract says
    auto a = r.feed(piece);
    ASSERT_EQ(a.step, sse_step::write);
    EXPECT_EQ(a.fresh, first) << "only the complete event";
    EXPECT_EQ(r.written(true).step, sse_step::read);
    piece.assign(piece.size(), '#'); // reused for another stream: the tail was copied
    auto end = r.upstream_ended();
    EXPECT_EQ(end.step, sse_step::finish);
    EXPECT_EQ(end.held, "data: {\"answer\": \"tail") << "Dify ended without a blank line: the bytes go on";
}

TEST(SseRelay, AnEventLargerThanTheLimitEndsTheStreamWithAnErrorEvent)
{
    sse_relay r(limits(64));
    auto a = r.feed("data: " + std::string(100, 'x'));
    EXPECT_EQ(a.step, sse_step::end_with_error);
    EXPECT_EQ(a.error_code, "event_too_large");
    EXPECT_EQ(a.error_status, 502);
    EXPECT_TRUE(a.stop_task);
}

TEST(SseRelay, AnEventLargerThanTheLimitIsRefusedEvenWhenItCameWholeInOnePiece)
{
    // Wherever the pieces are cut: the events before it go out whole, then the error; the
    // large event and what follows it are neither written nor read for their facts.
    const std::string big = "data: {\"event\": \"message\", \"task_id\": \"t-2\", \"answer\": \"" + std::string(100, 'x') + "\"}\n\n";
    const std::string stream = first + big + last;
    for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
        sse_relay r(limits(first.size()));
        std::string out;
        sse_action a;
        for (auto piece : {stream.substr(0, cut), stream.substr(cut)}) {
            a = r.feed(piece);
            while (a.step == sse_step::write) {
                out.append(a.held).append(a.fresh);
                a = r.written(true);
            }
            if (a.step != sse_step::read) break;
        }
        ASSERT_EQ(a.step, sse_step::end_with_error) << "cut at " << cut;
        EXPECT_EQ(a.error_code, "event_too_large");
        EXPECT_EQ(out, first) << "cut at " << cut;
        EXPECT_EQ(r.facts().task_id(), "t-1");
        EXPECT_FALSE(r.facts().total_tokens()) << "the event after the large one is not read";
    }
}

TEST(SseRelay, DifyBreakingOffGoingSilentOrADrainEndWithTheirErrorEvent)
{
    struct expected
    {
        upstream_end why;
        std::string_view code;
        int status;
    };
    for (auto e : {expected{upstream_end::broken, "upstream_stream_broken", 502}, expected{upstream_end::idle, "upstream_stream_broken", 502},
                   expected{upstream_end::shutting_down, "unavailable", 503}}) {
        sse_relay r(limits());
        ASSERT_EQ(r.feed(first).step, sse_step::write);
        r.written(true);
        auto a = r.upstream_failed(e.why);
        EXPECT_EQ(a.step, sse_step::end_with_error);
        EXPECT_EQ(a.error_code, e.code);
        EXPECT_EQ(a.error_status, e.status);
        EXPECT_TRUE(a.stop_task) << "Dify may still be running the task";
    }
}

TEST(SseRelay, AClientLeavingAfterTheTaskIdEndsTheRelayAtOnce)
{
    sse_relay r(limits());
    ASSERT_EQ(r.feed(first).step, sse_step::write);
    r.written(true);
    EXPECT_TRUE(r.client_left()) << "the task is known: close the upstream now";
    auto a = r.upstream_failed(upstream_end::broken); // the closed upstream's read fails
    EXPECT_EQ(a.step, sse_step::close);
    EXPECT_TRUE(a.stop_task);
}

TEST(SseRelay, AClientLeavingBeforeTheTaskIdReadsOnUntilItIsNamed)
{
    sse_relay r(limits());
    EXPECT_FALSE(r.client_left()) << "the task id is not known yet: read on";
    EXPECT_EQ(r.feed(ping).step, sse_step::read) << "nothing is written to a client that left";
    auto a = r.feed(first);
    EXPECT_EQ(a.step, sse_step::close);
    EXPECT_TRUE(a.stop_task);
    EXPECT_EQ(r.facts().task_id(), "t-1");
}

TEST(SseRelay, TheWaitForTheTaskIdIsBoundedInBytesAndTime)
{
    sse_relay r(limits());
    EXPECT_EQ(r.read_deadline(0s), 10s) << "Dify may be silent for one idle period";
    EXPECT_EQ(r.read_deadline(5s), 15s) << "each read gets its own";
    r.client_left();
    EXPECT_EQ(r.read_deadline(20s), 30s);
    EXPECT_EQ(r.read_deadline(25s), 30s) << "once the client left, one idle period in all: pings do not extend it";
    sse_action a;
    for (int i = 0; i < 100 && a.step == sse_step::read; ++i) a = r.feed(ping);
    EXPECT_EQ(a.step, sse_step::close) << "no task id within max_read_after_client_left";
}

TEST(SseRelay, AFailedWriteIsAClientThatLeft)
{
    sse_relay known(limits());
    ASSERT_EQ(known.feed(first).step, sse_step::write);
    auto a = known.written(false);
    EXPECT_EQ(a.step, sse_step::close);
    EXPECT_TRUE(a.stop_task);

    sse_relay unknown(limits());
    ASSERT_EQ(unknown.feed(no_task).step, sse_step::write);
    EXPECT_EQ(unknown.written(false).step, sse_step::read) << "read on for the task id";
    EXPECT_TRUE(unknown.client_gone());
    EXPECT_EQ(unknown.feed(last).step, sse_step::close);
    EXPECT_EQ(unknown.upstream_ended().step, sse_step::close);
}

TEST(SseRelay, AStreamThatEndsAfterTheClientLeftIsNotStopped)
{
    sse_relay r(limits());
    r.client_left();
    auto a = r.upstream_ended();
    EXPECT_EQ(a.step, sse_step::close);
    EXPECT_FALSE(a.stop_task) << "the task ended by itself";
}

} // namespace
} // namespace gw::core
