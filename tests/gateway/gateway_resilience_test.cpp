// Retries, the retry budget and the circuit breaker against the emulator's faults.
#include "tests/emulator/emulator_test_util.hpp"
#include "tests/support/gateway_fixture.hpp"
#include "tests/support/process.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace gw::test {
namespace {

using namespace std::chrono_literals;

void program(running_emulator& emu, const std::string& fault, int count, const std::string& path = "/v1/chat-messages")
{
    auto c = emu.client();
    auto body = json::serialize(json::object{{"fault", fault}, {"count", count}, {"path", path}});
    ASSERT_EQ(c->request("POST", "/_emulator/faults", {{"Content-Type", "application/json"}}, body).status, 200);
}

json::array seen_on(running_emulator& emu, const std::string& path)
{
    json::array out;
    auto stats = emu.stats();
    for (const auto& r : stats.at("recent_requests").as_array())
        if (r.at("path") == json::value(path)) out.push_back(r);
    return out;
}

TEST(GatewayRetry, TransientFailuresBecomeOneSuccess)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) {
        c.upstreams["dify"].retry = {3, std::chrono::milliseconds(50), std::chrono::milliseconds(200), 100};
    });
    program(emu, "status=503", 2);
    auto c = gw.client();
    auto r = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("hello", "u"));
    EXPECT_EQ(r.status, 200) << r.body;
    auto attempts = seen_on(emu, "/v1/chat-messages");
    ASSERT_EQ(attempts.size(), 3u);
    EXPECT_EQ(attempts[0].at("status"), 503);
    EXPECT_EQ(attempts[1].at("status"), 503);
    EXPECT_EQ(attempts[2].at("status"), 200);
    // How long each wait is (full jitter under a doubling cap) is the attempt machine's,
    // unit-tested with simulated time (UpstreamAttempts.*).
    EXPECT_EQ(attempts[2].at("headers").at("x-request-id"), attempts[0].at("headers").at("x-request-id"))
        << "the same request, attempted again";
}

TEST(GatewayRetry, RetryAfterIsHonoured)
{
    running_emulator emu;
    running_gateway gw(emu);
    program(emu, "status=429; retry_after=1", 1);
    auto c = gw.client();
    EXPECT_EQ(post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("wait for it", "u")).status, 200);
    auto attempts = seen_on(emu, "/v1/chat-messages");
    ASSERT_EQ(attempts.size(), 2u);
    // Dify's Retry-After header reaches the attempt machine: never sooner (a lower bound
    // only; its rules are unit-tested).
    EXPECT_GE(attempts[1].at("at_ms").as_int64() - attempts[0].at("at_ms").as_int64(), 1000);
}

TEST(GatewayRetry, A429MovesToTheNextKey)
{
    auto apps = emulator::parse_apps(R"([
      {"key": "app-rotatekey000000000000001", "mode": "chat", "name": "Keys"},
      {"key": "app-rotatekey000000000000002", "mode": "chat", "name": "Keys"}
    ])");
    running_emulator emu({}, true, apps);
    running_gateway gw(emu, [](config::gateway_config& c) {
        c.server.threads = 1;
        c.apps["chat"].api_keys = {"app-rotatekey000000000000001", "app-rotatekey000000000000002"};
    });
    program(emu, "status=429; retry_after=30", 1);
    auto c = gw.client();
    EXPECT_EQ(post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("hi", "u")).status, 200);
    auto attempts = seen_on(emu, "/v1/chat-messages");
    ASSERT_EQ(attempts.size(), 2u);
    EXPECT_NE(attempts[0].at("app_key"), attempts[1].at("app_key"));
    EXPECT_LT(attempts[1].at("at_ms").as_int64() - attempts[0].at("at_ms").as_int64(), 30'000)
        << "another key first, without waiting out this key's Retry-After";
}

TEST(GatewayRetry, WhatIsNeverRetried)
{
    running_emulator emu;
    running_gateway gw(emu);
    auto c = gw.client();
    program(emu, "status=500", 1);
    auto r = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("generate", "u"));
    EXPECT_EQ(r.status, 500) << "a generation may have run: never replayed";
    EXPECT_EQ(r.json().at("code"), "unknown") << "Dify's own body";
    EXPECT_EQ(seen_on(emu, "/v1/chat-messages").size(), 1u);

    program(emu, "status=500", 1, "/v1/parameters");
    EXPECT_EQ(get(*c, "/v1/parameters", tenant_keys::alpha).status, 200) << "a GET, retried once";
    EXPECT_EQ(seen_on(emu, "/v1/parameters").size(), 2u);

    auto h = bearer(tenant_keys::alpha);
    h.emplace_back("X-Emulator-Fault", "reset_after=2");
    auto s = c->request("POST", "/v1/chat-messages", h, json::serialize(chat_body("one two three four five six", "u", "streaming")));
    auto events = sse_events(s.body);
    ASSERT_EQ(events.size(), 3u);
    EXPECT_EQ(events.back().at("code"), "upstream_stream_broken");
    EXPECT_EQ(seen_on(emu, "/v1/chat-messages").size(), 2u) << "a stream is never replayed once its head was sent";

    auto bad = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("", "u"));
    EXPECT_EQ(bad.status, 400);
    EXPECT_EQ(seen_on(emu, "/v1/chat-messages").size(), 3u) << "other 4xx are final";
}

