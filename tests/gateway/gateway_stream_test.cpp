// dify-gateway streaming and upstream behaviour against dify-emulator (TLS): byte-exact
// SSE relay, stop on client disconnect, mid-stream failures, timeouts, pooling, drain.
#include "tests/emulator/emulator_test_util.hpp"
#include "tests/support/gateway_fixture.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include <sys/socket.h>
#include <sys/time.h>

namespace gw::test {
namespace {

using namespace std::chrono_literals;

emulator::service_options deterministic(std::chrono::milliseconds token_delay = 0ms)
{
    emulator::service_options o;
    o.seed = 42;
    o.clock = [] { return std::int64_t{1'750'000'000}; };
    o.token_delay = token_delay;
    return o;
}

TEST(GatewayStream, ClientReceivesExactlyTheBytesDifySent)
{
    struct tc
    {
        std::string path, key_app, body, fault;
    };
    std::vector<tc> cases{
        {"/v1/chat-messages", "chat", json::serialize(chat_body("Explain entanglement in simple words please", "u", "streaming")), ""},
        {"/v1/chat-messages", "chat", json::serialize(chat_body("Split me at odd places", "u", "streaming")), "trickle_ms=0"},
        {"/v1/chat-messages", "agent", json::serialize(chat_body("use a tool", "u", "streaming")), ""},
        {"/v1/chat-messages", "chatflow", json::serialize(chat_body("flow", "u", "streaming")), ""},
        {"/v1/workflows/run", "workflow", R"({"inputs": {"topic": "heat pumps"}, "response_mode": "streaming", "user": "u"})", ""},
        {"/v1/completion-messages", "completion", R"({"inputs": {}, "query": "q", "response_mode": "streaming", "user": "u"})", ""},
    };
    const std::map<std::string, std::string> app_keys{{"chat", keys::chat}, {"agent", keys::agent}, {"chatflow", keys::chatflow},
                                                      {"workflow", keys::workflow}, {"completion", keys::completion}};
    for (bool trickle : {false, true}) {
        for (const auto& t : cases) {
            running_emulator direct_emu(deterministic()), proxied_emu(deterministic());
            running_gateway gw(proxied_emu);
            std::string fault = trickle ? "trickle_ms=1" : "";
            // Direct, the request carries the user the gateway would send.
            auto direct_body = json::parse(t.body).as_object();
            direct_body["user"] = "alpha:u";
            auto dc = direct_emu.client();
            header_list dh = bearer(app_keys.at(t.key_app));
            header_list gh = bearer(tenant_keys::alpha);
            if (!fault.empty()) {
                dh.emplace_back("X-Emulator-Fault", fault);
                gh.emplace_back("X-Emulator-Fault", fault);
            }
            auto direct = dc->request("POST", t.path, dh, json::serialize(direct_body));
            auto gc = gw.client();
            auto via = gc->request("POST", "/apps/" + t.key_app + t.path, gh, t.body);
            ASSERT_EQ(direct.status, 200) << direct.body;
            ASSERT_EQ(via.status, 200) << via.body;
            EXPECT_EQ(via.body, direct.body) << t.key_app << (trickle ? " trickled" : "");
            EXPECT_EQ(via.header("content-type"), "text/event-stream; charset=utf-8");
            EXPECT_EQ(via.header("cache-control"), "no-cache");
            EXPECT_EQ(via.header("x-accel-buffering"), "no");
            EXPECT_TRUE(via.chunked);
        }
    }
}

TEST(GatewayStream, EventsArriveAsTheyAreProducedWithPings)
{
    emulator::service_options o;
    o.token_delay = 40ms;
    o.ping_interval = 15ms;
    running_emulator emu(o);
    running_gateway gw(emu);
    auto c = gw.client();
    c->send("POST", "/v1/chat-messages", bearer(tenant_keys::alpha), json::serialize(chat_body("one two three four five six", "u", "streaming")));
    ASSERT_EQ(c->read_head().status, 200);
    // The first event is readable long before the stream ends (no buffering).
    auto first = c->read_until("\n\n");
    EXPECT_EQ(sse_events(first).size(), 1);
    auto rest = c->read_rest();
    auto names = event_names(first + rest);
    EXPECT_GE(std::count(names.begin(), names.end(), "ping"), 1);
    EXPECT_EQ(names.back(), "message_end");
    for (const auto& f : sse_frames(first + rest)) EXPECT_TRUE(f == "event: ping" || f.rfind("data: {", 0) == 0) << f;
}

// Starts a chat stream of several events for alpha's end user erin; returns its first event.
std::string start_stream(http_client& c)
{
    c.send("POST", "/v1/chat-messages", bearer(tenant_keys::alpha),
           json::serialize(chat_body("a question long enough to stream for a while", "erin", "streaming")));
    EXPECT_EQ(c.read_head().status, 200);
    return c.read_until("\n\n");
}

TEST(GatewayStream, ClientDisconnectClosesUpstreamAndStopsTheTask)
{
    running_emulator emu(deterministic(30ms));
    running_gateway gw(emu);
    {
        auto c = gw.client();
        auto first = start_stream(*c);
        auto task_id = std::string(sse_events(first).at(0).at("task_id").as_string());
        c->close(); // the client goes away mid-stream
        auto stop = wait_for_request(emu, [&](const json::value& r) {
            return r.at("path") == json::value("/v1/chat-messages/" + task_id + "/stop");
        });
        ASSERT_TRUE(stop) << "the gateway called Dify's stop endpoint";
        EXPECT_EQ(stop->at("user"), "alpha:erin");
        EXPECT_EQ(stop->at("app_key"), json::value(keys::chat));
        EXPECT_EQ(stop->at("method"), "POST");
    }
    // The stopped message is stored with a partial answer.
    auto c = gw.client();
    auto convs = get(*c, "/v1/conversations?user=erin", tenant_keys::alpha).json().at("data").as_array();
    ASSERT_EQ(convs.size(), 1);
}

TEST(GatewayStream, ARequestSentDuringAStreamIsAnsweredAfterIt)
{
    running_emulator emu(deterministic(20ms));
    running_gateway gw(emu);
    auto c = gw.client();
    auto first = start_stream(*c);
    // The client pipelines its next request while the stream still runs: the watch on its
    // connection keeps the bytes, and the session answers them once the stream has ended.
    c->send("GET", "/v1/info", bearer(tenant_keys::alpha), "");
    auto names = event_names(first + c->read_rest());
    ASSERT_FALSE(names.empty());
    EXPECT_EQ(names.back(), "message_end") << "the stream ended whole";
    auto next = c->read_head();
    EXPECT_EQ(next.status, 200);
    EXPECT_NE(c->read_rest().find("\"mode\":\"chat\""), std::string::npos);
}

// The answer of a streamed chat turn, read from its events; every event must carry the
// turn's task id.
std::string answer_of_stream(const std::string& body, std::string& task_id)
{
    std::string answer;
    for (const auto& e : sse_events(body)) {
        if (task_id.empty()) task_id = std::string(e.at("task_id").as_string());
        EXPECT_EQ(e.at("task_id").as_string(), task_id) << "an event of another stream";
        if (e.at("event") == "message") answer += std::string(e.at("answer").as_string());
    }
    return answer;
}

TEST(GatewayStream, AClientThatReadsSlowlyGetsOnlyItsOwnEvents)
{
    // One worker: both streams share its scratch memory. The first client does not read
    // until the second stream has ended, so the gateway's writes to it soon wait (a stream
    // of ~12 MB fills every socket buffer on the way). The second stream's first event
    // comes at once, the rest (~400 KB) after a second, by then through the same scratch
    // as the first stream's waiting write.
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& cfg) { cfg.server.threads = 1; });
    std::string slow_query;
    for (int i = 0; i < 100'000; ++i) slow_query += "a ";
    auto slow = gw.client();
    slow->send("POST", "/v1/chat-messages", bearer(tenant_keys::alpha), json::serialize(chat_body(slow_query, "erin", "streaming")));
    ASSERT_EQ(slow->read_head().status, 200);

    auto other = gw.client();
    std::string other_query;
    for (int i = 0; i < 3'000; ++i) other_query += "b ";
    auto stalled = bearer(tenant_keys::beta);
    stalled.emplace_back("X-Emulator-Fault", "stall_ms=1000; after=1");
    auto r = other->request("POST", "/v1/chat-messages", stalled, json::serialize(chat_body(other_query, "bob", "streaming")));
    ASSERT_EQ(r.status, 200);
    std::string other_task;
    EXPECT_EQ(answer_of_stream(r.body, other_task), "Turn 1. You said: \"" + other_query + "\".");

    const auto body = slow->read_rest();
    EXPECT_GT(body.size(), 8u << 20) << "large enough that the writes waited";
    std::string slow_task;
    EXPECT_EQ(answer_of_stream(body, slow_task), "Turn 1. You said: \"" + slow_query + "\".");
    EXPECT_NE(slow_task, other_task);
}

TEST(GatewayStream, UpstreamResetMidStreamEndsWithAnErrorEvent)
{
    running_emulator emu;
    running_gateway gw(emu);
    auto c = gw.client();
    auto h = bearer(tenant_keys::alpha);
    h.emplace_back("X-Emulator-Fault", "reset_after=2");
    auto r = c->request("POST", "/v1/chat-messages", h, json::serialize(chat_body("one two three four five six seven", "u", "streaming")));
    ASSERT_EQ(r.status, 200);
    auto events = sse_events(r.body); // parsing every frame proves no half event reached the client
    ASSERT_EQ(events.size(), 3u) << r.body;
    EXPECT_EQ(events[0].at("event"), "message");
    EXPECT_EQ(events[1].at("event"), "message");
    EXPECT_EQ(events[2], json::parse(R"({"event":"error","code":"upstream_stream_broken","status":502,"message":"The upstream stream broke."})"));
    EXPECT_EQ(get(*c, "/v1/info", tenant_keys::alpha).status, 200) << "the chunked body ended properly: the connection is reusable";
}

TEST(GatewayStream, AStreamThatEndsWithTheConnectionIsRelayedWhole)
{
    // An upstream (a proxy in front of Dify speaking HTTP/1.0 style) that sends the stream
    // with neither chunks nor a length: the body ends when the connection closes, which
    // ends the client's stream properly, every event relayed and no error added.
    const std::string events =
        "data: {\"event\": \"message\", \"task_id\": \"9da23599-e713-473b-982c-4328d4f5c78a\", \"answer\": \"Hi\"}\n\n"
        "data: {\"event\": \"message_end\", \"task_id\": \"9da23599-e713-473b-982c-4328d4f5c78a\", "
        "\"metadata\": {\"usage\": {\"total_tokens\": 3}}}\n\n";
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor upstream(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    running_emulator emu;
    auto cfg = gateway_config_for(emu);
    cfg.upstreams["dify"].url = "http://127.0.0.1:" + std::to_string(upstream.local_endpoint().port());
    cfg.upstreams["dify"].ca_file.clear();
    running_gateway gw(cfg);
    std::thread serve([&] {
        boost::asio::ip::tcp::socket s(io);
        std::string request;
        boost::system::error_code ec;
        std::size_t head_end = 0;
        do { // connections the gateway opens and closes unused are not the request's
            s = boost::asio::ip::tcp::socket(io);
            upstream.accept(s, ec);
            if (ec) return; // the request failed before reaching here (see below)
            const timeval limit{10, 0}; // no read waits forever, whatever the gateway does
            ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
            request.clear();
            // The whole request (head and its sized body), so that closing sends a FIN, not a reset.
            head_end = boost::asio::read_until(s, boost::asio::dynamic_buffer(request), "\r\n\r\n", ec);
        } while (ec);
        const auto length_at = request.find("Content-Length: ");
        const std::size_t length = length_at == std::string::npos ? 0 : std::stoul(request.substr(length_at + 16));
        if (request.size() < head_end + length)
            boost::asio::read(s, boost::asio::dynamic_buffer(request), boost::asio::transfer_exactly(head_end + length - request.size()), ec);
        const std::string head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
        // In three writes, one cutting an event in two.
        for (std::string_view piece : {std::string_view(head), std::string_view(events).substr(0, 30), std::string_view(events).substr(30)})
            boost::asio::write(s, boost::asio::buffer(piece), ec);
        s.shutdown(boost::asio::ip::tcp::socket::shutdown_send, ec);
        char rest[64];
        while (!ec) s.read_some(boost::asio::buffer(rest), ec); // until the gateway closes its side
    });
    auto c = gw.client();
    auto r = c->request("POST", "/v1/chat-messages", bearer(tenant_keys::alpha), json::serialize(chat_body("hi", "u", "streaming")));
    if (r.status != 200) ::shutdown(upstream.native_handle(), SHUT_RDWR); // wakes an accept still waiting
    serve.join();
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.body, events) << "every byte, nothing added";
    EXPECT_TRUE(r.chunked);
    upstream.close(); // the next request finds no upstream
    EXPECT_EQ(get(*c, "/v1/info", tenant_keys::alpha).status, 502) << "the client's connection is still usable";
}

TEST(GatewayStream, SilentUpstreamHitsTheStreamIdleTimeout)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) { c.upstreams["dify"].stream_idle_timeout_ms = std::chrono::milliseconds(100); });
    auto c = gw.client();
    auto h = bearer(tenant_keys::alpha);
    h.emplace_back("X-Emulator-Fault", "stall_ms=1000; after=1");
    auto r = c->request("POST", "/v1/chat-messages", h, json::serialize(chat_body("one two three four", "u", "streaming")));
    auto events = sse_events(r.body);
    ASSERT_EQ(events.size(), 2u) << r.body;
    EXPECT_EQ(events.back().at("code"), "upstream_stream_broken");
    EXPECT_EQ(events.back().at("message"), "The upstream stream was idle for too long.");
}

TEST(GatewayUpstream, TimeoutsAndConnectFailuresBeforeAnyByte)
{
    running_emulator emu;
    {
        running_gateway gw(emu, [](config::gateway_config& c) {
            c.upstreams["dify"].response_timeout_ms = std::chrono::milliseconds(150);
            c.upstreams["dify"].connect_timeout_ms = std::chrono::milliseconds(100);
        });
        auto c = gw.client();
        auto r = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("x", "u"), {{"X-Emulator-Fault", "stall_ms=1000"}});
        EXPECT_EQ(r.status, 504);
        EXPECT_EQ(r.json().at("code"), "gateway_timeout");
        EXPECT_EQ(r.body.find("127.0.0.1"), std::string::npos) << "no internal address in errors";
    }
    // Nothing listens on the upstream port.
    auto cfg = gateway_config_for(emu);
    {
        boost::asio::io_context io;
        boost::asio::ip::tcp::acceptor probe(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
        cfg.upstreams["dify"].url = "https://localhost:" + std::to_string(probe.local_endpoint().port());
    } // closed again: connections are refused
    running_gateway gw(cfg);
    auto c = gw.client();
    auto r = get(*c, "/v1/info", tenant_keys::alpha);
    EXPECT_EQ(r.status, 502);
    EXPECT_EQ(r.json().at("code"), "bad_gateway");
}

// A TLS upstream whose TCP connect never completes is a timeout at connect_timeout_ms
// (504), like one that never handshakes: the TLS socket's own deadline interrupts the
// connect. The listener's queue is full (backlog 1 holds two connections), so Linux drops
// the gateway's SYN and its connect waits.
TEST(GatewayUpstream, AConnectThatNeverCompletesIsATimeout)
{
    running_emulator emu;
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor full(io);
    full.open(boost::asio::ip::tcp::v4());
    full.bind({boost::asio::ip::make_address("127.0.0.1"), 0});
    full.listen(1);
    std::vector<boost::asio::ip::tcp::socket> queued;
    for (int i = 0; i < 2; ++i) queued.emplace_back(io).connect(full.local_endpoint());
    running_gateway gw(emu, [&](config::gateway_config& c) {
        c.upstreams["dify"].url = "https://localhost:" + std::to_string(full.local_endpoint().port());
        c.upstreams["dify"].connect_timeout_ms = std::chrono::milliseconds(100);
    });
    auto c = gw.client();
    auto r = get(*c, "/v1/info", tenant_keys::alpha);
    EXPECT_EQ(r.status, 504);
    EXPECT_EQ(r.json().at("code"), "gateway_timeout");
}

TEST(GatewayUpstream, PoolingBoundsUpstreamConnections)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) {
        c.server.threads = 2;
        c.upstreams["dify"].max_connections = 3;
    });
    {
        auto c = gw.client();
        for (int i = 0; i < 1000; ++i) ASSERT_EQ(get(*c, "/v1/parameters", tenant_keys::alpha).status, 200);
    }
    std::vector<std::thread> clients;
    std::atomic<int> ok{0};
    for (int t = 0; t < 8; ++t)
        clients.emplace_back([&] {
            auto c = gw.client();
            for (int i = 0; i < 250; ++i)
                if (post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("hi", "u")).status == 200) ++ok;
        });
    for (auto& t : clients) t.join();
    EXPECT_EQ(ok.load(), 2000);
    auto connects = gw.server().upstream_connects();
    EXPECT_LE(connects, 2u * 3u) << "max_connections per worker";
    EXPECT_GE(connects, 1u);
    auto stats = emu.stats();
    EXPECT_EQ(stats.at("requests_by_path").at("/v1/chat-messages"), 2000);
    EXPECT_EQ(stats.at("tls_handshakes").as_int64(), static_cast<std::int64_t>(connects) + 1) << "+1: this stats call";
}

