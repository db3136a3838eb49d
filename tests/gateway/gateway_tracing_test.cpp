// Traces end to end, against a test OTLP receiver: a blocking call, a retried call (two
// attempt spans), a stream, a workflow stream (node spans), the traceparent Dify gets,
// sampling, a collector that fails (drops counted), and no export unless configured.
#include "gateway/ops/span_exporter.hpp"
#include "tests/emulator/emulator_test_util.hpp"
#include "tests/support/gateway_fixture.hpp"
#include "tests/support/otlp_receiver.hpp"
#include "tests/support/process.hpp"

#include <gtest/gtest.h>

namespace gw::test {
namespace {

const std::string caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
const std::string caller_span = "00f067aa0ba902b7";

std::string caller_traceparent()
{
    return "00-" + std::string(caller_trace) + "-" + std::string(caller_span) + "-01";
}

running_gateway traced_gateway(
    const running_emulator& emu, const otlp_receiver& otlp, const std::function<void(config::gateway_config&)>& more = {}
)
{
    return running_gateway(emu, [&](config::gateway_config& c) {
        c.tracing.otlp_endpoint = otlp.url();
        c.tracing.schedule_delay_ms = std::chrono::milliseconds(10);
        c.tracing.headers["x-collector-key"] = "k1";
        if (more) more(c);
    });
}

std::vector<json::object> of_kind(const std::vector<json::object>& spans, int kind)
{
    std::vector<json::object> out;
    for (const auto& s : spans)
        if (s.at("kind").as_int64() == kind) out.push_back(s);
    return out;
}

constexpr int internal = 1, server_kind = 2, client_kind = 3;

std::string text(const json::value& v)
{
    return v.is_object() && v.as_object().contains("stringValue") ? std::string(v.at("stringValue").as_string()) : "";
}

http_response chat(http_client& c, bool streaming, header_list extra = {})
{
    auto h = bearer(tenant_keys::alpha);
    for (auto& e : extra) h.push_back(std::move(e));
    json::object body{{"inputs", json::object{}}, {"query", "hello"}, {"user", "u1"},
                      {"response_mode", streaming ? "streaming" : "blocking"}};
    return c.request("POST", "/v1/chat-messages", h, json::serialize(body));
}

TEST(GatewayTracing, ABlockingCallIsAServerSpanWithItsAttemptInTheCallersTrace)
{
    running_emulator emu;
    otlp_receiver otlp;
    auto gw = traced_gateway(emu, otlp);
    auto c = gw.client();
    auto r = chat(*c, false, {{"traceparent", caller_traceparent()}, {"tracestate", "vendor=x"}});
    ASSERT_EQ(r.status, 200) << r.body;
    auto seen = wait_for_request(emu, [](const json::value& s) { return s.at("path") == "/v1/chat-messages"; });
    gw.drain_and_wait(); // every span is exported by then
    auto spans = otlp.spans();
    auto servers = of_kind(spans, server_kind);
    auto clients = of_kind(spans, client_kind);
    ASSERT_EQ(servers.size(), 1u);
    ASSERT_EQ(clients.size(), 1u);
    ASSERT_EQ(spans.size(), 2u);
    const auto& server = servers[0];
    EXPECT_EQ(server.at("traceId"), json::value(caller_trace));
    EXPECT_EQ(server.at("parentSpanId"), json::value(caller_span)) << "the caller's span is the parent";
    EXPECT_EQ(server.at("traceState"), "vendor=x");
    EXPECT_EQ(server.at("name"), "POST /v1/chat-messages");
    EXPECT_EQ(text(attribute(server, "http.route")), "/v1/chat-messages");
    EXPECT_EQ(attribute(server, "http.response.status_code").at("intValue"), "200");
    EXPECT_EQ(text(attribute(server, "dify_gateway.tenant")), "alpha");
    EXPECT_EQ(text(attribute(server, "dify_gateway.app")), "chat");
    EXPECT_EQ(text(attribute(server, "dify_gateway.request_id")), r.header("x-request-id"));
    const auto reply = r.json();
    const auto& usage = reply.at("metadata").at("usage");
    EXPECT_EQ(attribute(server, "gen_ai.usage.input_tokens").at("intValue"), json::value(std::to_string(usage.at("prompt_tokens").as_int64())));
    EXPECT_EQ(attribute(server, "gen_ai.usage.output_tokens").at("intValue"), json::value(std::to_string(usage.at("completion_tokens").as_int64())));
    const auto& attempt = clients[0];
    EXPECT_EQ(attempt.at("traceId"), json::value(caller_trace));
    EXPECT_EQ(attempt.at("parentSpanId"), server.at("spanId"));
    EXPECT_EQ(attribute(attempt, "http.response.status_code").at("intValue"), "200");
    EXPECT_EQ(text(attribute(attempt, "server.address")), "localhost");
    // Dify saw the attempt as its parent, and the caller's tracestate.
    ASSERT_TRUE(seen);
    EXPECT_EQ(seen->at("headers").at("tracestate"), "vendor=x");
    EXPECT_EQ(seen->at("headers").at("traceparent"),
              json::value("00-" + caller_trace + "-" + std::string(attempt.at("spanId").as_string()) + "-01"));
    bool keyed = false;
    for (const auto& [k, v] : otlp.last_headers()) keyed = keyed || (k == "x-collector-key" && v == "k1");
    EXPECT_TRUE(keyed) << "the configured export headers are sent";
}

TEST(GatewayTracing, ARetriedCallHasTwoAttemptSpans)
{
    running_emulator emu;
    otlp_receiver otlp;
    auto gw = traced_gateway(emu, otlp);
    auto ctl = emu.client();
    ASSERT_EQ(
        ctl->request("POST", "/_emulator/faults", {{"Content-Type", "application/json"}},
                     R"({"fault": "status=503", "count": 1, "path": "/v1/chat-messages"})")
            .status,
        200
    );
    auto c = gw.client();
    auto r = chat(*c, false);
    ASSERT_EQ(r.status, 200) << r.body;
    gw.drain_and_wait();
    auto spans = otlp.spans();
    ASSERT_EQ(spans.size(), 3u);
    auto servers = of_kind(spans, server_kind);
    auto clients = of_kind(spans, client_kind);
    ASSERT_EQ(servers.size(), 1u);
    ASSERT_EQ(clients.size(), 2u);
    EXPECT_FALSE(servers[0].contains("parentSpanId")) << "no traceparent came: the gateway started the trace";
    EXPECT_EQ(attribute(servers[0], "dify_gateway.attempts").at("intValue"), "2");
    for (const auto& a : clients) EXPECT_EQ(a.at("parentSpanId"), servers[0].at("spanId"));
    EXPECT_EQ(attribute(clients[0], "http.response.status_code").at("intValue"), "503");
    EXPECT_EQ(clients[0].at("status").at("code"), 2) << "the failed attempt is an error";
    EXPECT_EQ(attribute(clients[1], "http.request.resend_count").at("intValue"), "1");
    EXPECT_EQ(attribute(clients[1], "http.response.status_code").at("intValue"), "200");
}

TEST(GatewayTracing, AWorkflowStreamsNodesAreChildSpansOfItsAttempt)
{
    running_emulator emu;
    otlp_receiver otlp;
    auto gw = traced_gateway(emu, otlp);
    auto c = gw.client();
    json::object body{{"inputs", json::object{{"topic", "tides"}}}, {"user", "u1"}, {"response_mode", "streaming"}};
    auto r = c->request("POST", "/apps/workflow/v1/workflows/run", bearer(tenant_keys::alpha), json::serialize(body));
    ASSERT_EQ(r.status, 200) << r.body;
    std::size_t node_events = 0;
    for (const auto& f : sse_frames(r.body)) node_events += f.find("\"node_finished\"") != std::string::npos;
    ASSERT_GT(node_events, 0u);
    gw.drain_and_wait();
    auto spans = otlp.spans();
    ASSERT_EQ(spans.size(), node_events + 2);
    auto clients = of_kind(spans, client_kind);
    auto nodes = of_kind(spans, internal);
    ASSERT_EQ(clients.size(), 1u);
    ASSERT_EQ(nodes.size(), node_events);
    for (const auto& n : nodes) {
        EXPECT_EQ(n.at("parentSpanId"), clients[0].at("spanId"));
        EXPECT_EQ(n.at("traceId"), clients[0].at("traceId"));
        EXPECT_FALSE(text(attribute(n, "dify.workflow.node.type")).empty());
        EXPECT_EQ(text(attribute(n, "dify.workflow.node.status")), "succeeded");
    }
    auto servers = of_kind(spans, server_kind);
    ASSERT_EQ(servers.size(), 1u);
    ASSERT_TRUE(servers[0].contains("events"));
    EXPECT_EQ(servers[0].at("events").at(0).at("name"), "first_byte") << "a stream's time to first byte";
}

TEST(GatewayTracing, AStreamIsTracedLikeABlockingCall)
{
    running_emulator emu;
    otlp_receiver otlp;
    auto gw = traced_gateway(emu, otlp);
    auto c = gw.client();
    auto r = chat(*c, true, {{"traceparent", caller_traceparent()}});
    ASSERT_EQ(r.status, 200);
    gw.drain_and_wait();
    auto spans = otlp.spans();
    ASSERT_EQ(spans.size(), 2u);
    auto servers = of_kind(spans, server_kind);
    ASSERT_EQ(servers.size(), 1u);
    EXPECT_EQ(servers[0].at("traceId"), json::value(caller_trace));
    EXPECT_GT(std::stoll(std::string(attribute(servers[0], "gen_ai.usage.output_tokens").at("intValue").as_string())), 0);
}

TEST(GatewayTracing, AnUnsampledCallerIsFollowedAndAnInvalidTraceparentStartsATrace)
{
    running_emulator emu;
    otlp_receiver otlp;
    auto gw = traced_gateway(emu, otlp);
    auto c = gw.client();
    auto unsampled = "00-" + std::string(caller_trace) + "-" + std::string(caller_span) + "-00";
    ASSERT_EQ(chat(*c, false, {{"traceparent", unsampled}}).status, 200);
    auto seen = wait_for_request(emu, [](const json::value& s) { return s.at("path") == "/v1/chat-messages"; });
    ASSERT_TRUE(seen);
    const std::string sent(seen->at("headers").at("traceparent").as_string());
    EXPECT_EQ(sent.substr(0, 36), "00-" + std::string(caller_trace) + "-") << "the trace goes on to Dify";
    EXPECT_EQ(sent.substr(53), "00") << "unsampled";
    ASSERT_EQ(chat(*c, false, {{"traceparent", "00-XYZ-00f067aa0ba902b7-01"}, {"tracestate", "dropped=1"}}).status, 200);
    gw.drain_and_wait();
    auto spans = otlp.spans();
    ASSERT_EQ(spans.size(), 2u);
    ASSERT_EQ(of_kind(spans, server_kind).size(), 1u) << "only the second request was sampled";
    EXPECT_FALSE(of_kind(spans, server_kind)[0].contains("parentSpanId")) << "an invalid traceparent is ignored";
    const auto stats = emu.stats();
    const auto& last = stats.at("recent_requests").as_array().back();
    EXPECT_FALSE(last.at("headers").as_object().contains("tracestate")) << "nor is its tracestate passed on";
    EXPECT_NE(std::string(last.at("headers").at("traceparent").as_string()).find(std::string(of_kind(spans, server_kind)[0].at("traceId").as_string())),
              std::string::npos) << "Dify gets the gateway's trace";
}

TEST(GatewayTracing, TheStopCallAfterAClientLeftIsAClientSpanOfTheRequest)
{
    emulator::service_options slow;
    slow.token_delay = std::chrono::milliseconds(30);
    running_emulator emu(slow);
    otlp_receiver otlp;
    auto gw = traced_gateway(emu, otlp);
    std::string task_id;
    {
        auto c = gw.client();
        json::object body{{"inputs", json::object{}}, {"query", "a question long enough to stream for a while"},
                          {"user", "u1"}, {"response_mode", "streaming"}};
        c->send("POST", "/v1/chat-messages", bearer(tenant_keys::alpha), json::serialize(body));
        ASSERT_EQ(c->read_head().status, 200);
        task_id = std::string(sse_events(c->read_until("\n\n")).at(0).at("task_id").as_string());
        c->close(); // the client leaves mid-stream
    }
    const auto stop_path = "/v1/chat-messages/" + task_id + "/stop";
    ASSERT_TRUE(wait_for_request(emu, [&](const json::value& r) { return r.at("path") == json::value(stop_path); }));
    auto spans = otlp.wait_for([](const auto& s) {
        for (const auto& span : s)
            if (attribute(span, "dify_gateway.stop_call").is_object()) return true;
        return false;
    });
    const json::object* stop = nullptr;
    for (const auto& s : spans)
        if (attribute(s, "dify_gateway.stop_call").is_object()) stop = &s;
    ASSERT_NE(stop, nullptr);
    EXPECT_EQ(stop->at("kind"), client_kind);
    EXPECT_NE(text(attribute(*stop, "url.full")).find(stop_path), std::string::npos);
    gw.drain_and_wait();
    auto all = otlp.spans();
    auto servers = of_kind(all, server_kind);
    ASSERT_EQ(servers.size(), 1u);
    EXPECT_EQ(stop->at("parentSpanId"), servers[0].at("spanId")) << "a child of the request it stops";
}

TEST(GatewayTracing, AQuotaDecisionInRedisIsASpan)
{
    running_redis redis;
    running_emulator emu;
    otlp_receiver otlp;
    auto gw = traced_gateway(emu, otlp, [&](config::gateway_config& c) {
        c.quota_store.type = config::store_kind::redis;
        c.quota_store.url = redis.url();
        c.quota_store.timeout_ms = std::chrono::milliseconds(2000); // a loaded test machine: a slow first call is not a refusal
        c.tenants["alpha"].rate = config::rate_config{0.001, 1};
    });
    auto c = gw.client();
    EXPECT_EQ(chat(*c, false).status, 200);
    EXPECT_EQ(chat(*c, false).status, 429);
    gw.drain_and_wait();
    std::vector<std::string> decisions;
    for (const auto& s : of_kind(otlp.spans(), internal))
        if (s.at("name") == "quota admission") decisions.push_back(text(attribute(s, "dify_gateway.quota.decision")));
    std::sort(decisions.begin(), decisions.end());
    EXPECT_EQ(decisions, (std::vector<std::string>{"admitted", "rate"}));
}

TEST(GatewayTracing, AnUnauthenticatedRequestExportsNothing)
{
    running_emulator emu;
    otlp_receiver otlp;
    auto gw = traced_gateway(emu, otlp);
    auto c = gw.client();
    for (int i = 0; i < 5; ++i)
        EXPECT_EQ(c->request("GET", "/v1/info", bearer("not-a-key-0123456789")).status, 401);
    gw.drain_and_wait();
    EXPECT_TRUE(otlp.spans().empty());
}

TEST(GatewayTracing, ACollectorThatFailsCostsDroppedSpansNotRequests)
{
    running_emulator emu;
    otlp_receiver otlp;
    auto gw = traced_gateway(emu, otlp);
    auto& figures = gateway::trace_figures::process();
    const auto dropped_before = figures.spans_dropped.load();
    const auto failed_before = figures.exports_failed.load();
    otlp.fail_next(1000, 503);
    auto c = gw.client();
    for (int i = 0; i < 3; ++i) ASSERT_EQ(chat(*c, false).status, 200);
    gw.drain_and_wait(); // the last spans are flushed at the drain
    EXPECT_GE(figures.exports_failed.load() - failed_before, 1u);
    EXPECT_EQ(figures.spans_dropped.load() - dropped_before, 6u) << "a SERVER and a CLIENT span per request, not retried";
    EXPECT_TRUE(otlp.spans().empty());
}

TEST(GatewayTracing, NothingIsExportedUnlessConfiguredAndTheCallersTraceparentPasses)
{
    running_emulator emu;
    running_gateway gw(emu);
    auto c = gw.client();
    const auto exported = gateway::trace_figures::process().spans_exported.load();
    const auto dropped = gateway::trace_figures::process().spans_dropped.load();
    ASSERT_EQ(chat(*c, false, {{"traceparent", caller_traceparent()}, {"tracestate", "vendor=x"}}).status, 200);
    auto seen = wait_for_request(emu, [](const json::value& s) { return s.at("path") == "/v1/chat-messages"; });
    ASSERT_TRUE(seen);
    EXPECT_EQ(seen->at("headers").at("traceparent"), json::value(caller_traceparent()));
    EXPECT_EQ(seen->at("headers").at("tracestate"), "vendor=x");
    // Two traceparents cannot be told apart: none goes on.
    const std::string body = R"({"inputs": {}, "query": "twice", "user": "u1", "response_mode": "blocking"})";
    auto reply = gw.client()->raw_exchange(
        "POST /v1/chat-messages HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + tenant_keys::alpha +
        "\r\nContent-Type: application/json\r\ntraceparent: " + caller_traceparent() +
        "\r\ntraceparent: 00-11111111111111111111111111111111-2222222222222222-01\r\nConnection: close\r\n"
        "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
    ASSERT_EQ(reply.rfind("HTTP/1.1 200", 0), 0u) << reply;
    gw.drain_and_wait();
    const auto stats = emu.stats();
    EXPECT_FALSE(stats.at("recent_requests").as_array().back().at("headers").as_object().contains("traceparent"));
    EXPECT_EQ(gateway::trace_figures::process().spans_exported.load(), exported);
    EXPECT_EQ(gateway::trace_figures::process().spans_dropped.load(), dropped);
}

} // namespace
} // namespace gw::test
