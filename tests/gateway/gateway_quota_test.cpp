// Per-tenant quotas through the gateway (memory store): token-bucket rate with its
// headers, tenant and app concurrency held by streams until they end however they end,
// and the daily token budget charged from Dify's reported usage.
#include "tests/emulator/emulator_test_util.hpp"
#include "tests/support/gateway_fixture.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace gw::test {
namespace {

using namespace std::chrono_literals;

// Retries `request` until it returns `status` (bounded: 10 s); for releases that happen
// when the gateway notices a client or upstream is gone.
bool eventually_status(const std::function<int()>& request, int status)
{
    for (int i = 0; i < 1000; ++i) {
        if (request() == status) return true;
        std::this_thread::sleep_for(10ms);
    }
    return false;
}

TEST(GatewayQuota, BurstThenTooManyRequestsWithHeaders)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) { c.tenants["alpha"].rate = config::rate_config{0.5, 5}; });
    auto c = gw.client();
    for (int i = 0; i < 5; ++i) {
        auto r = get(*c, "/v1/parameters", tenant_keys::alpha);
        ASSERT_EQ(r.status, 200) << i;
        EXPECT_EQ(r.header("x-ratelimit-limit"), "5");
        EXPECT_EQ(r.header("x-ratelimit-remaining"), std::to_string(4 - i));
        EXPECT_FALSE(r.header("x-ratelimit-reset").empty());
    }
    auto r = get(*c, "/v1/parameters", tenant_keys::alpha);
    EXPECT_EQ(r.status, 429);
    EXPECT_EQ(r.json().at("code"), "too_many_requests");
    EXPECT_EQ(r.json().at("status"), 429);
    EXPECT_EQ(r.header("retry-after"), "2") << "one token at 0.5/s";
    EXPECT_EQ(r.header("x-ratelimit-remaining"), "0");
    EXPECT_EQ(r.header("x-ratelimit-limit"), "5");
    EXPECT_EQ(emu.stats().at("requests_total"), 5) << "refused requests never reach Dify";
    // A refused request with a small body leaves the connection usable (no reconnect storm).
    auto refused_post = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("refused", "u"));
    EXPECT_EQ(refused_post.status, 429);
    EXPECT_EQ(refused_post.header("connection"), "");
    EXPECT_TRUE(c->connected());
    EXPECT_EQ(post_json(*c, "/v1/chat-messages", "bad-key-0123456789", chat_body("x", "u")).status, 401);
    EXPECT_TRUE(c->connected());
    auto other = get(*c, "/v1/parameters", tenant_keys::beta);
    EXPECT_EQ(other.status, 200) << "another tenant is unaffected";
    EXPECT_EQ(other.header("x-ratelimit-limit"), "") << "no rate: no headers";
}

TEST(GatewayQuota, AdmittedRateMatchesTheConfiguredRate)
{
    // Four clients on every worker at once, with a slow refill (one request per 100 s):
    // the burst passes exactly, then what refilled while the gateway's clocks were moved
    // on, then a full bucket's worth and no more. (The token bucket's rules are
    // unit-tested with simulated time; here the wiring: config, workers, clocks.)
    running_emulator emu;
    movable_clocks time;
    auto cfg = gateway_config_for(emu);
    cfg.tenants["alpha"].rate = config::rate_config{0.01, 20};
    running_gateway gw(cfg, "", time.clocks());
    auto burst = [&] {
        std::atomic<int> admitted{0};
        std::vector<std::thread> clients;
        for (int t = 0; t < 4; ++t)
            clients.emplace_back([&] {
                auto c = gw.client();
                for (int i = 0; i < 10; ++i)
                    if (get(*c, "/v1/parameters", tenant_keys::alpha).status == 200) ++admitted;
            });
        for (auto& t : clients) t.join();
        return admitted.load();
    };
    EXPECT_EQ(burst(), 20) << "the burst";
    time.move_on(std::chrono::seconds(500));
    EXPECT_EQ(burst(), 5) << "500 s at 0.01 per second";
    time.move_on(std::chrono::hours(1));
    EXPECT_EQ(burst(), 20) << "a full bucket is the burst, never more";
}