// Waits (bounded: 10 s) until the gateway's background work made `series` reach `n`.
bool counter_reaches(gateway::server& srv, const std::string& series, double n)
{
    for (int i = 0; i < 1000; ++i) {
        if (metric_sample(srv.scrape(), series) >= n) return true;
        std::this_thread::sleep_for(10ms); // the pool connects on the gateway's worker thread
    }
    return false;
}

TEST(GatewayUpstream, ConnectionsOpenedAheadOfDemandServeTheNextStreams)
{
    const std::string waits = R"(dify_gateway_upstream_connect_waits_total{upstream="dify"})";
    const std::string opened = R"(dify_gateway_upstream_preconnects_total{upstream="dify",result="opened"})";
    const std::string failed = R"(dify_gateway_upstream_preconnects_total{upstream="dify",result="failed"})";
    for (double ratio : {1.0, 2.0}) {
        SCOPED_TRACE("preconnect_ratio " + std::to_string(ratio));
        // Streams that last (an event every 300 ms), so each holds its connection while the
        // next one starts; every new upstream connection waits 50 ms as a distant Dify's would.
        running_emulator emu(deterministic(300ms), true, emulator::builtin_apps(), 0, 50ms);
        running_gateway gw(emu, [ratio](config::gateway_config& c) {
            c.server.threads = 1;
            c.upstreams["dify"].preconnect_ratio = ratio;
        });
        std::vector<std::unique_ptr<http_client>> streams;
        auto open_stream = [&] {
            streams.push_back(gw.client());
            streams.back()->send("POST", "/v1/chat-messages", bearer(tenant_keys::alpha),
                                 json::serialize(chat_body("Explain entanglement in simple words please", "u", "streaming")));
            ASSERT_EQ(streams.back()->read_head().status, 200);
        };
        open_stream();
        EXPECT_EQ(metric_sample(gw.server().scrape(), waits), 1) << "the first stream connects: nothing was used before";
        if (ratio > 1) {
            // One stream leased: 2 wanted, so one more is opened in the background.
            ASSERT_TRUE(counter_reaches(gw.server(), opened, 1));
            open_stream(); // takes the spare; 4 wanted now
            ASSERT_TRUE(counter_reaches(gw.server(), opened, 3));
            open_stream();
            open_stream();
            EXPECT_EQ(metric_sample(gw.server().scrape(), waits), 1) << "streams 2-4 found a connection ready";
            EXPECT_EQ(metric_sample(gw.server().scrape(), failed), 0);
        } else {
            for (int i = 0; i < 3; ++i) open_stream();
            EXPECT_EQ(metric_sample(gw.server().scrape(), waits), 4) << "without preconnect each new stream waits for its connection";
            EXPECT_EQ(metric_sample(gw.server().scrape(), opened), 0);
        }
        for (auto& c : streams) EXPECT_NE(c->read_until("\n\n").find("data: {"), std::string::npos) << "each stream relays events";
    }
}

