// Config loading: every section, defaults, JSONC, ${ENV}, and each validation rule with
// its exact message and JSON path. Bad input always yields problems, never a throw.
#include "config/loader.hpp"
#include "config/redis_url.hpp"
#include "config/tracing.hpp"
#include "core/key_hash.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

namespace gw::config {
namespace {

env_lookup fake_env(std::map<std::string, std::string> vars)
{
    return [vars](const std::string& name) -> std::optional<std::string> {
        auto it = vars.find(name);
        if (it == vars.end()) return std::nullopt;
        return it->second;
    };
}

// A minimal valid config; `extra` is spliced into the top-level object.
std::string minimal(const std::string& extra = "")
{
    return R"({
      "upstreams": { "dify": { "url": "https://api.dify.ai" } },
      "apps": { "support-bot": { "api_keys": ["app-aaaaaaaaaaaaaaaaaaaaaaaa"] } },
      "tenants": { "billing": { "keys": ["gw-billing-0123456789"], "apps": ["support-bot"] } })" +
           extra + "}";
}

bool has_problem(const load_result& r, const std::string& text)
{
    return std::find(r.problems.begin(), r.problems.end(), text) != r.problems.end();
}

std::string all(const load_result& r)
{
    std::string s;
    for (const auto& p : r.problems) s += p + "\n";
    return s;
}

TEST(ConfigLoader, MinimalConfigGetsDefaults)
{
    auto r = load_config_text(minimal(), fake_env({}));
    ASSERT_TRUE(r.ok()) << all(r);
    const auto& c = *r.config;
    EXPECT_EQ(c.server.listen, "0.0.0.0:8080");
    EXPECT_EQ(c.server.max_request_body_bytes, 16 * 1024 * 1024);
    EXPECT_EQ(c.admin.listen, "127.0.0.1:9901");
    EXPECT_EQ(c.log.format, config::log_format::json);
    const auto& u = c.upstreams.at("dify");
    EXPECT_TRUE(u.tls);
    EXPECT_EQ(u.host, "api.dify.ai");
    EXPECT_EQ(u.port, 443);
    EXPECT_EQ(u.base_path, "");
    EXPECT_EQ(u.retry.max_attempts, 3);
    EXPECT_EQ(c.apps.at("support-bot").upstream, "dify");
    EXPECT_EQ(c.tenants.at("billing").default_app, "support-bot"); // the only app
    EXPECT_EQ(c.quota_store.type, config::store_kind::memory);
}

TEST(ConfigLoader, FullConfigWithCommentsTrailingCommasAndEnv)
{
    const std::string text = R"({
      // every section
      "server": { "listen": "127.0.0.1:0", "threads": 2, "max_request_body_bytes": 1024,
                  "max_header_bytes": 8192, "client_header_timeout_ms": 5000,
                  "client_idle_timeout_ms": 6000, "drain_timeout_ms": 7000, },
      "admin": { "listen": "127.0.0.1:9999" },
      "log": { "level": "debug", "format": "text", "access_log": false },
      "upstreams": { "dify": { "url": "http://10.1.2.3:5001/dify/", "verify_tls": false,
          "max_connections": 8, "max_connecting": 4, "preconnect_ratio": 1.5, "idle_timeout_ms": 1000, "connect_timeout_ms": 100,
          "response_timeout_ms": 2000, "stream_idle_timeout_ms": 3000,
          "retry": { "max_attempts": 5, "base_delay_ms": 10, "max_delay_ms": 20, "budget_percent": 50 } } },
      "apps": { "a": { "upstream": "dify", "api_keys": ["${KEY_A}", "pre-${KEY_B}-post"], "max_concurrent": 4 },
                "b": { "api_keys": ["k"] } },
      "tenants": { "t1": { "keys": ["${T1_KEY}"], "apps": ["a", "b"], "default_app": "b",
                           "rate": { "requests_per_second": 2.5 }, "max_concurrent": 3, "tokens_per_day": 1000 } },
      /* block comment */
      "quota_store": { "type": "redis", "url": "redis://127.0.0.1:6379/0", "timeout_ms": 30, "on_error": "deny" },
    })";
    auto r = load_config_text(text, fake_env({{"KEY_A", "app-A"}, {"KEY_B", "B"}, {"T1_KEY", "tenant-one-key-0001"}}));
    ASSERT_TRUE(r.ok()) << all(r);
    const auto& c = *r.config;
    EXPECT_EQ(c.server.threads, 2);
    EXPECT_EQ(c.server.drain_timeout_ms, std::chrono::milliseconds(7000));
    EXPECT_EQ(c.log.level, config::log_level::debug);
    EXPECT_FALSE(c.log.access_log);
    const auto& u = c.upstreams.at("dify");
    EXPECT_FALSE(u.tls);
    EXPECT_EQ(u.host, "10.1.2.3");
    EXPECT_EQ(u.port, 5001);
    EXPECT_EQ(u.base_path, "/dify");
    EXPECT_EQ(u.retry.budget_percent, 50);
    EXPECT_DOUBLE_EQ(u.preconnect_ratio, 1.5);
    EXPECT_EQ(u.max_connecting, 4);
    EXPECT_EQ(c.apps.at("a").api_keys, (std::vector<std::string>{"app-A", "pre-B-post"}));
    EXPECT_EQ(c.tenants.at("t1").keys.front(), "tenant-one-key-0001");
    EXPECT_DOUBLE_EQ(c.tenants.at("t1").rate->burst, 3); // default: ceil(rps)
    EXPECT_EQ(c.quota_store.on_error, config::store_error_policy::deny);
}

