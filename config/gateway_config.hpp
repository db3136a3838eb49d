// The gateway's configuration as plain structs with defaults, typed: durations are
// std::chrono durations (the JSON key names the unit: _ms, _s), closed sets are enums.
// Filled and checked once by config/loader; nothing downstream parses a setting again.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gw::config {

using std::chrono::milliseconds;
using std::chrono::seconds;

// The names of each enum's values, in order (as written in the JSON config).
enum class log_level { trace, debug, info, warn, error, critical, off };
inline constexpr std::array<std::string_view, 7> log_level_names{"trace", "debug",    "info", "warn",
                                                                 "error", "critical", "off"};
enum class log_format { json, text };
inline constexpr std::array<std::string_view, 2> log_format_names{"json", "text"};
enum class store_kind { memory, redis };
inline constexpr std::array<std::string_view, 2> store_kind_names{"memory", "redis"};
// What an admission does when the shared store cannot answer in time: admit, refuse
// (503), or decide with this process's own counters.
enum class store_error_policy { allow, deny, local };
inline constexpr std::array<std::string_view, 3> store_error_policy_names{"allow", "deny", "local"};

template <typename Enum, std::size_t N>
constexpr std::string_view name_of(Enum e, const std::array<std::string_view, N>& names)
{
    return names[static_cast<std::size_t>(e)];
}