// A request held back by max_connecting (every slot busy with a connection set-up) is
// counted, so that an operator sees when new connections are asked for faster than
// max_connecting per set-up time allows; it still gets a connection of its own.
TEST(GatewayUpstream, RequestsHeldBackByMaxConnectingAreCounted)
{
    const std::string held = R"(dify_gateway_upstream_connecting_limit_waits_total{upstream="dify"})";
    running_emulator emu(deterministic(300ms), true, emulator::builtin_apps(), 0, 100ms);
    running_gateway gw(emu, [](config::gateway_config& c) {
        c.server.threads = 1;
        c.upstreams["dify"].max_connecting = 1;
    });
    EXPECT_EQ(metric_sample(gw.server().scrape(), held), 0);
    auto first = gw.client(), second = gw.client();
    for (auto* c : {first.get(), second.get()})
        c->send("POST", "/v1/chat-messages", bearer(tenant_keys::alpha),
                json::serialize(chat_body("Explain entanglement in simple words please", "u", "streaming")));
    EXPECT_EQ(first->read_head().status, 200);
    EXPECT_EQ(second->read_head().status, 200);
    EXPECT_EQ(metric_sample(gw.server().scrape(), held), 1) << "the second waited for the first one's set-up (100 ms)";
    EXPECT_EQ(gw.server().upstream_connects(), 2u) << "then opened a connection of its own";
}