TEST(ConfigLoader, SyntaxErrorNamesLineAndColumn)
{
    auto r = load_config_text("{\n  \"server\": {\n    \"listen\": 8080,,\n  }\n}", fake_env({}));
    ASSERT_FALSE(r.ok());
    ASSERT_EQ(r.problems.size(), 1u);
    EXPECT_EQ(r.problems[0].rfind("line 3, column 20: ", 0), 0u) << r.problems[0];
}

TEST(ConfigLoader, EmptyAndNonObjectDocuments)
{
    EXPECT_FALSE(load_config_text("", fake_env({})).ok());
    auto r = load_config_text("[1,2]", fake_env({}));
    EXPECT_TRUE(has_problem(r, "must be an object")) << all(r);
}

TEST(ConfigLoader, MissingEnvironmentVariableIsNamed)
{
    auto r = load_config_text(R"({"apps": {"a": {"api_keys": ["${NOPE}"]}}})", fake_env({}));
    EXPECT_TRUE(has_problem(r, "apps.a.api_keys[0]: environment variable NOPE is not set")) << all(r);
    r = load_config_text(R"({"apps": {"a": {"api_keys": ["${OPEN"]}}})", fake_env({}));
    EXPECT_TRUE(has_problem(r, "apps.a.api_keys[0]: unterminated ${ in string")) << all(r);
}

TEST(ConfigLoader, UnknownKeysAreRejectedEverywhere)
{
    auto r = load_config_text(minimal(R"(, "sever": {}, "server": {"listne": "x"},
        "upstreams": {"dify": {"url": "https://x", "retry": {"max_atempts": 1}}})"), fake_env({}));
    EXPECT_TRUE(has_problem(r, "sever: unknown key")) << all(r);
    EXPECT_TRUE(has_problem(r, "server.listne: unknown key")) << all(r);
    EXPECT_TRUE(has_problem(r, "upstreams.dify.retry.max_atempts: unknown key")) << all(r);
}

TEST(ConfigLoader, TypeAndRangeErrors)
{
    auto r = load_config_text(minimal(R"(, "server": {"threads": -1, "max_request_body_bytes": "big",
        "client_idle_timeout_ms": 1.5}, "log": {"access_log": "yes"},
        "upstreams": {"dify": {"url": "https://x", "preconnect_ratio": 0.5, "max_connecting": 0}, "far": {"url": "https://y", "preconnect_ratio": "2"}})"),
                              fake_env({}));
    EXPECT_TRUE(has_problem(r, "server.threads: must be between 0 and 1024 (got -1)")) << all(r);
    EXPECT_TRUE(has_problem(r, "upstreams.dify.preconnect_ratio: must be between 1 and 3 (got 0.5)")) << all(r);
    EXPECT_TRUE(has_problem(r, "upstreams.far.preconnect_ratio: must be a number")) << all(r);
    EXPECT_TRUE(has_problem(r, "upstreams.dify.max_connecting: must be between 1 and 100000 (got 0)")) << all(r);
    EXPECT_TRUE(has_problem(r, "server.max_request_body_bytes: must be an integer")) << all(r);
    EXPECT_TRUE(has_problem(r, "server.client_idle_timeout_ms: must be an integer")) << all(r);
    EXPECT_TRUE(has_problem(r, "log.access_log: must be true or false")) << all(r);
}

TEST(ConfigLoader, AllProblemsAreReportedAtOnce)
{
    auto r = load_config_text(R"({
      "server": {"listen": "nowhere"},
      "log": {"level": "loud", "format": "xml"},
      "upstreams": {"dify": {"url": "ftp://x"}},
      "apps": {"a": {"upstream": "nope", "api_keys": []}},
      "tenants": {"t": {"keys": ["short"], "apps": ["a", "ghost"], "default_app": "x"}},
      "quota_store": {"type": "etcd"}
    })", fake_env({}));
    EXPECT_TRUE(has_problem(r, "server.listen: \"nowhere\" is not HOST:PORT")) << all(r);
    EXPECT_TRUE(has_problem(r, "log.level: must be \"trace\", \"debug\", \"info\", \"warn\", \"error\", \"critical\" or \"off\" (got \"loud\")"));
    EXPECT_TRUE(has_problem(r, "log.format: must be \"json\" or \"text\" (got \"xml\")"));
    EXPECT_TRUE(has_problem(r, "upstreams.dify.url: scheme must be http or https (got \"ftp\")"));
    EXPECT_TRUE(has_problem(r, "apps.a.api_keys: must not be empty"));
    EXPECT_TRUE(has_problem(r, "apps.a.upstream: \"nope\" is not defined in upstreams"));
    EXPECT_TRUE(has_problem(r, "tenants.t.keys[0]: plaintext keys must be at least 16 characters"));
    EXPECT_TRUE(has_problem(r, "tenants.t.apps[1]: \"ghost\" is not defined in apps"));
    EXPECT_TRUE(has_problem(r, "tenants.t.default_app: \"x\" is not in tenants.t.apps"));
    EXPECT_TRUE(has_problem(r, "quota_store.type: must be \"memory\" or \"redis\" (got \"etcd\")"));
    EXPECT_GE(r.problems.size(), 10u);
}

