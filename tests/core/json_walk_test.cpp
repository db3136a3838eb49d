// json_walk reads exactly the documents Boost.JSON's parser reads (with no trailing
// data), and tells its handler the same values; stream_facts reads the same facts from a
// reply whether it is read whole (json_walk) or piece by piece (Boost.JSON).
#include "core/json_walk.hpp"
#include "core/stream_facts.hpp"
#include "tests/support/json_trace.hpp"
#include "tests/support/mutated_text.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace {

using gw::core::json_walk;
using gw::test::boost_trace;
using gw::test::mutated;
using gw::test::trace_handler;
using gw::test::walk_trace;

void expect_same(std::string_view text, std::size_t max_depth = 128)
{
    EXPECT_EQ(walk_trace(text, max_depth), boost_trace(text, max_depth)) << "input: " << text;
}

TEST(JsonWalk, AcceptsAndRejectsWhatBoostJsonDoes)
{
    const char* cases[] = {
        // documents
        R"({})", R"([])", R"( {"a" : [1, -2, 3.5, -0, 0.0e0, 1E+2, 1e-2, true, false, null, "x"]} )", R"("s")",
        R"(0)", R"(-12)", "\t\r\n[ ]\n", R"({"a":{"b":{"c":[[[]]]}}})", R"(9223372036854775807)",
        R"(-9223372036854775808)", R"(9223372036854775808)", R"(18446744073709551615)", R"(18446744073709551616)",
        R"(-9223372036854775809)", R"(123456789012345678901234567890)", R"(1.5e308)", R"(2.2250738585072014e-308)",
        R"([1e400, -1e400, 1e-400, -1e-400, 4.9e-324, 2e-324, 0.0000000000000000000001e-310])", R"(1e2147483647)",
        R"(1e2147483648)", R"(0e99999999999)", R"(1e-2147483648)", R"(1e+000000000000002147483647)",
        R"([0e308, 0e309, 0.0e309, 0.0e310, -0e400, 0e-400, 0.000e312, 0E+309, -0.0e999, 0.00000000000000000000e329])",
        // strings: escapes, UTF-8, \u escapes and surrogate pairs
        R"("\"\\\/\b\f\n\r\t")", R"("\u0041\u00e9\u20AC\ud83d\ude00")", R"("\u0000")", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
        "\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"",
        R"({"k\u0065y": "v", "a": "long string with no escapes at all, longer than eight bytes"})",
        // separators as Python's json writes them (", " and ": "), and near them
        R"({"a": 1, "b": [1, 2], "c": {"d": "e"}})", R"({"a":  1,  "b" :2})", "{\"a\": \t1, \n\"b\": 2}",
        "[1, \r\n2]", R"({"a": "x"})", R"([1, 2])",
        R"({"a": 1, })", R"([1, ])", R"([1,  ])", R"({"a": })", R"({"a":  })", R"([1, )", R"([1,)", R"({"a": )",
        R"({"a":)", R"([1, ,2])", R"({"a": 1, , "b": 2})", "[1, \x01]", "{\"a\": \x7f}",
        // not documents
        "", " ", R"({)", R"({"a")", R"({"a":})", R"({"a":1,})", R"([1,])", R"([,1])", R"({,})", R"({"a" 1})",
        R"({1: 2})", R"([1 2])", R"(01)", R"(-)", R"(1.)", R"(.5)", R"(1e)", R"(1e+)", R"(+1)", R"(0x10)", R"(tru)",
        R"(nul)", R"(True)", R"(NaN)", R"(Infinity)", R"({} {})", R"({}x)", R"([] ])", R"("abc)", R"("\x")",
        R"("\u12")", R"("\u12G4")", R"("\ud83d")", R"("\ud83dx")", R"("\ud83d\u0041")", R"("\ude00")",
        "\"a\x01b\"", "\"tab\there\"", "\"\x80\"", "\"\xc0\xaf\"", "\"\xc1\xbf\"", "\"\xe0\x80\xaf\"",
        "\"\xed\xa0\x80\"", "\"\xf0\x80\x80\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xf5\x80\x80\x80\"", "\"\xff\"",
        "\"\xc3\"", "\"\xe2\x82\"", "\"\xf0\x9f\x98\"", "\xef\xbb\xbf{}", R"(/* c */ {})", R"({"a":1 // c
})", "[1]\x00",
    };
    for (const char* c : cases) expect_same(c);
    expect_same(std::string_view("[1]\0", 4));
    expect_same(std::string_view("\"a\0b\"", 5));
}

