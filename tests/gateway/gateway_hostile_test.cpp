// What a hostile (or merely buggy) tenant tries against the request path, each with the
// answer it gets: message ids it does not own, app-wide routes of a shared app, unknown
// routes, bodies that never end, replies it does not read, oversized SSE events, and
// leaving a stream before Dify names its task. (Parser differentials with Dify's own
// stack are tested against a Flask/Werkzeug oracle: tests/oracle.)
#include "tests/emulator/emulator_test_util.hpp"
#include "tests/support/gateway_fixture.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <thread>

namespace gw::test {
namespace {

using namespace std::chrono_literals;
namespace net = boost::asio;

std::int64_t reached(running_emulator& emu)
{
    return emu.stats().at("requests_total").as_int64();
}

TEST(GatewayHostile, MessageIdsBelongToTheTenantWhoseGenerationMadeThem)
{
    running_emulator emu;
    running_gateway gw(emu);
    auto c = gw.client();
    auto chat = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("hello", "alice")).json();
    std::string message(chat.at("message_id").as_string());
    auto before = reached(emu);
    auto audio = post_json(*c, "/v1/text-to-audio", tenant_keys::beta, json::object{{"message_id", message}, {"user", "bob"}});
    EXPECT_EQ(audio.status, 404) << audio.body;
    EXPECT_EQ(audio.json().at("message"), "Message Not Exists.");
    auto feedback = post_json(*c, "/v1/messages/" + message + "/feedbacks", tenant_keys::beta,
                              json::object{{"rating", "like"}, {"user", "alpha:alice"}});
    EXPECT_EQ(feedback.status, 404);
    auto suggested = get(*c, "/v1/messages/" + message + "/suggested?user=alpha:alice", tenant_keys::beta);
    EXPECT_EQ(suggested.status, 404);
    EXPECT_EQ(reached(emu), before) << "none of beta's attempts reached Dify";
    auto own = post_json(*c, "/v1/text-to-audio", tenant_keys::alpha, json::object{{"message_id", message}, {"user", "alice"}});
    EXPECT_EQ(own.status, 200) << "alpha reads its own answer aloud";
    EXPECT_EQ(own.header("content-type"), "audio/mpeg");
}

TEST(GatewayHostile, AppWideRoutesOfASharedAppNeedAGrant)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) { c.tenants["beta"].admin_apps = {"workflow"}; });
    auto c = gw.client();
    auto before = reached(emu);
    // chat is shared by alpha and beta, and neither administers it.
    for (auto path : {"/v1/app/feedbacks", "/v1/end-users/00000000-0000-4000-8000-000000000000", "/v1/apps/annotations"}) {
        auto r = get(*c, path, tenant_keys::alpha);
        EXPECT_EQ(r.status, 403) << path;
        EXPECT_EQ(r.json().at("code"), "forbidden");
        EXPECT_NE(r.json().at("message").as_string().find("admin_apps"), std::string::npos) << "the reason is given";
    }
    EXPECT_EQ(post_json(*c, "/v1/apps/annotations", tenant_keys::beta, json::object{{"question", "q"}, {"answer", "a"}}).status, 403);
    EXPECT_EQ(reached(emu), before);
    // Workflow logs are scoped to the tenant's own end users instead (Dify filters exactly).
    auto logs = get(*c, "/v1/workflows/logs?created_by_end_user_session_id=bob&created_by_account=admin", tenant_keys::alpha);
    auto seen = emu.stats().at("recent_requests").as_array().back();
    EXPECT_EQ(seen.at("query"), "created_by_end_user_session_id=alpha%3Abob");
    get(*c, "/v1/workflows/logs", tenant_keys::alpha);
    seen = emu.stats().at("recent_requests").as_array().back();
    EXPECT_EQ(seen.at("query"), "created_by_end_user_session_id=alpha%3Adefault");
    // beta administers workflow (shared) by grant; alpha alone uses completion.
    get(*c, "/apps/workflow/v1/workflows/logs", tenant_keys::beta);
    seen = emu.stats().at("recent_requests").as_array().back();
    EXPECT_EQ(seen.at("query"), "") << "the administrator sees every run";
    EXPECT_EQ(get(*c, "/apps/completion/v1/app/feedbacks", tenant_keys::alpha).status, 200);
    EXPECT_EQ(get(*c, "/apps/workflow/v1/app/feedbacks", tenant_keys::beta).status, 200);
}