TEST(ConfigLoader, TenantRules)
{
    const std::string hashed = core::hash_key("gw-billing-0123456789");
    auto r = load_config_text(R"({
      "upstreams": {"dify": {"url": "https://api.dify.ai"}},
      "apps": {"a": {"api_keys": ["k1"]}, "b": {"api_keys": ["k2"]}},
      "tenants": {
        "one": {"keys": ["gw-billing-0123456789"], "apps": ["a", "b"]},
        "two": {"keys": [")" + hashed + R"(", "sha256:1234"], "apps": ["a", "a"]},
        "three": {"keys": [], "apps": []},
        "bad name": {"keys": ["another-long-key-0001"], "apps": ["a"], "rate": {"requests_per_second": 0}},
        "five": {"keys": ["another-long-key-0002"], "apps": ["a"], "rate": {"burst": 3}}
      }
    })", fake_env({}));
    EXPECT_TRUE(has_problem(r, "tenants.one.default_app: is required when the tenant has more than one app")) << all(r);
    EXPECT_TRUE(has_problem(r, "tenants.two.keys[0]: the same key is already used by tenant \"one\"")) << all(r);
    EXPECT_TRUE(has_problem(r, "tenants.two.keys[1]: must be sha256: followed by 64 hex digits")) << all(r);
    EXPECT_TRUE(has_problem(r, "tenants.two.apps[1]: \"a\" is listed twice")) << all(r);
    EXPECT_TRUE(has_problem(r, "tenants.three.keys: must not be empty")) << all(r);
    EXPECT_TRUE(has_problem(r, "tenants.three.apps: must not be empty")) << all(r);
    EXPECT_TRUE(has_problem(r, "tenants.bad name: name must be 1-64 characters of A-Z a-z 0-9 . _ -")) << all(r);
    EXPECT_TRUE(has_problem(r, "tenants.bad name.rate.requests_per_second: must be greater than 0")) << all(r);
    EXPECT_TRUE(has_problem(r, "tenants.five.rate.requests_per_second: is required")) << all(r);
}