TEST(GatewayQuota, ConcurrencySlotsAreHeldByStreamsUntilTheyEndAnyWay)
{
    emulator::service_options slow;
    slow.token_delay = 40ms;
    running_emulator emu(slow);
    running_gateway gw(emu, [](config::gateway_config& c) { c.tenants["alpha"].max_concurrent = 3; });
    auto open_stream = [&](const std::string& fault = "") {
        auto c = gw.client();
        auto h = bearer(tenant_keys::alpha);
        if (!fault.empty()) h.emplace_back("X-Emulator-Fault", fault);
        c->send("POST", "/v1/chat-messages", h, json::serialize(chat_body("a b c d e f g h i j k l", "u", "streaming")));
        EXPECT_EQ(c->read_head().status, 200);
        return c;
    };
    auto probe = [&] {
        auto c = gw.client();
        return get(*c, "/v1/parameters", tenant_keys::alpha).status;
    };
    {
        auto a = open_stream(), b = open_stream(), d = open_stream();
        auto r = gw.client();
        auto refused = get(*r, "/v1/parameters", tenant_keys::alpha);
        EXPECT_EQ(refused.status, 429);
        EXPECT_EQ(refused.json().at("message"), "Too many concurrent requests (at most 3).");
        EXPECT_EQ(refused.header("retry-after"), "1");
        EXPECT_EQ(get(*r, "/v1/parameters", tenant_keys::beta).status, 200) << "beta has its own limit";
        a->read_rest(); // ends normally; its slot returns once the gateway has finished the request
        EXPECT_TRUE(eventually_status(probe, 200));
        b->close();     // client gone mid-stream
        d->close();
    }
    // Slots come back once the gateway notices; then 3 streams fit again, and broken ones release too.
    EXPECT_TRUE(eventually_status(probe, 200));
    {
        auto x = open_stream("reset_after=1"), y = open_stream("stall_ms=100000; after=1"), z = open_stream();
        x->read_rest(); // upstream broke: error event
        z->read_rest();
        EXPECT_TRUE(eventually_status(probe, 200));
        y->close();
    }
    std::vector<std::unique_ptr<http_client>> again;
    for (int i = 0; i < 3; ++i) {
        bool ok = eventually_status(probe, 200);
        ASSERT_TRUE(ok) << "slot " << i << " leaked";
        again.push_back(open_stream());
    }
    EXPECT_EQ(probe(), 429);
    for (auto& s : again) s->read_rest();
    EXPECT_TRUE(eventually_status(probe, 200));
}

TEST(GatewayQuota, AppConcurrencyIsSharedByTenants)
{
    emulator::service_options slow;
    slow.token_delay = 30ms;
    running_emulator emu(slow);
    running_gateway gw(emu, [](config::gateway_config& c) { c.apps["chat"].max_concurrent = 2; });
    auto stream = [&](const std::string& key) {
        auto c = gw.client();
        c->send("POST", "/v1/chat-messages", bearer(key), json::serialize(chat_body("a b c d e f", "u", "streaming")));
        EXPECT_EQ(c->read_head().status, 200);
        return c;
    };
    auto a = stream(tenant_keys::alpha), b = stream(tenant_keys::beta);
    auto c = gw.client();
    auto r = post_json(*c, "/v1/chat-messages", tenant_keys::beta, chat_body("third", "u"));
    EXPECT_EQ(r.status, 429);
    EXPECT_EQ(r.json().at("message"), "Too many concurrent requests for this app.");
    EXPECT_EQ(get(*c, "/apps/workflow/v1/info", tenant_keys::beta).status, 200) << "other apps are free";
    a->read_rest();
    b->read_rest();
    EXPECT_TRUE(eventually_status([&] { return post_json(*c, "/v1/chat-messages", tenant_keys::beta, chat_body("now", "u")).status; }, 200));
}