TEST(GatewayHostile, UnknownRoutesAre404UnlessForwardedWithUserNamespaced)
{
    running_emulator emu;
    {
        running_gateway gw(emu);
        auto c = gw.client();
        auto before = reached(emu);
        auto r = get(*c, "/v1/workflow/run-id/events?user=alpha:alice", tenant_keys::beta);
        EXPECT_EQ(r.status, 404) << "a known route, forwarded: Dify 1.13 (and the emulator) answer their own 404";
        auto unknown = post_json(*c, "/v1/brand-new-route", tenant_keys::beta, json::object{{"user", "alpha:alice"}});
        EXPECT_EQ(unknown.status, 404);
        EXPECT_EQ(unknown.json().at("code"), "not_found");
        EXPECT_EQ(reached(emu), before + 1) << "only the known route reached Dify";
        auto seen = emu.stats().at("recent_requests").as_array().back();
        EXPECT_EQ(seen.at("query"), "user=beta%3Aalpha%3Aalice");
    }
    running_gateway gw(emu, [](config::gateway_config& c) { c.server.forward_unknown_routes = true; });
    auto c = gw.client();
    auto r = post_json(*c, "/v1/brand-new-route?user=x", tenant_keys::beta, json::object{{"user", "alpha:alice"}});
    EXPECT_EQ(r.status, 404) << "Dify's own (HTML) 404 this time";
    auto seen = emu.stats().at("recent_requests").as_array().back();
    EXPECT_EQ(seen.at("path"), "/v1/brand-new-route");
    EXPECT_EQ(seen.at("query"), "user=beta%3Ax");
    auto binary = c->request("POST", "/v1/brand-new-route", bearer(tenant_keys::beta, "application/octet-stream"), "bytes");
    EXPECT_EQ(binary.status, 400) << "a body the gateway cannot look into is not forwarded";
}

TEST(GatewayHostile, ATrickledBodyGets408AndFreesItsSlot)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) {
        c.server.client_idle_timeout_ms = std::chrono::milliseconds(300);
        c.tenants["alpha"].admin_apps = {"chat"};
        c.tenants["alpha"].max_concurrent = 1;
    });
    // Annotations carry no `user`: their body is streamed to Dify as it arrives. This one
    // announces 100 bytes and never sends more than 12.
    net::io_context io;
    net::ip::tcp::socket s(io);
    s.connect(gw.endpoint());
    net::write(s, net::buffer("POST /v1/apps/annotations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tenant_keys::alpha +
                              "\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"question\":"));
    std::string reply;
    boost::system::error_code ec;
    char buf[4096];
    while (!ec) reply.append(buf, s.read_some(net::buffer(buf), ec)); // the gateway answers, then closes
    EXPECT_EQ(reply.rfind("HTTP/1.1 408 ", 0), 0u) << reply;
    EXPECT_NE(reply.find("Connection: close"), std::string::npos);
    auto other = gw.client();
    EXPECT_EQ(get(*other, "/v1/info", tenant_keys::alpha).status, 200) << "the concurrency slot was released";
}

TEST(GatewayHostile, AClientThatStopsReadingIsDroppedAndItsSlotFreed)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) {
        c.server.client_send_timeout_ms = std::chrono::milliseconds(300);
        c.server.max_request_body_bytes = 64 << 20;
        c.tenants["alpha"].max_concurrent = 1;
    });
    // A reply far larger than what the socket buffers hold, to a client that reads nothing.
    net::io_context io;
    net::ip::tcp::socket s(io);
    s.connect(gw.endpoint());
    s.set_option(net::socket_base::receive_buffer_size(4096));
    std::string query(8 << 20, 'w');
    auto body = json::serialize(chat_body(query, "u"));
    std::string head = "POST /v1/chat-messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tenant_keys::alpha +
                       "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    net::write(s, net::buffer(head));
    net::write(s, net::buffer(body));
    // While that reply is stuck, the tenant's one slot is taken; once the send timeout drops
    // the reader, the slot is free again.
    auto c = gw.client();
    int status = 0;
    for (int i = 0; i < 200 && status != 200; ++i) {
        status = get(*c, "/v1/conversations?user=u", tenant_keys::alpha).status;
        if (status != 200) std::this_thread::sleep_for(50ms); // the gateway's timer, in another thread
    }
    EXPECT_EQ(status, 200) << "the slow reader's slot was released";
    boost::system::error_code ec;
    char buf[65536];
    std::size_t got = 0;
    while (!ec) got += s.read_some(net::buffer(buf), ec);
    EXPECT_LT(got, body.size()) << "the reply was cut off, not delivered whole";
    EXPECT_EQ(ec, net::error::connection_reset) << "dropped with a reset: the kernel does not trickle the rest";
}

