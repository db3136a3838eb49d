// Operations: /metrics in the Prometheus text format (checked by promtool) with counters
// that agree with what the test sent; spawned tasks that fail are logged and counted.
#include "gateway/ops/spawn.hpp"
#include "tests/emulator/emulator_test_util.hpp"
#include "tests/support/gateway_fixture.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "core/key_hash.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <regex>

namespace gw::test {
namespace {

TEST(GatewayOps, MetricsPassPromtoolAndCountWhatWasSent)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) {
        c.tenants["alpha"].rate = config::rate_config{0.001, 6};
        c.server.threads = 2;
    });
    auto c = gw.client();
    std::int64_t tokens = 0;
    for (int i = 0; i < 3; ++i)
        tokens += post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("metrics", "u")).json().at("metadata").at("usage").at("total_tokens").as_int64();
    auto stream = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("a streamed one", "u", "streaming"));
    tokens += sse_events(stream.body).back().at("metadata").at("usage").at("total_tokens").as_int64();
    {
        auto ctl = emu.client();
        ctl->request("POST", "/_emulator/faults", {}, R"({"fault": "status=503", "count": 1, "path": "/v1/parameters"})");
    }
    EXPECT_EQ(get(*c, "/v1/parameters", tenant_keys::alpha).status, 200); // one retry
    EXPECT_EQ(get(*c, "/v1/info", tenant_keys::alpha).status, 200);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(get(*c, "/v1/info", tenant_keys::alpha).status, 429);
    EXPECT_EQ(get(*c, "/v1/info", "wrong-key-0123456789").status, 401);

    http_client admin(gw.server().admin_endpoint(), false);
    auto scrape = admin.request("GET", "/metrics");
    ASSERT_EQ(scrape.status, 200);
    EXPECT_EQ(scrape.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const auto& m = "\n" + scrape.body;
    EXPECT_EQ(metric_sample(m, R"(dify_gateway_requests_total{tenant="alpha",app="chat",endpoint="POST /chat-messages",status="200"})"), 4);
    EXPECT_EQ(metric_sample(m, R"(dify_gateway_requests_total{tenant="alpha",app="chat",endpoint="GET /parameters",status="200"})"), 1);
    EXPECT_EQ(metric_sample(m, R"(dify_gateway_requests_total{tenant="alpha",app="chat",endpoint="GET /info",status="429"})"), 3);
    EXPECT_EQ(metric_sample(m, R"(dify_gateway_requests_total{tenant="",app="",endpoint="",status="401"})"), 1);
    EXPECT_EQ(metric_sample(m, R"(dify_gateway_rate_limited_total{tenant="alpha",reason="rate"})"), 3);
    EXPECT_EQ(metric_sample(m, R"(dify_gateway_upstream_retries_total{upstream="dify",reason="503"})"), 1);
    EXPECT_EQ(metric_sample(m, R"(dify_gateway_tokens_total{tenant="alpha",app="chat"})"), tokens);
    EXPECT_EQ(metric_sample(m, R"(dify_gateway_time_to_first_byte_seconds_count{tenant="alpha",app="chat"})"), 1);
    EXPECT_EQ(metric_sample(m, R"(dify_gateway_request_duration_seconds_count{tenant="alpha",app="chat"})"), 9);
    EXPECT_EQ(metric_sample(m, R"(dify_gateway_active_streams{tenant="alpha"})"), 0);
    EXPECT_GE(metric_sample(m, R"(dify_gateway_upstream_connects_total{upstream="dify"})"), 1);
    EXPECT_EQ(metric_sample(m, R"(dify_gateway_quota_store_errors_total)"), 0);
    EXPECT_EQ(metric_sample(m, R"(dify_gateway_upstream_circuit_open{upstream="dify"})"), 0);
    EXPECT_EQ(metric_sample(m, R"(dify_gateway_tenant_quota_limit{tenant="alpha",quota="burst"})"), 6);
    EXPECT_LT(metric_sample(m, R"(dify_gateway_tenant_quota_remaining{tenant="alpha",quota="burst"})"), 1) << "all six spent";
    EXPECT_GE(metric_sample(m, R"(dify_gateway_tenant_quota_remaining{tenant="alpha",quota="burst"})"), 0);
    EXPECT_EQ(metric_sample(m, R"(dify_gateway_build_info{version=")" + std::string(GW_VERSION) + "\"}"), 1);

    std::string path = "/tmp/gw-metrics-" + std::to_string(::getpid()) + ".txt";
    std::ofstream(path) << scrape.body;
    FILE* p = ::popen(("promtool check metrics < " + path + " 2>&1").c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string output;
    char buf[256];
    while (std::fgets(buf, sizeof buf, p)) output += buf;
    int rc = ::pclose(p);
    EXPECT_EQ(rc, 0) << output;
    std::remove(path.c_str());
}