TEST(GatewayRetry, DifysConcurrencyLimit400IsRetried)
{
    running_emulator emu;
    running_gateway gw(emu);
    program(emu, "concurrency", 1);
    auto c = gw.client();
    EXPECT_EQ(post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("busy?", "u")).status, 200);
    EXPECT_EQ(seen_on(emu, "/v1/chat-messages").size(), 2u);
}

TEST(GatewayRetry, AConnectionClosedBeforeAnyResponseIsRetriedTransparently)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) { c.server.threads = 1; });
    auto c = gw.client();
    ASSERT_EQ(get(*c, "/v1/info", tenant_keys::alpha).status, 200); // pool a connection
    program(emu, "close", 1, "/v1/chat-messages");
    EXPECT_EQ(post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("again", "u")).status, 200);
    EXPECT_EQ(seen_on(emu, "/v1/chat-messages").size(), 2u);
}

TEST(GatewayRetry, TheBudgetCapsRetriesUnderSustainedFailure)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) {
        c.server.threads = 1;
        c.upstreams["dify"].retry = {3, std::chrono::milliseconds(1), std::chrono::milliseconds(2), 20};
        c.upstreams["dify"].circuit_breaker.failures = 1000; // keep the breaker out of this count
    });
    program(emu, "status=503", 1000, "/v1/parameters");
    auto c = gw.client();
    for (int i = 0; i < 50; ++i) EXPECT_EQ(get(*c, "/v1/parameters", tenant_keys::alpha).status, 503);
    auto attempts = seen_on(emu, "/v1/parameters").size();
    EXPECT_LE(attempts, 50u + 10u) << "20 % of 50 requests";
    EXPECT_GE(attempts, 50u + 3u);
}

TEST(GatewayBreaker, OpensOnADeadUpstreamAndClosesAfterRecovery)
{
    auto port = free_port();
    emulator::service_options none;
    auto cfg = gateway_config_for(running_emulator{none}); // a template; the upstream is replaced below
    cfg.upstreams["dify"].url = "https://localhost:" + std::to_string(port);
    cfg.upstreams["dify"].circuit_breaker = {3, std::chrono::minutes(1)};
    cfg.upstreams["dify"].retry = {2, std::chrono::milliseconds(1), std::chrono::milliseconds(2), 100};
    cfg.server.threads = 1;
    movable_clocks time;
    running_gateway gw(cfg, "", time.clocks());
    auto c = gw.client();
    EXPECT_EQ(get(*c, "/v1/info", tenant_keys::alpha).status, 502); // 2 failed connects
    auto second = get(*c, "/v1/info", tenant_keys::alpha).status;  // the 3rd failure opens the circuit
    EXPECT_TRUE(second == 502 || second == 503) << second;
    auto attempts_when_open = gw.server().upstream_connect_attempts();
    for (int i = 0; i < 20; ++i) {
        auto r = get(*c, "/v1/info", tenant_keys::alpha);
        EXPECT_EQ(r.status, 503);
        EXPECT_EQ(r.json().at("code"), "unavailable");
    }
    EXPECT_EQ(gw.server().upstream_connect_attempts(), attempts_when_open) << "no connects while open";

    // Dify comes back on that port: still refused until open_ms has passed, then the first
    // request is the probe that gets through and closes the circuit.
    running_emulator back({}, true, emulator::builtin_apps(), port);
    EXPECT_EQ(get(*c, "/v1/info", tenant_keys::alpha).status, 503) << "open for a minute";
    time.move_on(std::chrono::minutes(1));
    EXPECT_EQ(get(*c, "/v1/info", tenant_keys::alpha).status, 200) << "the probe";
    EXPECT_EQ(gw.server().upstream_connect_attempts(), attempts_when_open + 1);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(get(*c, "/v1/info", tenant_keys::alpha).status, 200);
}

} // namespace
} // namespace gw::test