TEST(GatewayHostile, BlockingRepliesOfAnySizeAreChargedWhatDifyReported)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) {
        c.server.max_request_body_bytes = 8 << 20;
        c.tenants["alpha"].tokens_per_day = 100'000'000;
    });
    auto c = gw.client();
    std::string query; // every word different: bytes out of order or repeated would show
    for (int i = 0; i < 300'000; ++i) query += "w" + std::to_string(i) + " ";
    auto r = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body(query, "u"));
    ASSERT_EQ(r.status, 200);
    ASSERT_GT(r.body.size(), 1u << 20) << "a reply over 1 MiB";
    // Far more than a socket buffer holds: the first send takes part of it, the rest goes
    // out as the client reads. The answer echoes the query: it arrived whole and in order.
    EXPECT_NE(std::string_view(r.json().at("answer").as_string()).find(query), std::string_view::npos);
    auto reported = r.json().at("metadata").at("usage").at("total_tokens").as_int64();
    http_client admin(gw.server().admin_endpoint(), false);
    auto usage = admin.request("GET", "/admin/usage").json();
    EXPECT_EQ(usage.at("tenants").at("alpha").at("tokens_today").as_int64(), reported);
}

TEST(GatewayHostile, ABlockingGenerationIsChargedWhatItUsedEvenWhenTheClientLeft)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) { c.tenants["alpha"].tokens_per_day = 100'000'000; });
    http_client admin(gw.server().admin_endpoint(), false);
    auto tokens_today = [&] { return admin.request("GET", "/admin/usage").json().at("tenants").at("alpha").at("tokens_today").as_int64(); };
    std::string words;
    for (int i = 0; i < 20'000; ++i) words += "word ";
    const auto body = json::serialize(json::object{{"inputs", json::object{{"topic", words}}}, {"response_mode", "blocking"}, {"user", "u"}});
    {
        auto c = gw.client();
        auto r = c->request("POST", "/apps/workflow/v1/workflows/run", bearer(tenant_keys::alpha), body);
        ASSERT_EQ(r.status, 200);
    }
    const auto one_run = tokens_today();
    ASSERT_GT(one_run, 10'000);
    {
        // The same run again, but the client is gone before Dify's reply (over 100 KB) arrives.
        auto c = gw.client();
        auto h = bearer(tenant_keys::alpha);
        h.emplace_back("X-Emulator-Fault", "stall_ms=300");
        c->send("POST", "/apps/workflow/v1/workflows/run", h, body);
        c->close();
    }
    std::int64_t charged = 0;
    for (int i = 0; i < 200 && charged < 2 * one_run; ++i) {
        charged = tokens_today();
        if (charged < 2 * one_run) std::this_thread::sleep_for(20ms); // the gateway finishes on its own thread
    }
    EXPECT_EQ(charged, 2 * one_run) << "the run nobody read is charged its usage, not a reservation";
}

TEST(GatewayHostile, AStreamTheGatewayEndsItselfStopsItsTask)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) { c.upstreams["dify"].stream_idle_timeout_ms = std::chrono::milliseconds(300); });
    auto c = gw.client();
    auto h = bearer(tenant_keys::alpha);
    h.emplace_back("X-Emulator-Fault", "stall_ms=3000; after=2"); // Dify goes silent mid-stream
    auto r = c->request("POST", "/v1/chat-messages", h, json::serialize(chat_body("one two three four five six", "erin", "streaming")));
    ASSERT_EQ(r.status, 200);
    auto events = sse_events(r.body);
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back().at("code"), "upstream_stream_broken");
    auto task = std::string(events.front().at("task_id").as_string());
    auto stop = wait_for_request(emu, [&](const json::value& q) {
        return q.at("path") == json::value("/v1/chat-messages/" + task + "/stop");
    });
    ASSERT_TRUE(stop) << "the task Dify may still be running is stopped";
    EXPECT_EQ(stop->at("user"), "alpha:erin");
}

