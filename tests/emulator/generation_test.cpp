// Sans-io parts of the emulator: event sequences and counts per mode, usage and JSON
// styles, and the fault spec parser's answers to bad input.
#include "gateway/emulator/faults.hpp"
#include "gateway/emulator/generation.hpp"

#include <boost/json.hpp>

#include <gtest/gtest.h>

namespace gw::emulator {
namespace {

namespace json = boost::json;

generation_input input_for(const std::string& mode)
{
    generation_input in;
    in.mode = mode;
    in.task_id = "t";
    in.message_id = "m";
    in.conversation_id = "c";
    in.workflow_run_id = "w";
    in.answer = "one two three four five";
    return in;
}

TEST(Generation, FrameCountMatchesTheStreamForEveryMode)
{
    for (const char* mode : {"chat", "agent-chat", "advanced-chat", "workflow", "completion"}) {
        auto in = input_for(mode);
        auto uuid = [] { return std::string("u"); };
        std::string text;
        bool stopped = true;
        auto s = make_generation_stream(in, uuid, [&](const std::string& t, bool st) {
            text = t;
            stopped = st;
        });
        std::size_t frames = 0;
        while (s->next()) ++frames;
        EXPECT_TRUE(s->finished()) << mode;
        EXPECT_EQ(frames, generation_event_count(in)) << mode;
        EXPECT_EQ(text, in.answer) << mode;
        EXPECT_FALSE(stopped) << mode;
    }
}

TEST(Generation, StopEndsWithThePartialText)
{
    auto in = input_for("chat");
    std::string text;
    bool stopped = false;
    auto s = make_generation_stream(in, [] { return std::string("u"); }, [&](const std::string& t, bool st) {
        text = t;
        stopped = st;
    });
    ASSERT_TRUE(s->next()); // "one two"
    s->request_stop();
    auto last = s->next();
    ASSERT_TRUE(last);
    EXPECT_NE(last->find("\"event\":\"message_end\""), std::string::npos);
    EXPECT_FALSE(s->next());
    EXPECT_EQ(text, "one two ");
    EXPECT_TRUE(stopped);
}

TEST(Generation, ADisconnectedClientStillGetsTheAnswerStored)
{
    auto in = input_for("chat");
    std::string text;
    {
        auto s = make_generation_stream(in, [] { return std::string("u"); }, [&](const std::string& t, bool) { text = t; });
        s->next();
    }
    EXPECT_EQ(text, in.answer) << "Dify keeps generating after a disconnect";
}

TEST(Generation, SplitAnswerKeepsEveryByte)
{
    EXPECT_EQ(split_answer("a b c d e"), (std::vector<std::string>{"a b ", "c d ", "e"}));
    EXPECT_EQ(split_answer(""), std::vector<std::string>{});
    std::string s = "  leading and  double  spaces ";
    std::string joined;
    for (const auto& p : split_answer(s)) joined += p;
    EXPECT_EQ(joined, s);
}

TEST(Generation, UsagePricesAreStringsInStreamsAndNumbersInBlocking)
{
    usage u{42, 9};
    auto streamed = u.to_json(true);
    EXPECT_EQ(streamed.at("total_tokens"), 51);
    EXPECT_EQ(streamed.at("prompt_price"), "0.0000063");
    EXPECT_EQ(streamed.at("prompt_unit_price"), "0.15");
    auto blocking = u.to_json(false);
    EXPECT_DOUBLE_EQ(blocking.at("prompt_price").as_double(), 42 * 0.15e-6);
}

TEST(Wire, JsonStyles)
{
    json::value v = json::parse(R"({"a":1,"b":[true,null,"é/\n"],"c":0.5,"d":1e-06})");
    EXPECT_EQ(python_dumps(v), R"({"a": 1, "b": [true, null, "\u00e9/\n"], "c": 0.5, "d": 1e-06})");
    EXPECT_EQ(compact_dumps(v), "{\"a\":1,\"b\":[true,null,\"é/\\n\"],\"c\":0.5,\"d\":1e-06}");
    EXPECT_EQ(python_dumps(json::value("\xF0\x9F\x98\x80")), R"("\ud83d\ude00")") << "surrogate pairs";
    EXPECT_EQ(python_dumps(json::value("\xFF")), R"("\ufffd")") << "invalid UTF-8 never crashes";
    EXPECT_EQ(python_dumps(json::value(2.0)), "2.0");
    EXPECT_EQ(sse_data_frame(json::object{{"event", "message"}}), "data: {\"event\":\"message\"}\n\n");
}

TEST(Faults, ParsesEverySpecAndRejectsBadOnes)
{
    std::string error;
    auto f = parse_fault(" status=429 ; retry_after=2 ", error);
    ASSERT_TRUE(f) << error;
    EXPECT_EQ(f->status, 429);
    EXPECT_EQ(f->retry_after, 2);
    EXPECT_EQ(f->to_string(), "status=429; retry_after=2");
    f = parse_fault("reset_after=0", error);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->reset_after, 0);
    f = parse_fault("stall_ms=10; after=3; trickle_ms=1; malformed_sse; error_event; close; concurrency", error);
    ASSERT_TRUE(f) << error;
    EXPECT_TRUE(f->malformed_sse && f->error_event && f->close && f->concurrency);
    EXPECT_TRUE(parse_fault("", error)->empty());

    struct bad
    {
        const char* spec;
        const char* message;
    };
    for (const auto& b : std::vector<bad>{
             {"status=abc", "fault status: expected a non-negative integer, got \"abc\""},
             {"status=-1", "fault status: expected a non-negative integer, got \"-1\""},
             {"status=700", "fault status must be between 100 and 599"},
             {"stall_ms", "fault stall_ms needs a value (stall_ms=N)"},
             {"close=1", "fault close takes no value"},
             {"retry_after=1", "fault retry_after goes with status"},
             {"teleport", "unknown fault \"teleport\" (known: status, retry_after, concurrency, close, reset_after, "
                          "stall_ms, after, trickle_ms, malformed_sse, error_event)"},
         }) {
        error.clear();
        EXPECT_FALSE(parse_fault(b.spec, error)) << b.spec;
        EXPECT_EQ(error, b.message) << b.spec;
    }
}

TEST(Faults, QueueMatchesMethodAndPathPrefixInOrder)
{
    fault_queue q;
    std::string error;
    q.add({"POST", "/v1/chat", 2, *parse_fault("status=503", error)});
    q.add({"", "", 1, *parse_fault("status=500", error)});
    EXPECT_EQ(q.take("GET", "/v1/info")->status, 500) << "first matching entry";
    EXPECT_EQ(q.take("post", "/v1/chat-messages")->status, 503);
    EXPECT_EQ(q.take("POST", "/v1/chat-messages")->status, 503);
    EXPECT_FALSE(q.take("POST", "/v1/chat-messages"));
}

} // namespace
} // namespace gw::emulator
