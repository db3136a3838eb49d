// The incremental SSE parser and stream facts: byte-by-byte feeding, every line ending,
// pings, comments, large events and malformed JSON.
#include "core/sse_parser.hpp"
#include "core/stream_facts.hpp"
#include "tests/support/mutated_text.hpp"
#include "tests/support/sse_parser_reference.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <thread>
#include <vector>

namespace gw::core {
namespace {

// An event's fields copied (sse_event's views are valid only during the callback).
struct owned_event
{
    explicit owned_event(const sse_event& e) : event(e.event), data(e.data), id(e.id) {}
    std::string event, data, id;
};

struct framed
{
    std::vector<owned_event> events;
    std::vector<std::size_t> ends; // absolute offsets in the whole stream
};

// Feeds `stream` in pieces of `piece` bytes and records events with absolute end offsets.
// Each piece lies in a buffer overwritten once it is fed, as a relay's read scratch is.
framed feed_in_pieces(const std::string& stream, std::size_t piece)
{
    sse_parser p;
    framed out;
    std::string buffer;
    for (std::size_t at = 0; at < stream.size(); at += piece) {
        buffer.assign(stream, at, piece);
        p.feed(buffer, [&](const sse_event& e, std::size_t end) {
            out.events.emplace_back(e);
            out.ends.push_back(at + end);
        });
        buffer.assign(buffer.size(), '#');
    }
    return out;
}

const std::string dify_stream = "event: ping\n\n"
                                "data: {\"event\":\"message\",\"task_id\":\"t1\",\"conversation_id\":\"c1\",\"answer\":\"Hi\"}\n\n"
                                ": a comment frame\n\n"
                                "data: {\"event\":\"message_end\",\"metadata\":{\"usage\":{\"total_tokens\":51}}}\n\n";

TEST(SseParser, EveryPieceSizeGivesTheSameEventsAndBoundaries)
{
    auto whole = feed_in_pieces(dify_stream, dify_stream.size());
    ASSERT_EQ(whole.events.size(), 4u);
    EXPECT_EQ(whole.events[0].event, "ping");
    EXPECT_EQ(whole.events[0].data, "");
    EXPECT_EQ(whole.events[1].data.substr(0, 18), "{\"event\":\"message\"");
    EXPECT_EQ(whole.ends[0], 13u);
    EXPECT_EQ(whole.ends.back(), dify_stream.size());
    for (std::size_t piece : {1, 2, 3, 7, 13, 64}) {
        auto split = feed_in_pieces(dify_stream, piece);
        ASSERT_EQ(split.events.size(), whole.events.size()) << piece;
        EXPECT_EQ(split.ends, whole.ends) << piece;
        for (std::size_t i = 0; i < split.events.size(); ++i) EXPECT_EQ(split.events[i].data, whole.events[i].data);
    }
}

TEST(SseParser, AnEventWithinOnePieceIsReadWhereItLies)
{
    // The relay's usual case: nothing is copied, and nothing is held between events.
    const std::string piece = "data: {\"event\":\"message\",\"answer\":\"Hi\"}\n\n";
    sse_parser p;
    int n = 0;
    p.feed(piece, [&](const sse_event& e, std::size_t) {
        ++n;
        EXPECT_EQ(e.data, "{\"event\":\"message\",\"answer\":\"Hi\"}");
        EXPECT_EQ(e.data.data(), piece.data() + 6) << "a view into the piece";
    });
    EXPECT_EQ(n, 1);
}

TEST(SseParser, ReadsEveryStreamAsTheByteAtATimeParserDid)
{
    // 20,000 mutated streams, each fed whole and cut at random into pieces that are
    // overwritten once fed: the same events, fields, offsets, pending bytes and truncation
    // as the parser this one replaced (tests/support/sse_parser_reference.hpp).
    const std::string base = dify_stream + "event: update\r\ndata: line1\r\ndata:\r\nid: 7\r\n\r\n: c\rdata: x\r\r" +
                             "data: " + std::string(80, 'y') + "\ndata: " + std::string(30, 'z') + "\n\n";
    std::mt19937 rng(20261202);
    for (int round = 0; round < 20'000; ++round) {
        const std::string stream = test::mutated(base, rng, "\r\n: adtvei", "\r\n\r\n");
        const std::size_t max = 16 + rng() % 120;
        test::reference_sse_parser want_parser(max);
        std::vector<test::reference_sse_event> want;
        sse_parser got_parser(max);
        std::vector<test::reference_sse_event> got;
        std::string buffer;
        for (std::size_t at = 0; at < stream.size();) {
            const std::size_t n = round % 4 == 0 ? stream.size() : 1 + rng() % 40;
            buffer.assign(stream, at, n);
            want_parser.feed(buffer, at, want);
            got_parser.feed(buffer, [&](const sse_event& e, std::size_t end) {
                got.push_back({std::string(e.event), std::string(e.data), std::string(e.id), at + end, got_parser.truncated()});
            });
            buffer.assign(buffer.size(), '#');
            at += n;
            ASSERT_EQ(got_parser.pending_bytes(), want_parser.pending_bytes()) << stream;
            ASSERT_EQ(got_parser.truncated(), want_parser.truncated()) << stream;
        }
        ASSERT_EQ(got, want) << stream;
    }
}

TEST(SseParser, AnEmptyPieceIsNothing)
{
    sse_parser p;
    int n = 0;
    p.feed(std::string_view(), [&](const sse_event&, std::size_t) { ++n; }); // no data pointer at all
    p.feed("data: x\n\n", [&](const sse_event&, std::size_t) { ++n; });
    EXPECT_EQ(n, 1);
    EXPECT_EQ(p.pending_bytes(), 0u);
}

TEST(SseParser, LineEndingsLfCrlfCr)
{
    for (std::string eol : {"\n", "\r\n", "\r"}) {
        std::string s = "event: update" + eol + "data: line1" + eol + "data: line2" + eol + "id: 7" + eol + eol;
        for (std::size_t piece : {1, 3, 100}) {
            auto f = feed_in_pieces(s, piece);
            ASSERT_EQ(f.events.size(), 1u) << "eol " << eol.size() << " piece " << piece;
            EXPECT_EQ(f.events[0].event, "update");
            EXPECT_EQ(f.events[0].data, "line1\nline2");
            EXPECT_EQ(f.events[0].id, "7");
        }
    }
}

TEST(SseParser, PendingBytesTrackTheUnfinishedTail)
{
    sse_parser p;
    int n = 0;
    p.feed("data: {\"a\":1}\n\ndata: {\"b\"", [&](const sse_event&, std::size_t) { ++n; });
    EXPECT_EQ(n, 1);
    EXPECT_EQ(p.pending_bytes(), 10u);
    p.feed(":2}\n\n", [&](const sse_event&, std::size_t end) {
        ++n;
        EXPECT_EQ(end, 5u);
    });
    EXPECT_EQ(n, 2);
    EXPECT_EQ(p.pending_bytes(), 0u);
}

TEST(SseParser, LargeEventsAreFramedButTheirDataIsBounded)
{
    sse_parser p(64);
    std::string big = "data: " + std::string(1000, 'x') + "\n\n";
    std::size_t end = 0;
    std::size_t data_size = 0;
    p.feed(big, [&](const sse_event& e, std::size_t e_end) {
        end = e_end;
        data_size = e.data.size();
    });
    EXPECT_EQ(end, big.size());
    EXPECT_LT(data_size, 64u);
}

TEST(StreamFacts, LearnsTaskConversationUsageAndErrors)
{
    stream_facts facts;
    sse_parser p;
    p.feed(dify_stream, [&](const sse_event& e, std::size_t) { facts.observe(e); });
    EXPECT_EQ(facts.task_id(), "t1");
    EXPECT_EQ(facts.conversation_id(), "c1");
    EXPECT_EQ(facts.total_tokens(), 51);
    EXPECT_TRUE(facts.finished());
    EXPECT_FALSE(facts.error());

    stream_facts wf;
    p.feed("data: {\"event\":\"workflow_finished\",\"workflow_run_id\":\"w\",\"data\":{\"total_tokens\":512}}\n\n",
           [&](const sse_event& e, std::size_t) { wf.observe(e); });
    EXPECT_EQ(wf.total_tokens(), 512);
    EXPECT_EQ(wf.workflow_run_id(), "w");

    stream_facts err;
    p.feed("data: {\"event\": \"message\", broken\n\ndata: {\"event\":\"error\",\"code\":\"completion_request_error\","
           "\"status\":400,\"message\":\"boom\"}\n\n",
           [&](const sse_event& e, std::size_t) { err.observe(e); });
    EXPECT_EQ(err.malformed(), 1u) << "malformed JSON is counted, never fatal";
    ASSERT_TRUE(err.error());
    EXPECT_EQ(err.error()->code, "completion_request_error");
    EXPECT_EQ(err.error()->status, 400);
}

TEST(SseParser, AnEventsFieldsDoNotCarryIntoTheNext)
{
    auto out = feed_in_pieces("event: a_rather_long_event_name\nid: 42\ndata: first\n\ndata: second\n\n", 3);
    ASSERT_EQ(out.events.size(), 2u);
    EXPECT_EQ(out.events[0].event, "a_rather_long_event_name");
    EXPECT_EQ(out.events[0].id, "42");
    EXPECT_EQ(out.events[1].event, "") << "the parser reuses its strings, never their contents";
    EXPECT_EQ(out.events[1].id, "");
    EXPECT_EQ(out.events[1].data, "second");
}

TEST(StreamFacts, EachEventIsReadOnItsOwnThoughTheReaderIsReused)
{
    stream_facts facts;
    sse_parser p;
    p.feed("data: {\"event\":\"human_input_required\",\"task_id\":\"t1\",\"data\":{\"form_token\":\"ft1\"}}\n\n"
           "data: {\"event\":\"message\",\"data\":{\"x\":[[[{\"form_token\":\n\n" // broken deep inside: counted, then forgotten
           "data: {\"event\":\"message\",\"conversation_id\":\"c3\"}\n\n"
           "data: {\"event\":\"message_end\",\"metadata\":{\"usage\":{\"total_tokens\":7}}}\n\n",
           [&](const sse_event& e, std::size_t) { facts.observe(e); });
    EXPECT_EQ(facts.malformed(), 1u);
    EXPECT_EQ(facts.task_id(), "t1");
    EXPECT_EQ(facts.conversation_id(), "c3") << "read at its own depth after a document that broke off nested";
    ASSERT_EQ(facts.form_tokens().size(), 1u) << "a later event without a form token adds none";
    EXPECT_EQ(facts.form_tokens()[0], "ft1");
    EXPECT_EQ(facts.total_tokens(), 7);
    EXPECT_TRUE(facts.finished());
}

TEST(StreamFacts, BlockingBodies)
{
    stream_facts chat;
    chat.observe_json_body(R"({"task_id": "t", "conversation_id": "c", "metadata": {"usage": {"total_tokens": 23}}})");
    EXPECT_EQ(chat.task_id(), "t");
    EXPECT_EQ(chat.total_tokens(), 23);
    stream_facts wf;
    wf.observe_json_body(R"({"task_id": "t", "workflow_run_id": "w", "data": {"total_tokens": 9}})");
    EXPECT_EQ(wf.total_tokens(), 9);
    stream_facts bad;
    bad.observe_json_body("<html>");
    EXPECT_FALSE(bad.total_tokens());
}

TEST(StreamFacts, MemberNamesSplitAcrossPiecesOrEscapedAreReadAsWhole)
{
    // A reply fed a byte at a time (the parser hands names over in pieces), with names
    // spelled with escapes, reads as the whole reply does; a name that only starts like a
    // known one is another name.
    const std::string reply =
        R"({"task_id": "t", "conversation\u005fid": "c", "id\u0073": "not-the-id", "id": "m", )"
        R"("metadata": {"usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5, "total_tokens_x": 7}}})";
    stream_facts whole;
    whole.observe_json_body(reply);
    stream_facts pieces;
    for (char c : reply) pieces.feed_json_body(std::string_view(&c, 1));
    pieces.end_json_body();
    for (const auto* f : {&whole, &pieces}) {
        EXPECT_EQ(f->task_id(), "t");
        EXPECT_EQ(f->conversation_id(), "c");
        EXPECT_EQ(f->id(), "m");
        EXPECT_EQ(f->total_tokens(), 5);
        EXPECT_EQ(f->prompt_tokens(), 2);
        EXPECT_EQ(f->completion_tokens(), 3);
    }
}