TEST(GatewayHostile, AnOversizedEventEndsTheStreamWithAnErrorEventNeverHalfAnEvent)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) { c.upstreams["dify"].max_sse_event_bytes = 1024; });
    auto c = gw.client();
    // workflow_started repeats the inputs: one event of several KiB.
    auto r = post_json(*c, "/apps/workflow/v1/workflows/run", tenant_keys::alpha,
                       json::object{{"inputs", json::object{{"topic", std::string(4000, 't')}}},
                                    {"response_mode", "streaming"},
                                    {"user", "u"}});
    ASSERT_EQ(r.status, 200);
    auto events = sse_events(r.body); // every frame parses: no half event reached the client
    ASSERT_FALSE(events.empty()) << r.body;
    EXPECT_EQ(events.back(), json::parse(R"({"event":"error","code":"event_too_large","status":502,"message":"An upstream event was larger than the gateway relays."})"));
    for (const auto& e : events) EXPECT_NE(e.at("event"), "workflow_started");
    EXPECT_EQ(get(*c, "/v1/info", tenant_keys::alpha).status, 200) << "the chunked body ended properly";
}

TEST(GatewayHostile, AClientLeavingAfterTheFirstPingStillStopsTheWorkflow)
{
    running_emulator emu;
    running_gateway gw(emu);
    {
        auto c = gw.client();
        auto h = bearer(tenant_keys::alpha);
        h.emplace_back("X-Emulator-Fault", "stall_ms=1500; after=0"); // the first event comes seconds after the ping
        c->send("POST", "/apps/workflow/v1/workflows/run", h,
                json::serialize(json::object{{"inputs", json::object{{"topic", "tea"}}}, {"response_mode", "streaming"}, {"user", "erin"}}));
        ASSERT_EQ(c->read_head().status, 200);
        EXPECT_EQ(c->read_until("\n\n"), "event: ping\n\n");
        c->close(); // gone before Dify named the task
    }
    auto stop = wait_for_request(emu, [](const json::value& r) {
        auto path = std::string(r.at("path").as_string());
        return path.starts_with("/v1/workflows/tasks/") && path.ends_with("/stop");
    });
    ASSERT_TRUE(stop) << "the gateway read on until the task id and stopped the task";
    EXPECT_EQ(stop->at("user"), "alpha:erin");
}

TEST(GatewayHostile, MetricLabelsStayAClosedSet)
{
    running_emulator emu;
    running_gateway gw(emu);
    auto c = gw.client();
    for (auto method : {"FOO", "post", "GETX", "PROPFIND"}) c->request(method, "/v1/info", bearer(tenant_keys::alpha));
    get(*c, "/v1/some/unknown/path-" + std::to_string(std::rand()), tenant_keys::alpha);
    get(*c, "/v1/conversations/00000000-0000-4000-8000-000000000001/variables?user=u", tenant_keys::alpha);
    http_client admin(gw.server().admin_endpoint(), false);
    auto text = admin.request("GET", "/metrics").body;
    std::set<std::string> allowed{"", "unknown"};
    for (const auto& r : core::all_routes()) allowed.insert(std::string(r.method) + " " + std::string(r.pattern));
    std::regex label("endpoint=\"([^\"]*)\"");
    int seen = 0;
    for (std::sregex_iterator it(text.begin(), text.end(), label), end; it != end; ++it, ++seen)
        EXPECT_TRUE(allowed.contains((*it)[1].str())) << (*it)[1].str();
    EXPECT_GT(seen, 0);
    EXPECT_NE(text.find("endpoint=\"GET /conversations/{}/variables\""), std::string::npos);
}

} // namespace
} // namespace gw::test