TEST(GatewayUpstream, ADeadPooledConnectionIsReplaced)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) { c.server.threads = 1; });
    auto c = gw.client();
    ASSERT_EQ(get(*c, "/v1/info", tenant_keys::alpha).status, 200); // one pooled connection now
    auto ctl = emu.client();
    ctl->request("POST", "/_emulator/faults", {}, R"({"fault": "close", "count": 1, "path": "/v1/info"})");
    auto r = get(*c, "/v1/info", tenant_keys::alpha);
    EXPECT_EQ(r.status, 200) << "retried once on a fresh connection";
    EXPECT_EQ(gw.server().upstream_connects(), 2u);
    EXPECT_EQ(emu.stats().at("requests_by_path").at("/v1/info"), 3);
}

TEST(GatewayServer, DrainLetsStreamsFinishAndStopsAccepting)
{
    running_emulator emu(deterministic(20ms));
    running_gateway gw(emu);
    auto c = gw.client();
    c->send("POST", "/v1/chat-messages", bearer(tenant_keys::alpha), json::serialize(chat_body("finish me please even while draining", "u", "streaming")));
    ASSERT_EQ(c->read_head().status, 200);
    auto first = c->read_until("\n\n");
    std::thread drainer([&] { gw.drain_and_wait(); });
    auto rest = c->read_rest();
    EXPECT_EQ(sse_events(first + rest).back().at("event"), "message_end") << "the in-flight stream completed";
    drainer.join();
    auto late = gw.client();
    EXPECT_ANY_THROW(late->request("GET", "/v1/info", bearer(tenant_keys::alpha, ""))) << "no longer accepting";
}