TEST(ConfigLoader, NoTenantsIsAnError)
{
    auto r = load_config_text(R"({"upstreams": {"dify": {"url": "https://api.dify.ai"}}})", fake_env({}));
    EXPECT_TRUE(has_problem(r, "tenants: at least one tenant is required")) << all(r);
}

TEST(ConfigLoader, UpstreamRules)
{
    auto r = load_config_text(minimal(R"(, "upstreams": {
        "dify": {"url": "https://api.dify.ai"},
        "u1": {"url": "not a url"},
        "u2": {"url": "https://user:pw@host/?q=1"},
        "u3": {"url": "http://host", "ca_file": "/nonexistent/ca.pem"},
        "u4": {"url": "https://host", "ca_file": "/nonexistent/ca.pem",
               "retry": {"base_delay_ms": 500, "max_delay_ms": 100}, "connect_timeout_ms": 9000, "response_timeout_ms": 10},
        "u5": {"verify_tls": false}
    })"), fake_env({}));
    EXPECT_TRUE(has_problem(r, "upstreams.u1.url: \"not a url\" is not a valid URL")) << all(r);
    EXPECT_TRUE(has_problem(r, "upstreams.u2.url: must not contain credentials")) << all(r);
    EXPECT_TRUE(has_problem(r, "upstreams.u2.url: must not have a query or fragment")) << all(r);
    EXPECT_TRUE(has_problem(r, "upstreams.u3.ca_file: is only used with an https:// url")) << all(r);
    EXPECT_TRUE(has_problem(r, "upstreams.u4.ca_file: cannot read \"/nonexistent/ca.pem\"")) << all(r);
    EXPECT_TRUE(has_problem(r, "upstreams.u4.retry.base_delay_ms: must not exceed retry.max_delay_ms")) << all(r);
    EXPECT_TRUE(has_problem(r, "upstreams.u4.connect_timeout_ms: must not exceed response_timeout_ms")) << all(r);
    EXPECT_TRUE(has_problem(r, "upstreams.u5.url: is required")) << all(r);
}

TEST(ConfigLoader, ListenAndQuotaStoreRules)
{
    auto r = load_config_text(minimal(R"(, "server": {"listen": "127.0.0.1:9901"}, "admin": {"listen": "127.0.0.1:9901"},
        "quota_store": {"type": "redis", "on_error": "maybe"})"), fake_env({}));
    EXPECT_TRUE(has_problem(r, "admin.listen: must differ from server.listen")) << all(r);
    auto t = load_config_text(minimal(R"(, "admin": {"token": "short"})"), fake_env({}));
    EXPECT_TRUE(has_problem(t, "admin.token: must be at least 16 characters (or \"sha256:<hex>\")")) << all(t);
    t = load_config_text(minimal(R"(, "admin": {"token": "${ADMIN_TOKEN}"})"), fake_env({{"ADMIN_TOKEN", "has a space 0123456789"}}));
    EXPECT_TRUE(has_problem(t, "admin.token: must be printable ASCII without spaces")) << all(t);
    t = load_config_text(minimal(R"(, "admin": {"token": "${ADMIN_TOKEN}"})"), fake_env({{"ADMIN_TOKEN", "admin-token-0123456789"}}));
    EXPECT_TRUE(t.problems.empty()) << all(t);
    t = load_config_text(minimal(R"(, "admin": {"token": "sha256:0123"}, "server": {"drain_timeout_ms": 5000})"), fake_env({}));
    EXPECT_TRUE(has_problem(t, "admin.token: must be sha256: followed by 64 hex digits")) << all(t);
    EXPECT_TRUE(has_problem(t, "server.drain_idle_grace_ms: must be below server.drain_timeout_ms (idle connections would hold every drain to its end)")) << all(t);
    t = load_config_text(minimal(R"(, "admin": {"token": "sha256:)" + std::string(64, 'A') + R"("})"), fake_env({}));
    ASSERT_TRUE(t.config) << all(t);
    EXPECT_EQ(t.config->admin.token, "sha256:" + std::string(64, 'a')) << "stored lower-case, as hash_key() writes it";
    EXPECT_TRUE(has_problem(r, "quota_store.on_error: must be \"allow\", \"deny\" or \"local\" (got \"maybe\")")) << all(r);
    EXPECT_TRUE(has_problem(r, "quota_store.url: is required when type is \"redis\"")) << all(r);
    r = load_config_text(minimal(R"(, "server": {"listen": "[::1]:70000"},
        "quota_store": {"type": "redis", "url": "http://127.0.0.1"})"), fake_env({}));
    EXPECT_TRUE(has_problem(r, "server.listen: \"[::1]:70000\" is not HOST:PORT")) << all(r);
    EXPECT_TRUE(has_problem(r, "quota_store.url: \"http://127.0.0.1\" is not a redis:// or rediss:// URL (expected redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB])")) << all(r);
    r = load_config_text(minimal(R"(, "quota_store": {"type": "redis", "url": "redis://127.0.0.1", "ca_file": "/nonexistent"})"), fake_env({}));
    EXPECT_TRUE(has_problem(r, "quota_store.ca_file: is only used with a rediss:// URL")) << all(r);
    r = load_config_text(minimal(R"(, "quota_store": {"type": "redis", "url": "rediss://127.0.0.1", "ca_file": "/nonexistent",
        "cert_file": "/nonexistent.pem"})"), fake_env({}));
    EXPECT_TRUE(has_problem(r, "quota_store.ca_file: cannot read \"/nonexistent\"")) << all(r);
    EXPECT_TRUE(has_problem(r, "quota_store.cert_file: and quota_store.key_file go together (a client certificate and its key)")) << all(r);
    r = load_config_text(minimal(R"(, "quota_store": {"type": "redis", "url": "rediss://u:p@127.0.0.1:6380/1"})"), fake_env({}));
    EXPECT_TRUE(r.ok()) << "TLS with an ACL user and a database: " << all(r);
    r = load_config_text(minimal(R"(, "quota_store": {"type": "redis", "url": "redis://h/x1"})"), fake_env({}));
    EXPECT_TRUE(has_problem(r, "quota_store.url: \"redis://h/x1\" has a database that is not a number (expected redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB])")) << all(r);
    r = load_config_text(minimal(R"(, "quota_store": {"url": "redis://x"})"), fake_env({}));
    EXPECT_TRUE(has_problem(r, "quota_store.url: is only used when type is \"redis\"")) << all(r);
    // Sentinel: the sentinels' addresses, their own credentials, only with type redis.
    r = load_config_text(minimal(R"(, "quota_store": {"type": "redis", "url": "redis://:pw@mymaster/0",
        "sentinels": ["10.0.0.5:26379", "[::1]:26380"], "sentinel_password": "${SENTINEL_PASSWORD}"})"),
                         fake_env({{"SENTINEL_PASSWORD", "s"}}));
    ASSERT_TRUE(r.ok()) << all(r);
    EXPECT_EQ(r.config->quota_store.sentinels, (std::vector<std::string>{"10.0.0.5:26379", "[::1]:26380"}));
    EXPECT_EQ(r.config->quota_store.sentinel_password, "s");
    r = load_config_text(minimal(R"(, "quota_store": {"type": "redis", "url": "redis://mymaster",
        "sentinels": ["10.0.0.5", "h:0", ":26379"]})"), fake_env({}));
    EXPECT_TRUE(has_problem(r, "quota_store.sentinels[0]: \"10.0.0.5\" is not HOST:PORT")) << all(r);
    EXPECT_TRUE(has_problem(r, "quota_store.sentinels[1]: \"h:0\" is not HOST:PORT")) << all(r);
    EXPECT_TRUE(has_problem(r, "quota_store.sentinels[2]: \":26379\" is not HOST:PORT")) << all(r);
    r = load_config_text(minimal(R"(, "quota_store": {"type": "redis", "url": "redis://h", "sentinel_password": "s"})"), fake_env({}));
    EXPECT_TRUE(has_problem(r, "quota_store.sentinel_password: and quota_store.sentinel_username are only used with quota_store.sentinels")) << all(r);
    r = load_config_text(minimal(R"(, "quota_store": {"type": "redis", "url": "redis://h", "sentinels": ["h:1"], "sentinel_username": "u"})"),
                         fake_env({}));
    EXPECT_TRUE(has_problem(r, "quota_store.sentinel_username: needs quota_store.sentinel_password (AUTH takes both)")) << all(r);
    r = load_config_text(minimal(R"(, "quota_store": {"url": "redis://h", "sentinels": ["h:1"], "sentinel_password": "s"})"), fake_env({}));
    EXPECT_TRUE(has_problem(r, "quota_store.url: is only used when type is \"redis\"")) << all(r);
    EXPECT_TRUE(has_problem(r, "quota_store.sentinels: is only used when type is \"redis\"")) << all(r);
    EXPECT_TRUE(has_problem(r, "quota_store.sentinel_password: is only used when type is \"redis\"")) << all(r);
    r = load_config_text(minimal(R"(, "quota_store": {"sentinels": "h:1"})"), fake_env({}));
    EXPECT_FALSE(r.ok()) << "not a list";
}

TEST(ConfigLoader, MissingFileIsAProblem)
{
    auto r = load_config_file("/nonexistent/gateway.json", fake_env({}));
    ASSERT_EQ(r.problems.size(), 1u);
    EXPECT_EQ(r.problems[0], "/nonexistent/gateway.json: cannot open file");
}

TEST(ConfigLoader, ShippedConfigsAreValid)
{
    auto env = fake_env({{"SUPPORT_BOT_KEY", "app-x"}, {"CONTRACT_KEY_1", "app-y"}, {"CONTRACT_KEY_2", "app-z"},
                         {"BILLING_GATEWAY_KEY", "billing-key-000000000000"},
                         {"QUICKSTART_CA_FILE", std::string(GW_SOURCE_DIR) + "/config/quickstart.json"}, {"REDIS_URL", "redis://127.0.0.1:6379/0"}});
    for (const char* file : {"config/quickstart.json", "config/production.example.json"}) {
        auto r = load_config_file(std::string(GW_SOURCE_DIR) + "/" + file, env);
        EXPECT_TRUE(r.ok()) << file << ":\n" << all(r);
    }
}

} // namespace
} // namespace gw::config

namespace gw::config {
namespace {

TEST(RedisUrl, OneReadingForValidationAndTheClient)
{
    auto t = parse_redis_url("redis://10.0.0.5:6380/2");
    ASSERT_TRUE(t);
    EXPECT_EQ(t->host, "10.0.0.5");
    EXPECT_EQ(t->port, 6380);
    EXPECT_EQ(t->db, 2);
    EXPECT_EQ(t->username, "");
    EXPECT_EQ(t->password, "");
    t = parse_redis_url("redis://gw:p%40ss%3Aw%2Frd@redis.internal");
    ASSERT_TRUE(t);
    EXPECT_EQ(t->username, "gw") << "an ACL user";
    EXPECT_EQ(t->password, "p@ss:w/rd") << "percent-decoded";
    EXPECT_EQ(t->port, 6379);
    t = parse_redis_url("redis://:secret@h");
    ASSERT_TRUE(t);
    EXPECT_EQ(t->username, "");
    EXPECT_EQ(t->password, "secret");
    t = parse_redis_url("redis://secret@h");
    ASSERT_TRUE(t);
    EXPECT_EQ(t->password, "secret") << "a lone userinfo is the password, as redis-cli reads it";
    EXPECT_EQ(parse_redis_url("redis://[::1]:7000")->host, "::1");
    std::string why;
    EXPECT_FALSE(parse_redis_url("redis://h")->tls);
    t = parse_redis_url("rediss://u:p@redis.example:6380/3");
    ASSERT_TRUE(t);
    EXPECT_TRUE(t->tls);
    EXPECT_EQ(t->host, "redis.example");
    EXPECT_EQ(t->port, 6380);
    EXPECT_EQ(t->db, 3);
    EXPECT_FALSE(parse_redis_url("redisx://h", &why));
    EXPECT_EQ(why, "is not a redis:// or rediss:// URL");
    EXPECT_FALSE(parse_redis_url("redis://h/-1", &why));
    EXPECT_FALSE(parse_redis_url("redis://h/1x", &why));
    EXPECT_FALSE(parse_redis_url("redis://h?db=1", &why));
    EXPECT_FALSE(parse_redis_url("redis:///0", &why));
    EXPECT_EQ(why, "has no host");
}


TEST(ConfigLoader, TracingFromTheOtelEnvironmentThenTheFile)
{
    auto none = load_config_text(minimal(), fake_env({}));
    ASSERT_TRUE(none.ok()) << all(none);
    EXPECT_EQ(none.config->tracing.otlp_endpoint, "") << "nothing is exported unless configured";
    EXPECT_EQ(none.config->tracing.sample_ratio, 1.0);

    auto env = fake_env({
        {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"},
        {"OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=s%20ecret, tenant = ops"},
        {"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"},
        {"OTEL_SERVICE_NAME", "edge-gw"},
        {"OTEL_TRACES_SAMPLER", "traceidratio"},
        {"OTEL_TRACES_SAMPLER_ARG", "0.25"},
        {"OTEL_BSP_SCHEDULE_DELAY", "200"},
        {"OTEL_BSP_MAX_QUEUE_SIZE", "100"},
        {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"},
        {"OTEL_EXPORTER_OTLP_TIMEOUT", "3000"},
    });
    auto r = load_config_text(minimal(), env);
    ASSERT_TRUE(r.ok()) << all(r);
    const auto& t = r.config->tracing;
    EXPECT_EQ(t.otlp_endpoint, "http://collector:4318/v1/traces");
    EXPECT_EQ(t.headers.at("x-api-key"), "s ecret");
    EXPECT_EQ(t.headers.at("tenant"), "ops");
    EXPECT_EQ(t.service_name, "edge-gw");
    EXPECT_EQ(t.sample_ratio, 0.25);
    EXPECT_FALSE(t.parent_based);
    EXPECT_EQ(t.schedule_delay_ms.count(), 200);
    EXPECT_EQ(t.max_queue_spans, 100);
    EXPECT_EQ(t.max_batch_spans, 10);
    EXPECT_EQ(t.export_timeout_ms.count(), 3000);

    auto file = load_config_text(
        minimal(R"(, "tracing": {"otlp_endpoint": "https://otlp.example.com/v1/traces", "sample_ratio": 0.5, "parent_based": true})"),
        env
    );
    ASSERT_TRUE(file.ok()) << all(file);
    EXPECT_EQ(file.config->tracing.otlp_endpoint, "https://otlp.example.com/v1/traces") << "the file wins";
    EXPECT_EQ(file.config->tracing.sample_ratio, 0.5);
    EXPECT_EQ(file.config->tracing.service_name, "edge-gw") << "what the file leaves is the environment's";
    auto t2 = parse_otlp_endpoint(file.config->tracing.otlp_endpoint);
    ASSERT_TRUE(t2);
    EXPECT_TRUE(t2->tls);
    EXPECT_EQ(t2->port, 443);
    EXPECT_EQ(t2->target, "/v1/traces");

    auto traces_only = load_config_text(minimal(), fake_env({{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/custom"}}));
    ASSERT_TRUE(traces_only.ok());
    EXPECT_EQ(traces_only.config->tracing.otlp_endpoint, "http://c:4318/custom") << "used as it is";
    auto disabled = load_config_text(
        minimal(), fake_env({{"OTEL_SDK_DISABLED", "true"}, {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"}})
    );
    ASSERT_TRUE(disabled.ok());
    EXPECT_EQ(disabled.config->tracing.otlp_endpoint, "");
}

TEST(ConfigLoader, EachBadTracingSettingIsNamed)
{
    auto grpc = load_config_text(minimal(), fake_env({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"}, {"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"}}));
    EXPECT_TRUE(has_problem(grpc, "environment: OTEL_EXPORTER_OTLP_PROTOCOL is 'grpc': only OTLP over HTTP (http/json, http/protobuf) is supported")) << all(grpc);
    auto sampler = load_config_text(minimal(), fake_env({{"OTEL_TRACES_SAMPLER", "sometimes"}}));
    EXPECT_FALSE(sampler.ok());
    auto ratio = load_config_text(minimal(), fake_env({{"OTEL_TRACES_SAMPLER", "traceidratio"}, {"OTEL_TRACES_SAMPLER_ARG", "2"}}));
    EXPECT_TRUE(has_problem(ratio, "environment: OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1")) << all(ratio);
    auto delay = load_config_text(minimal(), fake_env({{"OTEL_BSP_SCHEDULE_DELAY", "soon"}}));
    EXPECT_FALSE(delay.ok());
    auto headers = load_config_text(minimal(), fake_env({{"OTEL_EXPORTER_OTLP_HEADERS", "novalue"}}));
    EXPECT_FALSE(headers.ok());
    auto split = load_config_text(minimal(), fake_env({{"OTEL_EXPORTER_OTLP_HEADERS", "x=a%0D%0AEvil: 1"}}));
    EXPECT_TRUE(has_problem(split, "tracing.headers: 'x' is not a valid header")) << "a decoded CR/LF never reaches a request: " << all(split);
    auto traces_protocol = load_config_text(
        minimal(), fake_env({{"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"}, {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"}})
    );
    EXPECT_TRUE(traces_protocol.ok()) << "the traces-specific protocol overrides: " << all(traces_protocol);
    auto batch = load_config_text(minimal(R"(, "tracing": {"max_queue_spans": 10, "max_batch_spans": 20})"), fake_env({}));
    EXPECT_TRUE(has_problem(batch, "tracing.max_batch_spans: must not be more than max_queue_spans")) << all(batch);
    auto env_url = load_config_text(minimal(), fake_env({{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4318"}}));
    EXPECT_FALSE(env_url.ok()) << "an endpoint from the environment is checked too";
    auto bad = load_config_text(
        minimal(R"(, "tracing": {"otlp_endpoint": "ftp://x/v1/traces", "sample_ratio": 3, "headers": {"a b": "c", "d": 1}, "colour": 1})"),
        fake_env({})
    );
    EXPECT_TRUE(has_problem(bad, "tracing.otlp_endpoint: 'ftp://x/v1/traces' is not an http:// or https:// URL")) << all(bad);
    EXPECT_TRUE(has_problem(bad, "tracing.headers.d: must be a string")) << all(bad);
    EXPECT_TRUE(has_problem(bad, "tracing.headers: 'a b' is not a valid header")) << all(bad);
    EXPECT_TRUE(has_problem(bad, "tracing.colour: unknown key")) << all(bad);
    EXPECT_EQ(bad.problems.size(), 5u) << all(bad);
}

} // namespace
} // namespace gw::config
