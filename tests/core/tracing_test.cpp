// Trace context (what each bad traceparent gets), sampling, the OTLP JSON encoding, and
// workflow node spans from Dify's node events.
#include "core/span.hpp"
#include "core/stream_facts.hpp"
#include "core/trace_context.hpp"
#include "core/workflow_spans.hpp"

#include <boost/json.hpp>

#include <gtest/gtest.h>

namespace gw::core {
namespace {

namespace json = boost::json;

constexpr std::string_view valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(TraceContext, AValidTraceparentIsReadWithItsTracestate)
{
    auto c = parse_traceparent(valid, "congo=t61rcWkgMzE");
    ASSERT_TRUE(c);
    EXPECT_EQ(to_hex(c->trace), "4bf92f3577b34da6a3ce929d0e0e4736");
    EXPECT_EQ(to_hex(c->span), "00f067aa0ba902b7");
    EXPECT_TRUE(c->sampled);
    EXPECT_EQ(c->tracestate, "congo=t61rcWkgMzE");
    EXPECT_EQ(format_traceparent(c->trace, c->span, true), valid);
    auto unsampled = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "");
    ASSERT_TRUE(unsampled);
    EXPECT_FALSE(unsampled->sampled);
    // A later version is read by its first four fields.
    EXPECT_TRUE(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next", ""));
}

TEST(TraceContext, EveryMalformedTraceparentIsIgnored)
{
    for (std::string_view bad : {
             "",
             "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", // version 00: exactly 55
             "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",       // upper case
             "00-00000000000000000000000000000000-00f067aa0ba902b7-01",       // zero trace id
             "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",       // zero parent
             "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",       // version ff
             "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",       // misplaced dash
             "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",       // not hex
             "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",      // later version, no dash
             " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
         })
        EXPECT_FALSE(parse_traceparent(bad, "a=b")) << bad;
    auto long_state = parse_traceparent(valid, std::string(513, 'a'));
    ASSERT_TRUE(long_state);
    EXPECT_EQ(long_state->tracestate, "") << "an oversized tracestate is dropped, the parent kept";
    EXPECT_EQ(parse_traceparent(valid, "a=\x01")->tracestate, "");
}

TEST(TraceContext, SamplingFollowsTheParentElseTheRatioOnTheTraceId)
{
    auto parent = parse_traceparent(valid, "");
    EXPECT_TRUE(sample(parent, make_trace_id(1, 1), 0.0)) << "a sampled parent wins over the ratio";
    parent->sampled = false;
    EXPECT_FALSE(sample(parent, make_trace_id(1, 1), 1.0));
    EXPECT_TRUE(sample(std::nullopt, make_trace_id(0, ~0ULL), 1.0));
    EXPECT_FALSE(sample(std::nullopt, make_trace_id(0, 1), 0.0));
    EXPECT_TRUE(sample(std::nullopt, make_trace_id(0, 0x3fffffffffffffffULL), 0.5));
    EXPECT_FALSE(sample(std::nullopt, make_trace_id(0, 0x4000000000000000ULL), 0.5));
    int sampled = 0;
    std::uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 10'000; ++i) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        sampled += sample(std::nullopt, make_trace_id(x, x * 31), 0.25);
    }
    EXPECT_NEAR(sampled, 2500, 250);
    EXPECT_FALSE(is_zero(make_trace_id(0, 0)));
    EXPECT_FALSE(is_zero(make_span_id(0)));
}

TEST(Otlp, SpansEncodeAsOtlpJson)
{
    span s;
    s.trace = make_trace_id(0x0102030405060708ULL, 0x090a0b0c0d0e0f10ULL);
    s.id = make_span_id(0xa1a2a3a4a5a6a7a8ULL);
    s.name = "POST /v1/chat-messages";
    s.kind = span_kind::server;
    s.start_unix_nano = 1'700'000'000'000'000'001;
    s.end_unix_nano = 1'700'000'000'500'000'000;
    s.set("http.request.method", "POST");
    s.set("http.response.status_code", 200);
    s.set("dify.workflow.node.elapsed_time", 0.25);
    s.set("dify_gateway.retried", true);
    s.events.push_back({"first_byte", 1'700'000'000'100'000'000});
    s.status = span_status::error;
    s.status_message = "boom";
    span child = s;
    child.parent = s.id;
    child.events.clear();
    auto doc = json::parse(otlp_json({"gw", "1.2.3", "host-1"}, {s, child}));
    const auto& rs = doc.at("resourceSpans").at(0);
    EXPECT_EQ(rs.at("resource").at("attributes").at(0).at("value").at("stringValue"), "gw");
    const auto& spans = rs.at("scopeSpans").at(0).at("spans").as_array();
    ASSERT_EQ(spans.size(), 2u);
    EXPECT_EQ(spans[0].at("traceId"), "0102030405060708090a0b0c0d0e0f10");
    EXPECT_EQ(spans[0].at("spanId"), "a1a2a3a4a5a6a7a8");
    EXPECT_FALSE(spans[0].as_object().contains("parentSpanId")) << "a root span";
    EXPECT_EQ(spans[1].at("parentSpanId"), "a1a2a3a4a5a6a7a8");
    EXPECT_EQ(spans[0].at("kind"), 2);
    EXPECT_EQ(spans[0].at("startTimeUnixNano"), "1700000000000000001") << "64-bit integers as strings";
    const auto& attrs = spans[0].at("attributes").as_array();
    EXPECT_EQ(attrs[0].at("value").at("stringValue"), "POST");
    EXPECT_EQ(attrs[1].at("value").at("intValue"), "200");
    EXPECT_EQ(attrs[2].at("value").at("doubleValue"), 0.25);
    EXPECT_EQ(attrs[3].at("value").at("boolValue"), true);
    EXPECT_EQ(spans[0].at("events").at(0).at("name"), "first_byte");
    EXPECT_EQ(spans[0].at("status").at("code"), 2);
    EXPECT_EQ(spans[0].at("status").at("message"), "boom");
}

sse_event data_event(std::string data)
{
    sse_event e;
    e.data = std::move(data);
    return e;
}

TEST(StreamFacts, NodeEventsAndTheUsageSplitAreRead)
{
    stream_facts f;
    f.observe(data_event(R"({"event":"node_started","data":{"id":"ex1","node_id":"n1","node_type":"llm","title":"Draft"}})"));
    EXPECT_TRUE(f.take_node_events().empty()) << "kept only when asked";
    f.keep_node_events(true);
    f.observe(data_event(R"({"event":"node_started","task_id":"t","data":{"id":"ex2","node_id":"n2","node_type":"llm","title":"Draft","inputs":{"id":"not this"}}})"));
    f.observe(data_event(R"({"event":"node_finished","data":{"id":"ex2","node_id":"n2","node_type":"llm","title":"Draft","status":"failed","error":"rate limit","elapsed_time":1.5,"execution_metadata":{"total_tokens":42}}})"));
    f.observe(data_event(R"({"event":"message_end","metadata":{"usage":{"prompt_tokens":30,"completion_tokens":12,"total_tokens":42}}})"));
    auto events = f.take_node_events();
    ASSERT_EQ(events.size(), 2u);
    EXPECT_FALSE(events[0].finished);
    EXPECT_EQ(events[0].execution_id, "ex2");
    EXPECT_EQ(events[0].title, "Draft");
    EXPECT_TRUE(events[1].finished);
    EXPECT_EQ(events[1].status, "failed");
    EXPECT_EQ(events[1].error, "rate limit");
    EXPECT_EQ(events[1].elapsed_seconds, 1.5);
    EXPECT_EQ(events[1].total_tokens, 42);
    EXPECT_EQ(f.prompt_tokens(), 30);
    EXPECT_EQ(f.completion_tokens(), 12);
    EXPECT_EQ(f.total_tokens(), 42);
    EXPECT_EQ(f.task_id(), "t");
}

TEST(WorkflowSpans, NodesBecomeChildSpansOfTheAttempt)
{
    const auto trace = make_trace_id(1, 2);
    const auto attempt = make_span_id(3);
    workflow_node_spans nodes(trace, attempt);
    std::vector<span> done;
    nodes.on_event({false, "ex1", "n1", "start", "Start", "", "", {}, {}}, 1000, make_span_id(10), done);
    nodes.on_event({false, "ex2", "n2", "llm", "Draft", "", "", {}, {}}, 2000, make_span_id(11), done);
    nodes.on_event({true, "ex1", "n1", "start", "Start", "succeeded", "", 0.001, {}}, 3000, make_span_id(12), done);
    nodes.on_event({true, "ex3", "n3", "code", "", "failed", "bad code", 0.000002, {}}, 9000, make_span_id(13), done);
    ASSERT_EQ(done.size(), 2u);
    EXPECT_EQ(done[0].name, "Start");
    EXPECT_EQ(done[0].id, make_span_id(10)) << "the id it was opened with";
    EXPECT_EQ(done[0].parent, attempt);
    EXPECT_EQ(done[0].trace, trace);
    EXPECT_EQ(done[0].start_unix_nano, 1000);
    EXPECT_EQ(done[0].end_unix_nano, 3000);
    EXPECT_EQ(done[0].status, span_status::unset) << "success is the instrumentation's to leave unset";
    EXPECT_EQ(done[1].name, "code") << "no title: the node type";
    EXPECT_EQ(done[1].start_unix_nano, 7000) << "no start seen: dated back by Dify's elapsed time";
    EXPECT_EQ(done[1].status, span_status::error);
    EXPECT_EQ(done[1].status_message, "bad code");
    nodes.end(10'000, done);
    ASSERT_EQ(done.size(), 3u);
    EXPECT_EQ(done[2].name, "Draft");
    EXPECT_EQ(done[2].status, span_status::error) << "never finished";
}

TEST(WorkflowSpans, WhatDifySendsIsBounded)
{
    workflow_node_spans nodes(make_trace_id(1, 2), make_span_id(3));
    std::vector<span> done;
    const std::string huge(100'000, 'x');
    nodes.on_event({true, "ex", "n", "code", huge, "failed", "\xc3\xa9" + huge, 1e300, {}}, 5'000'000'000, make_span_id(4), done);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].name.size(), max_span_text);
    EXPECT_LE(done[0].status_message.size(), max_span_text);
    EXPECT_GE(done[0].end_unix_nano, done[0].start_unix_nano) << "an absurd elapsed time is clamped, not overflowed";
    for (int i = 0; i < 5'000; ++i)
        nodes.on_event({true, "e" + std::to_string(i), "n", "llm", "t", "succeeded", "", 0.1, {}}, 10, make_span_id(5), done);
    EXPECT_EQ(done.size(), workflow_node_spans::max_spans);
    EXPECT_EQ(bounded_text("\xc3\xa9" + std::string(max_span_text, 'a')).size(), max_span_text)
        << "cut at a character boundary";
    EXPECT_EQ(bounded_text(std::string(max_span_text - 1, 'a') + "\xc3\xa9").size(), max_span_text - 1);
}

} // namespace
} // namespace gw::core