TEST(StreamFacts, AReaderGivenBackAfterABrokenReplyReadsTheNextFromScratch)
{
    // Readers go back to the thread's spares and are lent again: a reply that broke off
    // deep inside, or was not JSON, leaves nothing behind for the next one.
    for (int round = 0; round < 40; ++round) { // more than the spares kept
        {
            stream_facts broken;
            broken.feed_json_body(R"({"task_id": "broken-task", "metadata": {"usage": {"total_tokens": 99, "x": [[[{")");
        } // destroyed without end_json_body: the reader goes back mid-document
        stream_facts not_json;
        not_json.observe_json_body("<html>");
        EXPECT_FALSE(not_json.finished());
        stream_facts next;
        next.feed_json_body(R"({"conversation_id": "c)");
        next.feed_json_body(R"(-1", "metadata": {"usage": {"total_tokens": 5}}})");
        next.end_json_body();
        EXPECT_EQ(next.task_id(), "") << "nothing of the broken reply";
        EXPECT_EQ(next.conversation_id(), "c-1");
        EXPECT_EQ(next.total_tokens(), 5);
        EXPECT_TRUE(next.finished());
    }
}

TEST(StreamFacts, SpareReadersAreFewAndSmall)
{
    // On a thread of its own, so that the counts start from nothing.
    std::vector<std::size_t> kept;
    std::thread([&] {
        { stream_facts warm; warm.observe_json_body(R"({"task_id": "t"})"); }
        kept.push_back(stream_facts::spare_readers_kept()); // 1: given back
        {
            // A reply with a long key and a long message: its reader grew, and is freed.
            stream_facts big;
            big.observe_json_body(R"({")" + std::string(100'000, 'k') + R"(": 1, "message": ")" +
                                  std::string(100'000, 'm') + R"(", "task_id": "t"})");
            EXPECT_EQ(big.task_id(), "t");
        }
        kept.push_back(stream_facts::spare_readers_kept()); // 0
        { stream_facts small; small.observe_json_body(R"({"task_id": "t"})"); }
        kept.push_back(stream_facts::spare_readers_kept()); // 1
        {
            std::vector<stream_facts> many(40); // a burst of concurrent replies, each being read
            for (auto& f : many) f.feed_json_body(R"({"task_id": "t")");
        }
        kept.push_back(stream_facts::spare_readers_kept()); // bounded
    }).join();
    EXPECT_EQ(kept, (std::vector<std::size_t>{1, 0, 1, 16}));
}

TEST(StreamFacts, AReaderGivenBackAfterItsThreadsListIsGoneIsFreed)
{
    // Thread-locals are destroyed in reverse order of construction: this one, made before
    // the thread's list of spare readers, gives its reader back after the list is gone
    // (without the list's "destroyed" flag the sanitizer build reports a heap-use-after-free).
    std::thread([] {
        thread_local stream_facts outlives_the_list;
        outlives_the_list.feed_json_body(R"({"task_id": "t")"); // borrows (making the list) and keeps it
        { stream_facts other; other.observe_json_body("{}"); } // the list holds a reader when it goes
    }).join();
    SUCCEED();
}

TEST(StreamFacts, IdsOfAnyLengthAreKeptWhole)
{
    const std::string uuid = "0123abcd-4567-89ef-0a1b-2c3d4e5f6071"; // inline
    const std::string long_id(300, 'x');                             // beyond the inline bytes
    stream_facts facts;
    facts.observe_json_body(R"({"id": ")" + uuid + R"(", "task_id": ")" + long_id + R"(", "message_id": ""})");
    EXPECT_EQ(facts.id(), uuid);
    EXPECT_EQ(facts.task_id(), long_id);
    EXPECT_EQ(facts.message_id(), "");
    stream_facts moved = std::move(facts);
    EXPECT_EQ(moved.task_id(), long_id);
    EXPECT_EQ(moved.id(), uuid);
}

TEST(StreamFacts, ReadsOnlyTheMembersDifyDefinesWhereverOthersSit)
{
    // A workflow's own outputs may carry look-alike members: only data.total_tokens and
    // top-level ids count; arrays, nesting, escapes and doubles are read correctly.
    stream_facts wf;
    wf.observe_json_body(R"({"data": {"outputs": {"total_tokens": 1, "task_id": "x", "data": {"total_tokens": 2}},
                             "steps": [{"total_tokens": 3}], "total_tokens": 40.0},
                             "task_id": "t\u0041", "metadata": [], "workflow_run_id": "w"})");
    EXPECT_EQ(wf.total_tokens(), 40);
    EXPECT_EQ(wf.task_id(), "tA");
    EXPECT_EQ(wf.workflow_run_id(), "w");

    stream_facts nested;
    nested.observe_json_body(R"({"answer": {"metadata": {"usage": {"total_tokens": 5}}}, "metadata": {"usage": {"total_tokens": 6}}})");
    EXPECT_EQ(nested.total_tokens(), 6);

    stream_facts repeated; // a repeated member: the last one wins, as in Python's json
    repeated.observe_json_body(R"({"task_id": "first", "task_id": "second"})");
    EXPECT_EQ(repeated.task_id(), "second");

    stream_facts not_object;
    not_object.observe_json_body(R"(["task_id", "t"])");
    EXPECT_EQ(not_object.task_id(), "");
    EXPECT_FALSE(not_object.finished());

    stream_facts events;
    sse_parser p;
    p.feed("data: [1,2]\n\ndata: {\"event\":\"message_end\",\"metadata\":{\"usage\":{\"total_tokens\":7}},\"x\":{\"event\":\"error\"}}\n\n",
           [&](const sse_event& e, std::size_t) { events.observe(e); });
    EXPECT_EQ(events.malformed(), 1u) << "JSON that is not an object";
    EXPECT_EQ(events.total_tokens(), 7);
    EXPECT_FALSE(events.error()) << "a nested \"event\" member is not the event's type";
}

} // namespace
} // namespace gw::core