struct server_config
{
    std::string listen = "0.0.0.0:8080";
    int threads = 0; // 0 = one worker per core
    std::int64_t max_request_body_bytes = 16 * 1024 * 1024;
    std::int64_t max_header_bytes = 16 * 1024;
    milliseconds client_header_timeout_ms{10'000};
    milliseconds client_idle_timeout_ms{75'000};
    milliseconds drain_timeout_ms{30'000};
    // While draining, a keep-alive connection stays open this long after its last reply, so
    // a request a proxy already sent on it is served (with `Connection: close`) instead of
    // meeting a closed socket. A proxy in front should drop idle connections sooner.
    milliseconds drain_idle_grace_ms{5'000};
    milliseconds client_send_timeout_ms{60'000}; // a client that takes longer to accept one write is dropped
    bool forward_unknown_routes =
        false; // routes not in the route table: 404, or forwarded with `user` namespaced
    std::vector<std::string> trusted_proxies; // peers (IPs) whose X-Forwarded-For names the client
    int max_connections_per_worker = 10'000;  // client connections one worker serves at once
    int max_connections_per_client = 1'000;   // from one peer address (trusted proxies exempt); 0 = no limit
    bool operator==(const server_config&) const = default;
};

struct admin_config
{
    std::string listen = "127.0.0.1:9901";
    // Needed for /admin/usage and /admin/reload when set (plain or "sha256:<hex>"); without
    // it those answer only callers on the same host. Health, readiness, metrics stay open.
    std::string token;
    bool operator==(const admin_config&) const = default;
};

struct log_config
{
    log_level level = log_level::info;
    log_format format = log_format::json;
    bool access_log = true;
};

struct retry_config
{
    int max_attempts = 3;
    milliseconds base_delay_ms{100};
    milliseconds max_delay_ms{2'000};
    int budget_percent = 20;
    bool operator==(const retry_config&) const = default;
};

struct circuit_breaker_config
{
    int failures = 5;            // consecutive failures that open the circuit
    milliseconds open_ms{5'000}; // how long it stays open before a probe
    bool operator==(const circuit_breaker_config&) const = default;
};

struct upstream_config
{
    std::string url;     // http:// or https:// (required)
    std::string ca_file; // "" = system trust store
    bool verify_tls = true;
    int max_connections = 256;
    // Connections a worker's requests open at once (connect and TLS handshake); more requests
    // needing one wait for one of these or for a release. Bounds what a burst of new streams
    // holds while it waits for handshakes (each holds OpenSSL's handshake buffers, ~40 KiB),
    // and so the rate of new connections: at most max_connecting per connection set-up time
    // (256 per 100 ms is 2,560 a second per worker).
    int max_connecting = 256;
    double preconnect_ratio = 1.0; // > 1: keep ratio × recently leased connections open ahead of demand
    milliseconds idle_timeout_ms{50'000};
    milliseconds connect_timeout_ms{3'000};
    milliseconds response_timeout_ms{100'000};
    milliseconds stream_idle_timeout_ms{60'000};
    std::int64_t max_sse_event_bytes = 1024 * 1024; // a larger event ends the stream with an error event
    retry_config retry;
    circuit_breaker_config circuit_breaker;

    // Derived from `url` by validation.
    bool tls = true;
    std::string host;
    std::uint16_t port = 443;
    std::string base_path; // path prefix without trailing '/', usually ""
    bool operator==(const upstream_config&) const = default;
};

// How the OpenAI-compatible front (/openai/v1) calls an app. chat covers Dify's chat,
// agent and chatflow apps (the newest user message is the query); workflow and
// completion apps take the message text in an input variable.
enum class openai_app_kind { chat, workflow, completion };
inline constexpr std::array<std::string_view, 3> openai_app_kind_names{"chat", "workflow", "completion"};

struct openai_app_config
{
    openai_app_kind type = openai_app_kind::chat;
    std::string instructions_input; // the inputs variable system messages go to ("" = dropped)
    std::string text_input;         // workflow / completion: the inputs variable for the text ("" = "query")
    std::string output;             // workflow: the output variable that is the answer ("" = the only one)
    // A history the gateway has not seen (edited, or forgotten): the prior turns go into
    // the new conversation's first query as context (true), or are left out (false).
    bool unknown_history_as_context = true;
};

struct app_config
{
    std::string upstream = "dify";
    std::vector<std::string> api_keys;
    int max_concurrent = 0; // 0 = unlimited
    openai_app_config openai{};
};

struct rate_config
{
    double requests_per_second = 0;
    double burst = 0; // 0 = max(1, requests_per_second)
};

struct tenant_config
{
    std::vector<std::string> keys; // plaintext or "sha256:<hex>"
    std::vector<std::string> apps;
    std::vector<std::string>
        admin_apps;          // apps whose app-wide routes (logs, feedbacks, annotations) this tenant may use
    std::string default_app; // "" = the only app, when there is exactly one
    std::optional<rate_config> rate;
    int max_concurrent = 0;          // 0 = unlimited
    std::int64_t tokens_per_day = 0; // 0 = unlimited
};

struct quota_store_config
{
    store_kind type = store_kind::memory;
    std::string url; // redis://host:port/db
    milliseconds timeout_ms{20};
    store_error_policy on_error = store_error_policy::allow;
    seconds ownership_ttl_s{
        604'800}; // how long the tenant that created a task/conversation/run/file is remembered
    int ownership_max_entries =
        200'000; // records kept in each process (oldest go first); 42 bytes each, allocated at start
    // A concurrency lease expires this long after its last renewal (a replica that died
    // cannot hold slots longer); a running request renews its lease every third of it.
    seconds lease_ttl_s{60};
    // rediss:// only: the CA bundle ("" = system trust store), whether to verify the server
    // (chain and name), the name to verify and send as SNI instead of the host Redis is
    // reached at (Cluster nodes announce IP addresses), and a client certificate and key
    // for servers that require one (Redis' tls-auth-clients).
    std::string ca_file;
    bool verify_tls = true;
    std::string tls_server_name;
    std::string cert_file;
    std::string key_file;
    // Redis Sentinel: the sentinels to ask ("HOST:PORT", tried in turn). With them the URL's
    // host is the master's name as the sentinels know it (its port is not used); the URL's
    // credentials, database and scheme are the master's, and the sentinels are reached the
    // same way (rediss:// = TLS, with the settings above) with credentials of their own.
    std::vector<std::string> sentinels;
    std::string sentinel_username; // "" = the default user
    std::string sentinel_password; // "" = no AUTH
    bool operator==(const quota_store_config&) const = default;
};

// Traces: W3C trace context in and out always; spans exported over OTLP/HTTP (JSON) only
// when an endpoint is set (here or by OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT).
struct tracing_config
{
    std::string otlp_endpoint;                  // the traces URL, http(s)://host:port/v1/traces; "" = no export
    std::map<std::string, std::string> headers; // sent with every export (e.g. an API key)
    std::string service_name = "dify-gateway";
    double sample_ratio = 1.0; // traces the gateway starts: the share sampled
    bool parent_based = true;  // a caller's sampled flag decides for its trace
    milliseconds export_timeout_ms{10'000};
    milliseconds schedule_delay_ms{5'000}; // a worker's spans are sent at least this often
    int max_queue_spans = 2'048;           // per worker; spans beyond it are dropped (and counted)
    int max_batch_spans = 512;             // spans per export request
    bool operator==(const tracing_config&) const = default;
};

struct gateway_config
{
    server_config server;
    admin_config admin;
    log_config log;
    std::map<std::string, upstream_config> upstreams;
    std::map<std::string, app_config> apps;
    std::map<std::string, tenant_config> tenants;
    quota_store_config quota_store;
    tracing_config tracing;
};

} // namespace gw::config