TEST(GatewayServer, DrainWithFiftyOpenStreams)
{
    emulator::service_options o;
    o.token_delay = 20ms;
    running_emulator emu(o);
    running_gateway gw(emu, [](config::gateway_config& c) { c.upstreams["dify"].max_connections = 64; });
    std::vector<std::unique_ptr<http_client>> streams;
    for (int i = 0; i < 50; ++i) {
        auto c = gw.client();
        c->send("POST", "/v1/chat-messages", bearer(tenant_keys::alpha),
                json::serialize(chat_body("stream number " + std::to_string(i) + " with a few words", "u", "streaming")));
        ASSERT_EQ(c->read_head().status, 200);
        streams.push_back(std::move(c));
    }
    std::thread drainer([&] { gw.drain_and_wait(); });
    int complete = 0;
    for (auto& s : streams)
        if (sse_events(s->read_rest()).back().at("event") == "message_end") ++complete;
    drainer.join();
    EXPECT_EQ(complete, 50) << "every stream ended with Dify's terminal event";
}

// Polls /readyz (a probe is cheap) until the gateway says it is draining.
bool wait_until_draining(running_gateway& gw)
{
    for (int i = 0; i < 200; ++i) {
        http_client probe(gw.server().admin_endpoint(), false);
        if (probe.request("GET", "/readyz").status == 503) return true;
    }
    return false;
}

