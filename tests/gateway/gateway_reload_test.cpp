// Hot reload (POST /admin/reload and SIGHUP): new requests use the new configuration at
// once, requests under load never fail, quota state survives, an invalid file changes
// nothing.
#include "config/loader.hpp"
#include "tests/emulator/emulator_test_util.hpp"
#include "tests/support/gateway_fixture.hpp"
#include "tests/support/process.hpp"

#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>

#include <gtest/gtest.h>

#include <signal.h>

#include <atomic>
#include <fstream>
#include <thread>

namespace gw::test {
namespace {

using namespace std::chrono_literals;

const std::string gamma_key = "gamma-key-0123456789abcdef";
const std::string load_key = "load-key-0123456789abcdef"; // an unlimited tenant for background load

// A gateway config file in front of `emu`: alpha always; beta or gamma as asked.
std::string config_json(const running_emulator& emu, bool beta, bool gamma, int alpha_burst)
{
    std::string tenants = R"("alpha": {"keys": [")" + tenant_keys::alpha + R"("], "apps": ["chat", "workflow"], "default_app": "chat",
                  "rate": {"requests_per_second": 0.001, "burst": )" + std::to_string(alpha_burst) + "}}";
    tenants += R"(, "load": {"keys": [")" + load_key + R"("], "apps": ["chat"]})";
    if (beta) tenants += R"(, "beta": {"keys": [")" + tenant_keys::beta + R"("], "apps": ["chat"]})";
    if (gamma) tenants += R"(, "gamma": {"keys": [")" + gamma_key + R"("], "apps": ["workflow"]})";
    return R"({
      "server": {"listen": "127.0.0.1:0", "threads": 2},
      "admin": {"listen": "127.0.0.1:0"},
      "log": {"level": "debug", "format": "text"},
      "upstreams": {"dify": {"url": "https://localhost:)" + std::to_string(emu.endpoint().port()) + R"(", "ca_file": ")" +
           test_ca_file() + R"("}},
      "apps": {"chat": {"api_keys": [")" + keys::chat + R"("]}, "workflow": {"api_keys": [")" + keys::workflow + R"("]}},
      "tenants": {)" + tenants + R"(}
    })";
}

std::string write_file(const std::string& name, const std::string& text)
{
    std::string path = "/tmp/gw-reload-" + std::to_string(::getpid()) + "-" + name + ".json";
    std::ofstream(path) << text;
    return path;
}

int status(running_gateway& gw, const std::string& key, const std::string& path = "/v1/info")
{
    auto c = gw.client();
    return get(*c, path, key).status;
}

TEST(GatewayReload, NewKeysAtOnceNoFailuresUnderLoadQuotaStateKept)
{
    running_emulator emu;
    auto path = write_file("a", config_json(emu, true, false, 10));
    auto loaded = config::load_config_file(path);
    ASSERT_TRUE(loaded.ok());
    running_gateway gw(*loaded.config, path);
    for (int i = 0; i < 8; ++i) ASSERT_EQ(status(gw, tenant_keys::alpha), 200); // 8 of alpha's 10 tokens used
    EXPECT_EQ(status(gw, tenant_keys::beta), 200);
    EXPECT_EQ(status(gw, gamma_key), 401);

    std::atomic<bool> stop{false};
    std::atomic<int> ok{0}, failed{0};
    std::vector<std::thread> load;
    for (int t = 0; t < 3; ++t)
        load.emplace_back([&] {
            auto c = gw.client();
            while (!stop) {
                try {
                    (get(*c, "/v1/info", load_key).status == 200 ? ok : failed)++;
                } catch (const std::exception&) {
                    ++failed;
                    c = gw.client();
                }
            }
        });
    std::this_thread::sleep_for(100ms); // let the load run across the reload

    std::ofstream(path) << config_json(emu, false, true, 10); // beta out, gamma in
    http_client admin(gw.server().admin_endpoint(), false);
    auto r = admin.request("POST", "/admin/reload");
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json().at("result"), "reloaded");
    EXPECT_EQ(status(gw, gamma_key, "/v1/info"), 200) << "a new tenant key works immediately";
    EXPECT_EQ(status(gw, tenant_keys::beta), 401) << "a removed one is rejected";

    std::ofstream(path) << "{ this is not JSON";
    r = admin.request("POST", "/admin/reload");
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.json().at("result"), "rejected");
    EXPECT_FALSE(r.json().at("problems").as_array().empty());
    EXPECT_EQ(status(gw, gamma_key), 200) << "an invalid file changes nothing";
    EXPECT_EQ(status(gw, tenant_keys::beta), 401);

    stop = true;
    for (auto& t : load) t.join();
    EXPECT_EQ(failed.load(), 0) << "zero failed requests under load";
    EXPECT_GT(ok.load(), 10);

    // Quota state survived both reloads: alpha's bucket still holds the 2 tokens it had.
    EXPECT_EQ(status(gw, tenant_keys::alpha), 200);
    EXPECT_EQ(status(gw, tenant_keys::alpha), 200);
    EXPECT_EQ(status(gw, tenant_keys::alpha), 429) << "not a fresh bucket of 10";
    std::remove(path.c_str());
}