TEST(JsonWalk, NestingBeyondTheLimitIsRefused)
{
    for (std::size_t depth : {1u, 2u, 31u, 32u, 33u, 127u, 128u, 129u, 200u}) {
        const std::string arrays = std::string(depth, '[') + std::string(depth, ']');
        std::string objects;
        for (std::size_t i = 0; i < depth; ++i) objects += R"({"a":)";
        objects += "1" + std::string(depth, '}');
        for (const auto& text : {arrays, objects}) {
            EXPECT_EQ(walk_trace(text, 128).has_value(), depth <= 128) << depth;
            expect_same(text);
            expect_same(text, 32);
        }
    }
}

TEST(JsonWalk, NumbersAreConvertedOnlyWhenWanted)
{
    json_walk<trace_handler> walk(128);
    trace_handler h;
    h.want_numbers = false;
    ASSERT_TRUE(walk.run(R"([1, 2.5, 1e999, -3])", h));
    EXPECT_EQ(h.out.text, "[o;o;o;o;}");
    h = {};
    ASSERT_TRUE(walk.run(R"([1, 2.5, 1e999, -3])", h));
    EXPECT_EQ(h.out.text, "[n:1;r;r;n:-3;}");
    EXPECT_EQ(h.out.reals, (std::vector<double>{2.5, HUGE_VAL}));
}

TEST(JsonWalk, MutatedDifyRepliesAreReadAsBoostJsonReadsThem)
{
    // A Dify blocking reply, cut, with bytes changed, inserted and removed at random: every
    // variant is accepted or refused alike, and accepted ones are told alike.
    const std::string reply =
        R"({"event": "message", "task_id": "9da23599-e713-473b-982c-4328d4f5c78a", "id": "5ad4cb98-f0c7-4085-b384-88c403be6290",)"
        R"( "message_id": "5ad4cb98-f0c7-4085-b384-88c403be6290", "conversation_id": "45701982-8118-4bc5-8e9b-64562b4555f2",)"
        R"( "mode": "chat", "answer": "iPhone 13 Pro Max specs \u00e9\ud83d\ude00 caf\u00e9 \"quoted\" \\ back",)"
        R"( "metadata": {"usage": {"prompt_tokens": 1033, "prompt_unit_price": "0.001", "prompt_price": "0.0010330",)"
        R"( "completion_tokens": 128, "total_tokens": 1161, "total_price": "0.0012890", "currency": "USD", "latency": 0.7682)"
        R"(}, "retriever_resources": [{"position": 1, "score": 0.98457545, "content": "r\u00e9sum\u00e9"}]}, "created_at": 1705407629})";
    expect_same(reply);
    std::mt19937 rng(20261201); // fixed: the same variants every run
    const std::string alphabet = "{}[]\",:\\u0123456789.eE+-tfnrl \t\n\x80\xc3\xa9\xed\xf0";
    for (int i = 0; i < 20000; ++i) {
        const std::string v = mutated(reply, rng, alphabet);
        expect_same(v);
        if (HasFailure()) return;
    }
}

TEST(StreamFacts, ARepliesFactsAreTheSameReadWholeOrPieceByPiece)
{
    // Up to 16 KiB a reply is gathered and read whole; a longer one (here: the same reply
    // behind 16 KiB of whitespace) is read piece by piece by Boost.JSON's parser.
    const std::string replies[] = {
        R"({"task_id": "t", "id": "m", "conversation_id": "c", "metadata": {"usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}}})",
        R"({"task_id": "t", "workflow_run_id": "w", "data": {"id": "w", "total_tokens": 9.0, "elapsed_time": 0.5}})",
        R"({"task_id": "t", "data": {"total_tokens": 1e3}, "metadata": {"usage": {"total_tokens": 18446744073709551615}}})",
        R"({"metadata": {"usage": {"total_tokens": -4, "prompt_tokens": 1e300, "completion_tokens": 9223372036854775808}}})",
        R"({"form_token": "ft", "t\u0061sk_id": "\u0074", "id": "x", "id": "y"})",
        R"({"status": 0e309, "data": {"total_tokens": 0.0e310, "elapsed_time": 0e400}})",
        R"({"task_id": "t"} {"task_id": "u"})", R"({"task_id": "t"}, "x")", R"({"task_id": "t", })", R"(["task_id", "t"])", "<html>", "",
        "{\"task_id\": \"\xff\"}",
    };
    for (const auto& reply : replies)
        for (std::size_t piece : {1u, 7u, 16u, 1000u}) { // a document may end at a piece's end
            const auto [whole, streamed] = gw::test::facts_whole_and_streamed(reply, piece);
            EXPECT_EQ(whole, streamed) << reply << " in pieces of " << piece;
        }
    gw::core::stream_facts counts;
    counts.observe_json_body(replies[3]);
    EXPECT_EQ(counts.total_tokens(), -4);
    EXPECT_FALSE(counts.prompt_tokens()) << "a count beyond int64's range is not taken";
    EXPECT_FALSE(counts.completion_tokens());
}

} // namespace