TEST(GatewayServer, ADrainServesRequestsOnOpenConnectionsThenClosesThemOnceIdle)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) { c.server.drain_idle_grace_ms = std::chrono::milliseconds(1500); });
    auto busy = gw.client();
    auto quiet = gw.client();
    ASSERT_EQ(get(*busy, "/v1/info", tenant_keys::alpha).status, 200);
    ASSERT_EQ(get(*quiet, "/v1/info", tenant_keys::alpha).status, 200);
    std::thread drainer([&] { gw.drain_and_wait(); });
    EXPECT_TRUE(wait_until_draining(gw));
    // A request a proxy sent on its pooled connection as the drain began is served (closing
    // that idle connection at once would reset it: nginx does not resend a POST) and told
    // that the connection ends after it.
    auto r = get(*busy, "/v1/info", tenant_keys::alpha);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("connection"), "close");
    // A connection that stays idle is closed by the gateway once idle for the grace.
    EXPECT_ANY_THROW(quiet->read_head()) << "closed without a reply";
    drainer.join();
}

TEST(GatewayServer, StreamsOutlastingTheDrainTimeoutEndWithAnErrorEvent)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) { c.server.drain_timeout_ms = std::chrono::milliseconds(200); });
    auto c = gw.client();
    auto h = bearer(tenant_keys::alpha);
    h.emplace_back("X-Emulator-Fault", "stall_ms=20000; after=1");
    c->send("POST", "/v1/chat-messages", h, json::serialize(chat_body("one two three four", "u", "streaming")));
    ASSERT_EQ(c->read_head().status, 200);
    auto first = c->read_until("\n\n");
    http_client admin(gw.server().admin_endpoint(), false);
    EXPECT_EQ(admin.request("GET", "/readyz").status, 200);
    admin.close();
    std::thread drainer([&] { gw.drain_and_wait(); });
    EXPECT_TRUE(wait_until_draining(gw)) << "/readyz turns 503 while draining";
    auto body = first + c->read_rest(); // a well-terminated chunked body
    drainer.join();
    auto events = sse_events(body);
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events.back(), json::parse(R"({"event":"error","code":"unavailable","status":503,"message":"The gateway is shutting down."})"));
}

} // namespace
} // namespace gw::test
