// The Redis quota store with a real redis-server on loopback: limits shared by several
// gateways (in-process and as separate dify-gateway processes), the script-cache
// fallback, and on_error = allow / deny / local when Redis dies, then recovery.
#include "core/text.hpp"
#include "gateway/ops/spawn.hpp"
#include "gateway/quota/redis_link.hpp"
#include "gateway/quota/redis_scripts.hpp"
#include "tests/emulator/emulator_test_util.hpp"
#include "tests/support/gateway_fixture.hpp"
#include "tests/support/process.hpp"

#include <boost/asio/co_spawn.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace gw::test {
namespace {

using namespace std::chrono_literals;

std::function<void(config::gateway_config&)> with_redis(const running_redis& redis, std::function<void(config::gateway_config&)> more = {})
{
    return [url = redis.url(), more](config::gateway_config& c) {
        c.quota_store.type = gw::config::store_kind::redis;
        c.quota_store.url = url;
        c.quota_store.timeout_ms = std::chrono::milliseconds(200);
        if (more) more(c);
    };
}

int status_of(running_gateway& gw, const std::string& path = "/v1/parameters")
{
    auto c = gw.client();
    return get(*c, path, tenant_keys::alpha).status;
}

// Redis's clock (TIME: seconds, then microseconds, one per line) in microseconds.
long long redis_time_micros(const running_redis& redis)
{
    const auto reply = redis.cli("TIME");
    auto parts = core::split(core::trim(reply), '\n');
    if (parts.size() != 2) throw std::runtime_error("unexpected TIME reply: " + reply);
    return std::stoll(std::string(core::trim(parts[0]))) * 1'000'000 + std::stoll(std::string(core::trim(parts[1])));
}

TEST(GatewayRedis, TwoGatewaysShareOneRate)
{
    running_redis redis;
    running_emulator emu;
    // A burst of 10 and almost no refill: 40 requests through two gateways at once pass
    // 10 times in all. (Refill over time is Redis' own clock in the script; the bucket's
    // rules are unit-tested.)
    auto cfg = with_redis(redis, [](config::gateway_config& c) {
        c.tenants["alpha"].rate = config::rate_config{0.001, 10};
        c.quota_store.timeout_ms = std::chrono::seconds(5); // a slow machine must not turn into "allow"
        c.quota_store.on_error = gw::config::store_error_policy::deny;
    });
    running_gateway a(emu, cfg), b(emu, cfg);
    for (auto* gw : {&a, &b}) { // connections and scripts loaded before the count starts
        auto c = gw->client();
        ASSERT_EQ(get(*c, "/v1/parameters", tenant_keys::beta).status, 200);
    }
    std::atomic<int> admitted{0}, refused{0};
    std::vector<std::thread> clients;
    for (auto* gw : {&a, &b, &a, &b})
        clients.emplace_back([&, gw] {
            auto c = gw->client();
            for (int i = 0; i < 10; ++i) {
                auto r = get(*c, "/v1/parameters", tenant_keys::alpha);
                if (r.status == 200) ++admitted;
                if (r.status == 429 && r.header("retry-after") != "") ++refused;
            }
        });
    for (auto& t : clients) t.join();
    EXPECT_EQ(admitted.load(), 10) << "one shared bucket, not one per gateway";
    EXPECT_EQ(refused.load(), 30);
    for (auto* gw : {&a, &b}) {
        http_client admin(gw->server().admin_endpoint(), false);
        EXPECT_EQ(admin.request("GET", "/admin/usage").json().at("quota_store").at("errors"), 0) << "every admission decided by Redis";
    }
}

TEST(GatewayRedis, TheRateBucketKeepsRedisTimeToTheMicrosecond)
{
    running_redis redis;
    running_emulator emu;
    running_gateway gw(emu, with_redis(redis, [](config::gateway_config& c) { c.tenants["alpha"].rate = config::rate_config{1000, 10}; }));
    ASSERT_EQ(status_of(gw), 200);
    // Redis's clock in microseconds (16 digits): written as Lua's tostring writes a number
    // ("1.7961156335316e+15") the last two digits were lost, and every refill was computed
    // from a time up to 50 us off.
    auto ts = std::string(core::trim(redis.cli("HGET 'dify-gateway:{t:alpha}:rate' ts")));
    ASSERT_EQ(ts.size(), 16u) << ts;
    EXPECT_EQ(ts.find_first_not_of("0123456789"), std::string::npos) << ts;
    const long long seconds = redis_time_micros(redis) / 1000000;
    const long long written = std::stoll(ts) / 1000000;
    EXPECT_LE(written, seconds);
    EXPECT_GE(written, seconds - 60) << "the bucket's time is Redis's clock";
}

TEST(GatewayRedis, AKeysTtlIsSetAgainOnlyWhenLessThanItNeedsIsLeft)
{
    // The scripts set the bucket's and the token hash's TTL again only when the key's
    // ttl_until (when the TTL last set ends, Redis's clock) leaves less than the key needs,
    // less a margin: not on every request, but before the key could expire holding state,
    // and at once when a configuration with a longer refill takes over from a shorter one.
    running_redis redis;
    running_emulator emu;
    running_gateway gw(emu, with_redis(redis, [](config::gateway_config& c) {
        c.tenants["alpha"].rate = config::rate_config{1000, 1000}; // needs 1 s to refill, plus a minute
        c.tenants["alpha"].tokens_per_day = 1'000'000;             // needs two days
    }));
    const std::string bucket = "'dify-gateway:{t:alpha}:rate'", usage = "'dify-gateway:{t:alpha}:tokens'";
    auto ttl_ms = [&](const std::string& key) { return std::stoll(std::string(core::trim(redis.cli("PTTL " + key)))); };
    auto chat = [&] {
        auto c = gw.client();
        EXPECT_EQ(post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("hello", "u")).status, 200);
    };
    chat();
    EXPECT_GT(ttl_ms(bucket), 60'000);
    EXPECT_LE(ttl_ms(bucket), 61'000);
    EXPECT_GT(ttl_ms(usage), 172'000'000);
    redis.cli("PERSIST " + bucket);
    redis.cli("PERSIST " + usage);
    chat();
    EXPECT_EQ(ttl_ms(bucket), -1) << "set moments ago: left alone";
    EXPECT_EQ(ttl_ms(usage), -1) << "set moments ago: left alone";
    const long long now = redis_time_micros(redis);
    redis.cli("HSET " + bucket + " ttl_until " + std::to_string(now + 20'000'000));   // 20 s left of 61
    redis.cli("HSET " + usage + " ttl_until " + std::to_string(now + 3'600'000'000LL)); // an hour left of 48
    chat();
    EXPECT_GT(ttl_ms(bucket), 60'000) << "set again in full";
    EXPECT_GT(ttl_ms(usage), 172'000'000) << "set again in full";
    const long long until = std::stoll(std::string(core::trim(redis.cli("HGET " + bucket + " ttl_until"))));
    EXPECT_GE(until, now + 61'000'000);
    EXPECT_LE(until, redis_time_micros(redis) + 61'000'000);
}

TEST(GatewayRedis, ARateNearZeroStillAdmitsItsBurst)
{
    // One request per 11.6 days, a burst of 10^8: "until the bucket is full" is 10^17 ms,
    // which PEXPIRE refused as "1e+17" (the script failed on every admission, after its
    // HSET had taken a token). The key's lifetime is capped.
    running_redis redis;
    running_emulator emu;
    running_gateway gw(emu, with_redis(redis, [](config::gateway_config& c) {
        c.tenants["alpha"].rate = config::rate_config{1e-6, 1e8};
        c.quota_store.on_error = gw::config::store_error_policy::deny;
    }));
    EXPECT_EQ(status_of(gw), 200);
    EXPECT_EQ(status_of(gw), 200);
    http_client admin(gw.server().admin_endpoint(), false);
    EXPECT_EQ(admin.request("GET", "/admin/usage").json().at("quota_store").at("errors"), 0);
    EXPECT_GT(std::stoll(std::string(core::trim(redis.cli("PTTL 'dify-gateway:{t:alpha}:rate'")))), 0);
}

TEST(GatewayRedis, ABucketTimeAheadOfRedisClockSweepsNoLiveLease)
{
    // After a failover to a node whose clock is behind, the bucket's stored time is ahead
    // of Redis's clock. Leases are still scored and swept by Redis's clock: another
    // replica's live lease keeps counting.
    running_redis redis;
    running_emulator emu;
    running_gateway gw(emu, with_redis(redis, [](config::gateway_config& c) {
        c.tenants["alpha"].rate = config::rate_config{1000, 1000};
        c.tenants["alpha"].max_concurrent = 1;
    }));
    const long long micros = redis_time_micros(redis);
    redis.cli("HSET 'dify-gateway:{t:alpha}:rate' tokens 1000 ts " + std::to_string(micros + 3'600'000'000LL)); // an hour ahead
    redis.cli("ZADD 'dify-gateway:{t:alpha}:active' " + std::to_string(micros + 30'000'000) + " other-replica-lease"); // live for 30 s
    EXPECT_EQ(status_of(gw), 429) << "the other replica's request holds the tenant's one slot";
    EXPECT_EQ(core::trim(redis.cli("ZSCORE 'dify-gateway:{t:alpha}:active' other-replica-lease")), std::to_string(micros + 30'000'000));
}

TEST(GatewayRedis, ConcurrencyAndTokensAreSharedAndReleased)
{
    running_redis redis;
    emulator::service_options slow;
    slow.token_delay = 30ms;
    running_emulator emu(slow);
    auto cfg = with_redis(redis, [](config::gateway_config& c) {
        c.tenants["alpha"].max_concurrent = 2;
        c.apps["workflow"].max_concurrent = 1;
    });
    running_gateway a(emu, cfg), b(emu, cfg);
    auto stream = [&](running_gateway& gw) {
        auto c = gw.client();
        c->send("POST", "/v1/chat-messages", bearer(tenant_keys::alpha), json::serialize(chat_body("a b c d e f", "u", "streaming")));
        EXPECT_EQ(c->read_head().status, 200);
        return c;
    };
    {
        auto s1 = stream(a), s2 = stream(b);
        auto refused = b.client();
        auto r = get(*refused, "/v1/parameters", tenant_keys::alpha);
        EXPECT_EQ(r.status, 429);
        EXPECT_EQ(r.json().at("message"), "Too many concurrent requests (at most 2).");
        s1->read_rest();
        s2->close(); // one ends, one leaves: both leases go back
    }
    bool released = false;
    for (int i = 0; i < 500 && !released; ++i) {
        released = status_of(a) == 200 && status_of(b) == 200;
        if (!released) std::this_thread::sleep_for(10ms);
    }
    EXPECT_TRUE(released);
    // App concurrency across gateways and tenants.
    auto w1 = a.client();
    w1->send("POST", "/apps/workflow/v1/workflows/run", bearer(tenant_keys::alpha),
             R"({"inputs": {"x": "a b c d e f g h"}, "response_mode": "streaming", "user": "u"})");
    ASSERT_EQ(w1->read_head().status, 200);
    auto other = b.client();
    EXPECT_EQ(post_json(*other, "/apps/workflow/v1/workflows/run", tenant_keys::beta,
                        json::object{{"inputs", json::object()}, {"response_mode", "blocking"}, {"user", "u"}}).status, 429);
    w1->read_rest();
}

TEST(GatewayRedis, DailyTokensAcrossGatewaysAndTheScriptCacheFallback)
{
    running_redis redis;
    running_emulator emu;
    auto cfg = with_redis(redis, [](config::gateway_config& c) { c.tenants["alpha"].tokens_per_day = 100; });
    running_gateway a(emu, cfg), b(emu, cfg);
    std::int64_t used = 0;
    bool exceeded = false;
    for (int i = 0; i < 40 && !exceeded; ++i) {
        if (i == 3) { EXPECT_NE(redis.cli("SCRIPT FLUSH").find("OK"), std::string::npos); } // NOSCRIPT → EVAL
        auto& gw = i % 2 ? a : b;
        auto c = gw.client();
        auto r = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("tokens", "u"));
        if (r.status == 429) {
            EXPECT_EQ(r.json().at("code"), "quota_exceeded");
            exceeded = true;
        } else {
            ASSERT_EQ(r.status, 200) << r.body;
            used += r.json().at("metadata").at("usage").at("total_tokens").as_int64();
            // The settlement is asynchronous: wait until Redis has it before the next call.
            const auto field = "HGET 'dify-gateway:{t:alpha}:tokens' used:" + std::to_string(std::time(nullptr) / 86'400);
            for (int k = 0; k < 200; ++k) {
                if (core::trim(redis.cli(field)) == std::to_string(used)) break;
                std::this_thread::sleep_for(5ms);
            }
        }
    }
    EXPECT_TRUE(exceeded);
    EXPECT_GE(used, 100);
    EXPECT_LT(used, 130);
    http_client admin(a.server().admin_endpoint(), false);
    auto report = admin.request("GET", "/admin/usage").json();
    EXPECT_EQ(report.at("tenants").at("alpha").at("tokens_today"), used) << "read from Redis: both gateways' usage";
    EXPECT_EQ(report.at("quota_store").at("type"), "redis");
}

TEST(GatewayRedis, OnErrorPoliciesWhenRedisDiesAndRecovery)
{
    running_redis redis;
    running_emulator emu;
    auto rate = [](config::gateway_config& c) { c.tenants["alpha"].rate = config::rate_config{0.001, 3}; };
    auto policy = [&](config::store_error_policy on_error) {
        return with_redis(redis, [&rate, on_error](config::gateway_config& c) {
            rate(c);
            c.server.threads = 1; // one Redis client each: recovery is observable per gateway
            c.quota_store.on_error = on_error;
        });
    };
    using config::store_error_policy;
    running_gateway deny(emu, policy(store_error_policy::deny)), allow(emu, policy(store_error_policy::allow)),
        local(emu, policy(store_error_policy::local));
    EXPECT_EQ(status_of(deny), 200); // 1 of the shared burst of 3
    redis.stop();
    for (int i = 0; i < 5; ++i) {
        auto c = deny.client();
        auto r = get(*c, "/v1/parameters", tenant_keys::alpha);
        EXPECT_EQ(r.status, 503);
        EXPECT_EQ(r.json().at("code"), "unavailable");
        EXPECT_EQ(status_of(allow), 200) << "fail open: no limit";
    }
    int local_ok = 0, local_refused = 0;
    for (int i = 0; i < 5; ++i) (status_of(local) == 200 ? local_ok : local_refused)++;
    EXPECT_EQ(local_ok, 3) << "the local store's own burst";
    EXPECT_EQ(local_refused, 2);
    http_client admin(deny.server().admin_endpoint(), false);
    EXPECT_GE(admin.request("GET", "/admin/usage").json().at("quota_store").at("errors").to_number<std::int64_t>(), 5);

    redis.start(); // empty again (no persistence): a fresh shared bucket of 3
    // Each gateway reconnects by itself (after its backoff); beta's calls go through the
    // store too, so a call that adds no store error shows Redis is in use again.
    auto uses_redis_again = [](running_gateway& gw) {
        http_client admin(gw.server().admin_endpoint(), false);
        auto errors = [&] { return admin.request("GET", "/admin/usage").json().at("quota_store").at("errors").to_number<std::int64_t>(); };
        for (int i = 0; i < 500; ++i) {
            auto before = errors();
            auto c = gw.client();
            get(*c, "/v1/parameters", tenant_keys::beta);
            if (errors() == before) return true;
            std::this_thread::sleep_for(10ms);
        }
        return false;
    };
    for (auto* gw : {&deny, &allow, &local}) ASSERT_TRUE(uses_redis_again(*gw)) << "reconnected without a restart";
    EXPECT_EQ(status_of(deny), 200);
    EXPECT_EQ(status_of(allow), 200);
    EXPECT_EQ(status_of(local), 200);
    EXPECT_EQ(status_of(deny), 429) << "the shared bucket is enforced again";
}

TEST(GatewayRedis, ConnectionsPooledBeforeARestartNeverReachARequest)
{
    running_redis redis;
    running_emulator emu;
    running_gateway gw(emu, with_redis(redis, [](config::gateway_config& c) {
        c.server.threads = 1;
        c.quota_store.on_error = gw::config::store_error_policy::deny;
        c.tenants["alpha"].rate = config::rate_config{1000, 1000}; // every request is decided in Redis
    }));
    for (int i = 0; i < 3; ++i) ASSERT_EQ(status_of(gw), 200); // connections now pooled
    redis.stop();
    redis.start(); // back at once: every pooled connection is closed on Redis' side
    for (int i = 0; i < 5; ++i) EXPECT_EQ(status_of(gw), 200) << "request " << i << " after the restart";
    http_client admin(gw.server().admin_endpoint(), false);
    EXPECT_EQ(admin.request("GET", "/admin/usage").json().at("quota_store").at("errors").to_number<std::int64_t>(), 0)
        << "no store call failed: the dead connections were dropped before use";
}

TEST(GatewayRedis, AnAclUserWithAnyPassword)
{
    running_redis redis;
    running_emulator emu;
    ASSERT_NE(redis.cli("ACL SETUSER gw on '>p@ss:w/rd' '~*' '&*' '+@all'").find("OK"), std::string::npos);
    auto url = "redis://gw:p%40ss%3Aw%2Frd@127.0.0.1:" + std::to_string(redis.port()) + "/0";
    auto as = [&](const std::string& u) {
        return [u](config::gateway_config& c) {
            c.quota_store.type = gw::config::store_kind::redis;
            c.quota_store.url = u;
            c.quota_store.on_error = gw::config::store_error_policy::deny;
            c.tenants["alpha"].rate = config::rate_config{1000, 1000};
        };
    };
    running_gateway good(emu, as(url));
    EXPECT_EQ(status_of(good), 200) << "AUTH gw <password> accepted";
    running_gateway wrong(emu, as("redis://gw:nope@127.0.0.1:" + std::to_string(redis.port()) + "/0"));
    EXPECT_EQ(status_of(wrong), 503) << "a refused AUTH is a store error: on_error decides";
}

TEST(GatewayRedis, OwnershipRecordsAreSharedAcrossGateways)
{
    running_redis redis;
    running_emulator emu;
    running_gateway a(emu, with_redis(redis, [](config::gateway_config& c) { c.quota_store.ownership_ttl_s = std::chrono::seconds(3600); }));
    running_gateway b(emu, with_redis(redis, [](config::gateway_config& c) { c.quota_store.ownership_ttl_s = std::chrono::seconds(3600); }));
    auto ca = a.client();
    auto cb = b.client();
    auto run = post_json(*ca, "/apps/workflow/v1/workflows/run", tenant_keys::alpha,
                         json::object{{"inputs", json::object{{"topic", "tea"}}}, {"response_mode", "blocking"}, {"user", "u"}});
    ASSERT_EQ(run.status, 200) << run.body;
    std::string run_id(run.json().at("workflow_run_id").as_string());
    // The record is written off the request path: wait for it to land in Redis.
    const std::string key = "dify-gateway:{o:workflow_run:" + run_id + "}";
    std::string owner;
    for (int i = 0; i < 500 && owner != "alpha"; ++i) owner = std::string(core::trim(redis.cli("GET " + key)));
    ASSERT_EQ(owner, "alpha");
    auto ttl = std::stoi(redis.cli("TTL " + key));
    EXPECT_GT(ttl, 3500);
    EXPECT_LE(ttl, 3600);

    EXPECT_EQ(get(*cb, "/apps/workflow/v1/workflows/run/" + run_id, tenant_keys::beta).status, 404) << "the other replica knows";
    EXPECT_EQ(get(*cb, "/apps/workflow/v1/workflows/run/" + run_id, tenant_keys::alpha).status, 200);
}

TEST(GatewayRedis, ARecordUnderTheKeyEarlierGatewaysWroteIsStillEnforced)
{
    // Earlier gateways kept every record under one hash tag (dify-gateway:{o}:<kind>:<id>).
    // After an upgrade such a record still refuses another tenant until it expires; a
    // record is read there only when none is under its own key.
    running_redis redis;
    running_emulator emu;
    std::string run_id;
    {
        running_gateway a(emu, with_redis(redis));
        auto c = a.client();
        auto run = post_json(*c, "/apps/workflow/v1/workflows/run", tenant_keys::alpha,
                             json::object{{"inputs", json::object{{"topic", "tea"}}}, {"response_mode", "blocking"}, {"user", "u"}});
        ASSERT_EQ(run.status, 200) << run.body;
        run_id = std::string(run.json().at("workflow_run_id").as_string());
        const std::string key = "'dify-gateway:{o:workflow_run:" + run_id + "}'";
        std::string owner;
        for (int i = 0; i < 500 && owner != "alpha"; ++i) owner = std::string(core::trim(redis.cli("GET " + key)));
        ASSERT_EQ(owner, "alpha");
        redis.cli("DEL " + key);
    }
    const std::string earlier_key = "'dify-gateway:{o}:workflow_run:" + run_id + "'";
    redis.cli("SET " + earlier_key + " alpha EX 3600");
    running_gateway b(emu, with_redis(redis)); // a new process: nothing in its local mirror
    auto c = b.client();
    const auto path = "/apps/workflow/v1/workflows/run/" + run_id;
    EXPECT_EQ(get(*c, path, tenant_keys::beta).status, 404) << "the record an earlier gateway wrote";
    EXPECT_EQ(get(*c, path, tenant_keys::alpha).status, 200);
    redis.cli("DEL " + earlier_key);
    EXPECT_EQ(get(*c, path, tenant_keys::beta).status, 200) << "no record anywhere: Dify decides, as for ids the gateway never saw";
    EXPECT_EQ(std::stoi(redis.cli("EXISTS " + earlier_key)), 0) << "never written again";
}

TEST(GatewayRedis, ABlockingMessageRecordsNoTaskButAWorkflowRunRecordsItsTask)
{
    // A task is recorded only while it may still run: a blocking chat reply comes when its
    // task is over (its conversation and message are recorded), a blocking workflow run
    // can come back paused.
    running_redis redis;
    running_emulator emu;
    running_gateway gw(emu, with_redis(redis));
    auto c = gw.client();
    auto chat = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("hello", "u"));
    ASSERT_EQ(chat.status, 200) << chat.body;
    auto run = post_json(*c, "/apps/workflow/v1/workflows/run", tenant_keys::alpha,
                         json::object{{"inputs", json::object{{"topic", "tea"}}}, {"response_mode", "blocking"}, {"user", "u"}});
    ASSERT_EQ(run.status, 200) << run.body;
    auto owner = [&](const std::string& kind, const json::value& id) {
        return std::string(core::trim(redis.cli("GET 'dify-gateway:{o:" + kind + ":" + std::string(id.as_string()) + "}'")));
    };
    // Records are written off the request path: wait until they are in Redis.
    auto landed = [&] {
        return owner("task", run.json().at("task_id")) == "alpha" &&
               owner("conversation", chat.json().at("conversation_id")) == "alpha" &&
               owner("message", chat.json().at("message_id")) == "alpha";
    };
    for (int i = 0; i < 500 && !landed(); ++i) std::this_thread::sleep_for(5ms);
    ASSERT_TRUE(landed());
    EXPECT_EQ(owner("task", chat.json().at("task_id")), "") << "queued with the chat's other records, had it been";
}

TEST(GatewayRedis, TwoGatewayProcessesShareTheLimits)
{
    running_redis redis;
    running_emulator emu;
    auto cfg = gateway_config_for(emu);
    with_redis(redis)(cfg);
    cfg.log.level = gw::config::log_level::error;
    // Written as the JSON an operator would write.
    std::string path = "/tmp/gw-redis-test-" + std::to_string(::getpid()) + ".json";
    std::ofstream(path) << R"({
      "server": {"listen": "127.0.0.1:0", "threads": 2},
      "admin": {"listen": "127.0.0.1:0"},
      "log": {"level": "error", "format": "text"},
      "upstreams": {"dify": {"url": ")" << cfg.upstreams["dify"].url << R"(", "ca_file": ")" << test_ca_file() << R"("}},
      "apps": {"chat": {"api_keys": [")" << keys::chat << R"("]}},
      "tenants": {"alpha": {"keys": [")" << tenant_keys::alpha << R"("], "apps": ["chat"],
                            "rate": {"requests_per_second": 0.001, "burst": 6}}},
      "quota_store": {"type": "redis", "url": ")" << redis.url() << R"(", "on_error": "deny"}
    })";
    child_process p1({GW_GATEWAY_BIN, "--config", path}, "listening on");
    child_process p2({GW_GATEWAY_BIN, "--config", path}, "listening on");
    auto port_of = [](const std::string& line) {
        return static_cast<std::uint16_t>(std::stoi(line.substr(line.rfind(':') + 1)));
    };
    int ok = 0, refused = 0;
    for (auto* p : {&p1, &p2, &p1, &p2, &p1, &p2, &p1, &p2, &p1, &p2}) {
        http_client c({boost::asio::ip::make_address("127.0.0.1"), port_of(p->ready_line())}, false);
        (get(c, "/v1/parameters", tenant_keys::alpha).status == 200 ? ok : refused)++;
    }
    EXPECT_EQ(ok, 6) << "one burst of 6 for both processes";
    EXPECT_EQ(refused, 4);
    EXPECT_EQ(p1.terminate(), 0) << "SIGTERM drains and exits 0";
    EXPECT_EQ(p2.terminate(), 0);
    std::remove(path.c_str());
}

} // namespace
} // namespace gw::test

namespace gw::test {
namespace {

// Admissions made together go to Redis together (one script per tenant batch): the script
// must decide them one by one as separate calls would, no more and no fewer.
TEST(GatewayRedis, AdmissionsBatchedTogetherAreDecidedOneByOne)
{
    running_redis redis;
    emulator::service_options slow;
    slow.token_delay = 40ms;
    running_emulator emu(slow);
    running_gateway gw(emu, with_redis(redis, [](config::gateway_config& c) {
        c.server.threads = 1; // one worker: every admission meets the others in its batches
        c.tenants["alpha"].rate = config::rate_config{0.001, 7};
        c.tenants["beta"].max_concurrent = 3;
    }));
    auto concurrently = [&](int n, const std::function<int()>& one) {
        std::vector<std::thread> threads;
        std::atomic<int> ok{0}, refused{0};
        for (int i = 0; i < n; ++i)
            threads.emplace_back([&] {
                int status = one();
                if (status == 200) ++ok;
                if (status == 429) ++refused;
                EXPECT_TRUE(status == 200 || status == 429) << status;
            });
        for (auto& t : threads) t.join();
        return std::pair{ok.load(), refused.load()};
    };
    auto [passed, limited] = concurrently(20, [&] { return status_of(gw); });
    EXPECT_EQ(passed, 7) << "a burst of 7 admits exactly 7 of 20 simultaneous requests";
    EXPECT_EQ(limited, 13);
    auto [streams, full] = concurrently(10, [&] {
        auto c = gw.client();
        c->send("POST", "/v1/chat-messages", bearer(tenant_keys::beta), json::serialize(chat_body("a b c d e f g h", "u", "streaming")));
        int status = c->read_head().status;
        if (status == 200) c->read_rest(); // held while the others are decided
        return status;
    });
    EXPECT_EQ(streams, 3) << "max_concurrent 3 admits 3 of 10 simultaneous streams";
    EXPECT_EQ(full, 7);
    for (int i = 0; i < 200 && std::string(core::trim(redis.cli("ZCARD 'dify-gateway:{t:beta}:active'"))) != "0"; ++i)
        std::this_thread::sleep_for(10ms);
    EXPECT_EQ(core::trim(redis.cli("ZCARD 'dify-gateway:{t:beta}:active'")), "0") << "every lease went back";
}

// A replica that died leaves its leases behind: they stop counting when they expire.
TEST(GatewayRedis, ALeaseLeftByADeadReplicaStopsCountingWhenItExpires)
{
    running_redis redis;
    running_emulator emu;
    running_gateway gw(emu, with_redis(redis, [](config::gateway_config& c) { c.tenants["alpha"].max_concurrent = 1; }));
    auto now_us = [&] {
        const auto reply = redis.cli("TIME");
        auto t = core::split(core::trim(reply), '\n');
        return std::stoll(std::string(core::trim(t.at(0)))) * 1000000 + std::stoll(std::string(core::trim(t.at(1))));
    };
    const std::string key = "'dify-gateway:{t:alpha}:active'";
    redis.cli("ZADD " + key + " " + std::to_string(now_us() + 60'000'000) + " live-replica:1");
    EXPECT_EQ(status_of(gw), 429) << "a live replica's lease holds the only slot";
    redis.cli("ZADD " + key + " " + std::to_string(now_us() - 1) + " live-replica:1"); // it died: not renewed
    EXPECT_EQ(status_of(gw), 200) << "an expired lease is swept when it would refuse";
    // That request's own release is a background write (it lands within a few ms, perhaps
    // after a next request that another worker admits).
    bool free_again = false;
    for (int i = 0; i < 100 && !free_again; ++i) {
        free_again = status_of(gw) == 200;
        if (!free_again) std::this_thread::sleep_for(10ms);
    }
    EXPECT_TRUE(free_again);
}

TEST(GatewayRedis, AGarbledUsageFieldIsAStoreErrorNotAnException)
{
    running_redis redis;
    running_emulator emu;
    running_gateway gw(emu, with_redis(redis, [](config::gateway_config& c) { c.tenants["alpha"].tokens_per_day = 100; }));
    const auto failures_before = gateway::task_failures().load();
    const auto day = std::to_string(std::time(nullptr) / 86'400);
    redis.cli("HSET 'dify-gateway:{t:alpha}:tokens' used:" + day + " not-a-number");
    http_client admin(gw.server().admin_endpoint(), false);
    auto r = admin.request("GET", "/admin/usage");
    ASSERT_EQ(r.status, 200) << "answered from this gateway's own counts";
    EXPECT_EQ(r.json().at("tenants").at("alpha").at("tokens_today"), 0);
    EXPECT_GE(r.json().at("quota_store").at("errors").to_number<std::int64_t>(), 1);
    EXPECT_EQ(gateway::task_failures().load(), failures_before) << "nothing thrown";
}

TEST(GatewayRedis, AGarbledReservationCountRefusesAdmissionAndIsNotOverwritten)
{
    // The admission script writes the day's reservations back as a number: one it cannot
    // read is an error (503 with on_error = deny), never replaced by a guess.
    running_redis redis;
    running_emulator emu;
    running_gateway gw(emu, with_redis(redis, [](config::gateway_config& c) {
        c.tenants["alpha"].tokens_per_day = 100;
        c.quota_store.on_error = gw::config::store_error_policy::deny;
    }));
    const auto day = std::to_string(std::time(nullptr) / 86'400);
    redis.cli("HSET 'dify-gateway:{t:alpha}:tokens' reserved:" + day + " 12x");
    auto c = gw.client();
    auto r = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("hello", "u"));
    EXPECT_EQ(r.status, 503) << r.body;
    EXPECT_EQ(r.json().at("code"), "unavailable");
    EXPECT_EQ(core::trim(redis.cli("HGET 'dify-gateway:{t:alpha}:tokens' reserved:" + day)), "12x");
    EXPECT_EQ(core::trim(redis.cli("HEXISTS 'dify-gateway:{t:alpha}:tokens' ttl_until")), "0") << "refused before any write";
    EXPECT_EQ(status_of(gw), 200) << "a request that reserves nothing does not write the count";
}

// One call of a link's pipeline (the test's coroutine: its arguments are its own).
gateway::net::awaitable<void> run_on_link(std::shared_ptr<gateway::redis_link> link, std::vector<gateway::redis_link::command> calls,
                                          std::tuple<gateway::error_code, std::vector<gateway::redis_value>>* out, bool* done)
{
    *out = co_await link->run(std::move(calls), gateway::redis_link::clock::now() + 5s);
    *done = true;
}

// A worker's redis_link to `redis`, driven by the test's own io_context. Its flusher is not
// started until the test starts it: until then a write waits for an admission to carry it.
// One tenant, "alpha": 10 at once, 1,000 tokens a day, 100 estimated per admission.
class tenant_link
{
public:
    explicit tenant_link(const running_redis& redis) : redis_(redis)
    {
        config::quota_store_config store;
        store.url = redis.url();
        link = std::make_shared<gateway::redis_link>(io.get_executor(), gateway::redis_options(store, nullptr), 60s, counters);
    }
    ~tenant_link() { link->stop(); }

    // An admission of `leases`, each generating.
    gateway::redis_link::command admit(std::initializer_list<std::string> leases) const
    {
        std::vector<std::string> args{"0", "0", "10", "1000", "60000", "0"};
        for (const auto& lease : leases) args.insert(args.end(), {lease, "100", "1"});
        return gateway::redis_scripts::admit_tenant({key + "rate", key + "active", key + "tokens", key + "cancelled"}, std::move(args));
    }
    // A request's end, queued: its lease released, its usage settled against its
    // reservation (or, reserved = "0", charged as usage admitted while Redis was away).
    void settle(const std::string& day, const std::string& lease, const std::string& used, const std::string& reserved = "1")
    {
        link->write(gateway::redis_scripts::finish_tenant({key + "active", key + "tokens", key + "settled:" + day},
                                                          {day, lease, lease, used, reserved}));
    }
    // Runs `calls` through the link's pipeline (with the writes that ride along).
    std::tuple<gateway::error_code, std::vector<gateway::redis_value>> run(std::vector<gateway::redis_link::command> calls)
    {
        std::tuple<gateway::error_code, std::vector<gateway::redis_value>> out;
        bool done = false;
        gateway::net::co_spawn(io, run_on_link(link, std::move(calls), &out, &done), gateway::log_failure("test pipeline"));
        while (!done) io.run_one();
        return out;
    }
    std::string field(const std::string& f) const { return std::string(core::trim(redis_.cli("HGET '" + key + "tokens' " + f))); }
    std::string active_count() const { return std::string(core::trim(redis_.cli("ZCARD '" + key + "active'"))); }

    gateway::net::io_context io;
    std::shared_ptr<gateway::store_counters> counters = std::make_shared<gateway::store_counters>();
    std::shared_ptr<gateway::redis_link> link;
    const std::string key = "dify-gateway:{t:alpha}:";

private:
    const running_redis& redis_;
};

// The UTC day an admission reply names (its unix seconds).
std::string day_of(const std::vector<gateway::redis_value>& replies)
{
    return std::to_string(replies.at(0).elements.at(0).elements.at(2).integer / 86400);
}

// A settlement waiting when the worker sends an admission of the same tenant runs in that
// admission's script run: one EVALSHA for both, each with the outcome it would have had in
// a run of its own.
TEST(GatewayRedis, ASettlementWaitingForAnAdmissionRunsInItsScript)
{
    running_redis redis;
    tenant_link t(redis);
    auto script_runs = [&] {
        const auto stats = redis.cli("INFO commandstats");
        const auto at = stats.find("cmdstat_evalsha:calls=");
        return at == std::string::npos ? 0 : std::stoi(stats.substr(at + 22));
    };
    // The verdict of the only admission in a reply that must look as it would alone.
    auto verdict = [](const std::vector<gateway::redis_value>& replies) {
        EXPECT_EQ(replies.size(), 1u);
        EXPECT_EQ(replies.at(0).elements.size(), 1u) << "one element per admission, nothing more";
        return replies.at(0).elements.at(0).elements.at(0).integer;
    };

    // The admission of `lease`, which carries the settlement queued before it.
    auto admit_carrying = [&](const std::string& lease) {
        const int runs = script_runs();
        auto [ec, replies] = t.run({t.admit({lease})});
        EXPECT_FALSE(ec);
        EXPECT_EQ(script_runs() - runs, 1) << "the settlement ran in the admission's run";
        return replies;
    };

    auto [ec1, first] = t.run({t.admit({"l1"})});
    ASSERT_FALSE(ec1);
    ASSERT_EQ(verdict(first), 0);
    const auto day = day_of(first);
    t.settle(day, "l1", "19");
    EXPECT_EQ(verdict(admit_carrying("l2")), 0);
    EXPECT_EQ(t.field("used:" + day), "19") << "l1 charged what it used";
    EXPECT_EQ(t.field("hold:l1"), "") << "and its hold settled";
    EXPECT_EQ(t.field("reserved:" + day), "100") << "l2's reservation only";
    EXPECT_EQ(t.active_count(), "1") << "l1 released, l2 held";
    EXPECT_EQ(t.counters->errors.load(), 0u);

    // A settlement Redis refuses (its day's usage is not a number) fails alone: the admission
    // it rode with is decided as it would be without it, and the refusal is counted.
    redis.cli("HSET '" + t.key + "tokens' used:" + day + " garbled");
    t.settle(day, "l2", "7");
    EXPECT_EQ(verdict(admit_carrying("l3")), 0);
    EXPECT_EQ(t.counters->writes_dropped.load(), 1u);
    EXPECT_EQ(t.field("hold:l2"), day + ":100") << "nothing of the refused settlement written but its release";
    EXPECT_EQ(t.field("used:" + day), "garbled");
    EXPECT_EQ(core::trim(redis.cli("ZSCORE '" + t.key + "active' l2")), "") << "l2 released";
    EXPECT_NE(core::trim(redis.cli("ZSCORE '" + t.key + "active' l3")), "") << "l3 held";

    // So does one whose command Redis refuses midway (an earlier day's reservations are not
    // a number, so giving back that day's hold fails): the error it raises is its own reply.
    const auto yesterday = std::to_string(std::stoll(day) - 1);
    redis.cli("HSET '" + t.key + "tokens' used:" + day + " 19 hold:old " + yesterday + ":50 reserved:" + yesterday + " garbled");
    t.settle(day, "old", "10");
    EXPECT_EQ(verdict(admit_carrying("l4")), 0);
    EXPECT_EQ(t.counters->writes_dropped.load(), 2u);
    EXPECT_EQ(t.field("used:" + day), "19") << "not charged: the settlement stopped at the refused command";

    // An admission Redis refuses (its day's reservations are not a number) fails alone too:
    // the settlement in its run is applied and its reply counts as such.
    redis.cli("HSET '" + t.key + "tokens' reserved:" + day + " garbled");
    t.settle(day, "unreserved", "5", "0");
    const auto fifth = admit_carrying("l5");
    ASSERT_EQ(fifth.size(), 1u);
    EXPECT_TRUE(fifth[0].is_error()) << "the admission's own error reply, as alone";
    EXPECT_NE(fifth[0].str.find("is not a number"), std::string::npos) << fifth[0].str;
    EXPECT_EQ(t.field("used:" + day), "24") << "the usage charged";
    EXPECT_EQ(t.counters->writes_dropped.load(), 2u) << "no further write refused";
}

// Settlements merged into one call and sent while Redis hangs are retried once it is back,
// each as it was queued: every one applied, none twice, none lost.
TEST(GatewayRedis, MergedSettlementsThatFailAreRetriedEachAsQueued)
{
    running_redis redis;
    tenant_link t(redis);
    auto [ec, admitted] = t.run({t.admit({"l1", "l2", "l3"})});
    ASSERT_FALSE(ec);
    const auto day = day_of(admitted);
    ASSERT_EQ(t.field("reserved:" + day), "300");

    t.link->start(); // the flusher sends the writes (no admission comes to carry them)
    redis.pause();
    t.settle(day, "l1", "10");
    t.settle(day, "l2", "20");
    t.settle(day, "l3", "40");
    for (int i = 0; i < 400 && t.counters->writes_retried.load() == 0; ++i) t.io.run_for(10ms); // the batch's deadline passes
    EXPECT_EQ(t.counters->writes_retried.load(), 3u) << "the merged call failed: each of its writes waits for a retry";
    redis.resume();
    for (int i = 0; i < 400 && (t.field("used:" + day) != "70" || t.counters->writes_pending.load() != 0); ++i) t.io.run_for(10ms);
    EXPECT_EQ(t.field("used:" + day), "70") << "each settlement charged once";
    EXPECT_EQ(t.field("reserved:" + day), "0");
    EXPECT_EQ(t.active_count(), "0") << "every lease released";
    EXPECT_EQ(t.counters->writes_dropped.load(), 0u);
}

} // namespace
} // namespace gw::test