// deploy/'s dashboard and alert rules query only metrics the gateway exports (a renamed
// metric would leave a panel or an alert silently empty).
TEST(GatewayOps, TheDashboardAndAlertRulesUseExportedMetricNames)
{
    running_emulator emu;
    running_gateway gw(emu);
    http_client admin(gw.server().admin_endpoint(), false);
    const auto exported = admin.request("GET", "/metrics").body;
    for (const char* file : {"/deploy/grafana/dify-gateway.json", "/deploy/prometheus/alerts.yml"}) {
        std::ifstream in(std::string(GW_SOURCE_DIR) + file);
        ASSERT_TRUE(in) << file;
        const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        const std::regex metric("dify_gateway_[a-z_]+");
        int found = 0;
        for (auto it = std::sregex_iterator(text.begin(), text.end(), metric); it != std::sregex_iterator(); ++it) {
            std::string name = it->str();
            for (const char* suffix : {"_bucket", "_sum", "_count"})
                if (name.ends_with(suffix) && exported.find("# TYPE " + name + " ") == std::string::npos)
                    name.resize(name.size() - std::string_view(suffix).size());
            EXPECT_NE(exported.find("# TYPE " + name + " "), std::string::npos) << file << " queries " << it->str();
            ++found;
        }
        EXPECT_GT(found, 5) << file;
    }
}

namespace net = boost::asio;

net::awaitable<void> fails_unexpectedly()
{
    throw std::runtime_error("an unexpected error");
    co_return;
}

net::awaitable<void> marks(bool* ran)
{
    *ran = true;
    co_return;
}

// Every task the gateway spawns has log_failure as its completion handler: an exception
// that escapes a task is logged and counted, and the worker's loop goes on serving.
TEST(GatewayOps, AdminActionsNeedTheTokenWhileProbesAndMetricsStayOpen)
{
    running_emulator emu;
    const std::string token = "admin-token-0123456789abcdef";
    running_gateway gw(emu, [&](config::gateway_config& c) { c.admin.token = core::hash_key(token); });
    http_client admin(gw.server().admin_endpoint(), false);
    EXPECT_EQ(admin.request("GET", "/healthz").status, 200);
    EXPECT_EQ(admin.request("GET", "/readyz").status, 200);
    EXPECT_EQ(admin.request("GET", "/metrics").status, 200);
    auto refused = admin.request("GET", "/admin/usage");
    EXPECT_EQ(refused.status, 401);
    EXPECT_EQ(refused.json().at("code"), "unauthorized");
    EXPECT_EQ(refused.header("www-authenticate"), "Bearer realm=\"dify-gateway admin\"");
    EXPECT_EQ(admin.request("POST", "/admin/reload", {{"Authorization", "Bearer wrong-token-0123456789"}}).status, 401);
    auto usage = admin.request("GET", "/admin/usage", {{"Authorization", "Bearer " + token}});
    EXPECT_EQ(usage.status, 200);
    EXPECT_TRUE(usage.json().as_object().contains("tenants"));
    auto reload = admin.request("POST", "/admin/reload", {{"Authorization", "Bearer " + token}});
    EXPECT_EQ(reload.status, 400) << "authorized: this gateway has no config file to read again";
    EXPECT_EQ(admin.request("GET", "/admin/nothing-here", {{"Authorization", "Bearer " + token}}).status, 404);
}

TEST(GatewayOps, AnExceptionInASpawnedTaskIsLoggedCountedAndTheLoopGoesOn)
{
    net::io_context io;
    const auto before = gateway::task_failures().load();
    bool next_ran = false;
    net::co_spawn(io, fails_unexpectedly(), gateway::log_failure("test task"));
    net::co_spawn(io, marks(&next_ran), gateway::log_failure("next task"));
    EXPECT_NO_THROW(io.run());
    EXPECT_EQ(gateway::task_failures().load() - before, 1u);
    EXPECT_TRUE(next_ran) << "the loop served the next task";
}

} // namespace
} // namespace gw::test