TEST(GatewayQuota, DailyTokensAreChargedFromRealUsage)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) { c.tenants["alpha"].tokens_per_day = 120; });
    auto c = gw.client();
    std::int64_t used = 0;
    int admitted = 0;
    for (int i = 0; i < 50; ++i) {
        bool stream = i % 2 == 1;
        auto r = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("count my tokens", "u", stream ? "streaming" : "blocking"));
        if (r.status == 429) {
            EXPECT_EQ(r.json().at("code"), "quota_exceeded");
            auto retry = std::stoll(r.header("retry-after"));
            EXPECT_GT(retry, 0);
            EXPECT_LE(retry, 86400) << "until the next UTC midnight";
            break;
        }
        ASSERT_EQ(r.status, 200) << r.body;
        ++admitted;
        auto usage = stream ? sse_events(r.body).back().at("metadata").at("usage").at("total_tokens").as_int64()
                            : r.json().at("metadata").at("usage").at("total_tokens").as_int64();
        used += usage;
    }
    EXPECT_GE(used, 120) << "admitted until the budget was spent";
    EXPECT_LT(used - 120, 40) << "at most the last request's usage over";
    EXPECT_GT(admitted, 2);
    // Non-generating calls and other tenants are unaffected.
    EXPECT_EQ(get(*c, "/v1/conversations?user=u", tenant_keys::alpha).status, 200);
    EXPECT_EQ(post_json(*c, "/v1/chat-messages", tenant_keys::beta, chat_body("hi", "u")).status, 200);
}

TEST(GatewayQuota, RefusedOrFailedGenerationsCostNothing)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) { c.tenants["alpha"].tokens_per_day = 50; });
    auto c = gw.client();
    // Dify errors (400) and gateway errors before Dify use no tokens.
    for (int i = 0; i < 20; ++i)
        EXPECT_EQ(post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("", "u")).status, 400);
    EXPECT_EQ(post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("still within budget", "u")).status, 200);
}

TEST(GatewayQuota, AdminUsageReportsRequestsRefusalsAndTokens)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) {
        c.tenants["alpha"].rate = config::rate_config{0.1, 3};
        c.tenants["alpha"].tokens_per_day = 100000;
    });
    auto c = gw.client();
    std::int64_t tokens = 0;
    for (int i = 0; i < 4; ++i) {
        auto r = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("usage please", "u"));
        if (r.status == 200) tokens += r.json().at("metadata").at("usage").at("total_tokens").as_int64();
    }
    http_client admin(gw.server().admin_endpoint(), false);
    auto report = admin.request("GET", "/admin/usage").json();
    const auto& alpha = report.at("tenants").at("alpha");
    EXPECT_EQ(alpha.at("tokens_today"), tokens);
    EXPECT_EQ(alpha.at("tokens_per_day"), 100000);
    EXPECT_EQ(alpha.at("tokens_remaining"), 100000 - tokens);
    const auto& chat = alpha.at("apps").at("chat");
    EXPECT_EQ(chat.at("requests"), 4);
    EXPECT_EQ(chat.at("refused").at("rate"), 1);
    EXPECT_EQ(chat.at("tokens_today"), tokens);
    EXPECT_TRUE(report.at("tenants").at("beta").at("tokens_remaining").is_null()) << "no daily limit";
    EXPECT_EQ(report.at("quota_store").at("type"), "memory");
    EXPECT_EQ(admin.request("GET", "/healthz").status, 200);
    EXPECT_EQ(admin.request("GET", "/readyz").status, 200);
    EXPECT_EQ(admin.request("GET", "/nope").status, 404);
    EXPECT_EQ(get(*c, "/admin/usage", tenant_keys::alpha).status, 404) << "not on the tenant listener";
}

} // namespace
} // namespace gw::test