TEST(GatewayReload, SighupReloadsTheProcess)
{
    running_emulator emu;
    auto path = write_file("b", config_json(emu, true, false, 1000));
    child_process gw({GW_GATEWAY_BIN, "--config", path}, "listening on");
    auto line = gw.ready_line();
    auto port = static_cast<std::uint16_t>(std::stoi(line.substr(line.rfind(':') + 1)));
    auto call = [&](const std::string& key) {
        http_client c({boost::asio::ip::make_address("127.0.0.1"), port}, false);
        return get(c, "/v1/info", key).status;
    };
    EXPECT_EQ(call(gamma_key), 401);
    std::ofstream(path) << config_json(emu, false, true, 1000);
    ASSERT_EQ(::kill(gw.pid(), SIGHUP), 0);
    bool reloaded = false;
    for (int i = 0; i < 500 && !reloaded; ++i) {
        reloaded = call(gamma_key) == 200;
        if (!reloaded) std::this_thread::sleep_for(10ms);
    }
    EXPECT_TRUE(reloaded);
    EXPECT_EQ(call(tenant_keys::beta), 401);
    std::ofstream(path) << R"({"tenants": {}})"; // valid JSON, invalid config
    ASSERT_EQ(::kill(gw.pid(), SIGHUP), 0);
    EXPECT_EQ(call(gamma_key), 200);
    EXPECT_EQ(gw.terminate(), 0);
    std::remove(path.c_str());
}

// A request planned on an upstream's old settings (here https) whose body arrives after a
// reload changed them (to http) is answered 503, never sent with the old settings' stream
// type or host to the new pool. 100-continue tells the test when the plan is made.
TEST(GatewayReload, ARequestPlannedBeforeItsUpstreamChangedIsNotSentOnTheNewSettings)
{
    running_emulator emu;
    const auto tls_config = config_json(emu, true, false, 1000);
    auto path = write_file("c", tls_config);
    auto loaded = config::load_config_file(path);
    ASSERT_TRUE(loaded.ok());
    running_gateway gw(*loaded.config, path);

    boost::asio::io_context io;
    boost::asio::ip::tcp::socket s(io);
    s.connect(gw.endpoint());
    const std::string body = json::serialize(chat_body("planned before", "u"));
    const std::string head = "POST /v1/chat-messages HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " + tenant_keys::alpha +
                             "\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nConnection: close\r\nContent-Length: " +
                             std::to_string(body.size()) + "\r\n\r\n";
    boost::asio::write(s, boost::asio::buffer(head));
    std::string got;
    boost::asio::read_until(s, boost::asio::dynamic_buffer(got), "\r\n\r\n");
    ASSERT_EQ(got.rfind("HTTP/1.1 100", 0), 0u) << got;
    got.clear();

    auto plain = tls_config;
    plain.replace(plain.find("https://localhost"), 8, "http://");
    const auto ca = plain.find(R"(, "ca_file")");
    plain.erase(ca, plain.find('}', ca) - ca); // no CA for plain http
    std::ofstream(path) << plain;
    http_client admin(gw.server().admin_endpoint(), false);
    auto reloaded = admin.request("POST", "/admin/reload");
    ASSERT_EQ(reloaded.status, 200) << reloaded.body;

    boost::asio::write(s, boost::asio::buffer(body));
    boost::system::error_code ec;
    boost::asio::read(s, boost::asio::dynamic_buffer(got), ec); // to the end: the answer closes or is read whole
    EXPECT_EQ(got.rfind("HTTP/1.1 503", 0), 0u) << got;
    EXPECT_NE(got.find("\"unavailable\""), std::string::npos) << got;
    EXPECT_EQ(status(gw, tenant_keys::alpha), 502) << "new requests use the new (here wrong) settings, and still get an answer";
    std::remove(path.c_str());
}

// /metrics is read on the admin worker while SIGHUP's reload (another thread) replaces the
// configuration and usage counters: under TSan this must be clean, and every scrape whole.
TEST(GatewayReload, MetricsScrapedDuringRepeatedReloads)
{
    running_emulator emu;
    auto path = write_file("m", config_json(emu, true, false, 10));
    auto loaded = config::load_config_file(path);
    ASSERT_TRUE(loaded.ok());
    running_gateway gw(*loaded.config, path);
    ASSERT_EQ(status(gw, tenant_keys::alpha), 200);
    std::atomic<bool> stop{false};
    std::atomic<int> scrapes{0}, bad{0};
    std::thread scraper([&] {
        http_client admin(gw.server().admin_endpoint(), false);
        while (!stop) {
            auto r = admin.request("GET", "/metrics");
            bool whole = r.status == 200 && r.body.find("dify_gateway_quota_store_errors_total") != std::string::npos &&
                         r.body.find("dify_gateway_task_failures_total") != std::string::npos;
            ++(whole ? scrapes : bad);
        }
    });
    for (int i = 0; i < 20; ++i) {
        std::ofstream(path) << config_json(emu, i % 2 == 0, i % 2 == 1, 10);
        EXPECT_TRUE(gw.server().reload(path).empty()); // as SIGHUP does, from outside the workers
    }
    while (scrapes.load() < 20 && bad.load() == 0) std::this_thread::yield(); // a few scrapes after the last reload
    stop = true;
    scraper.join();
    EXPECT_EQ(bad.load(), 0);
    std::remove(path.c_str());
}

} // namespace
} // namespace gw::test
