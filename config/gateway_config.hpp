// The gateway's configuration as plain structs with defaults.
// Filled by config/loader from JSON; every duration is in milliseconds, as its key says.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace gw::config {

struct server_config
{
    std::string listen = "0.0.0.0:8080";
    int threads = 0; // 0 = one worker per core
    std::int64_t max_request_body_bytes = 16 * 1024 * 1024;
    std::int64_t max_header_bytes = 16 * 1024;
    std::int64_t client_header_timeout_ms = 10'000;
    std::int64_t client_idle_timeout_ms = 75'000;
    std::int64_t drain_timeout_ms = 30'000;
    std::int64_t client_send_timeout_ms = 60'000; // a client that takes longer to accept one write is dropped
    bool forward_unknown_routes = false;          // routes not in the route table: 404, or forwarded with `user` namespaced
    std::vector<std::string> trusted_proxies; // peers (IPs) whose X-Forwarded-For names the client
    int max_connections_per_worker = 10'000;  // client connections one worker serves at once
    int max_connections_per_client = 1'000;   // from one peer address (trusted proxies exempt); 0 = no limit
    bool operator==(const server_config&) const = default;
};

struct admin_config
{
    std::string listen = "127.0.0.1:9901";
    bool operator==(const admin_config&) const = default;
};

struct log_config
{
    std::string level = "info";  // trace, debug, info, warn, error, critical, off
    std::string format = "json"; // json or text
    bool access_log = true;
};

struct retry_config
{
    int max_attempts = 3;
    std::int64_t base_delay_ms = 100;
    std::int64_t max_delay_ms = 2'000;
    int budget_percent = 20;
};

struct circuit_breaker_config
{
    int failures = 5;                 // consecutive failures that open the circuit
    std::int64_t open_ms = 5'000;     // how long it stays open before a probe
};

struct upstream_config
{
    std::string url;          // http:// or https:// (required)
    std::string ca_file;      // "" = system trust store
    bool verify_tls = true;
    int max_connections = 256;
    std::int64_t idle_timeout_ms = 50'000;
    std::int64_t connect_timeout_ms = 3'000;
    std::int64_t response_timeout_ms = 100'000;
    std::int64_t stream_idle_timeout_ms = 60'000;
    std::int64_t max_sse_event_bytes = 1024 * 1024; // a larger event ends the stream with an error event
    retry_config retry;
    circuit_breaker_config circuit_breaker;

    // Derived from `url` by validation.
    bool tls = true;
    std::string host;
    std::uint16_t port = 443;
    std::string base_path; // path prefix without trailing '/', usually ""
};

struct app_config
{
    std::string upstream = "dify";
    std::vector<std::string> api_keys;
    int max_concurrent = 0; // 0 = unlimited
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
    std::vector<std::string> admin_apps; // apps whose app-wide routes (logs, feedbacks, annotations) this tenant may use
    std::string default_app;       // "" = the only app, when there is exactly one
    std::optional<rate_config> rate;
    int max_concurrent = 0;        // 0 = unlimited
    std::int64_t tokens_per_day = 0; // 0 = unlimited
};

struct quota_store_config
{
    std::string type = "memory"; // memory or redis
    std::string url;             // redis://host:port/db
    std::int64_t timeout_ms = 20;
    std::string on_error = "allow"; // allow, deny, local
    std::int64_t ownership_ttl_s = 604'800; // how long the tenant that created a task/conversation/run/file is remembered
    int ownership_max_entries = 200'000;     // records kept in each process (oldest go first); 42 bytes each, allocated at start
    // A concurrency lease expires this long after its last renewal (a replica that died
    // cannot hold slots longer); a running request renews its lease every third of it.
    std::int64_t lease_ttl_s = 60;
    // rediss:// only: the CA bundle ("" = system trust store), whether to verify the server
    // (chain and name), the name to verify and send as SNI instead of the host Redis is
    // reached at (Cluster nodes announce IP addresses), and a client certificate and key
    // for servers that require one (Redis' tls-auth-clients).
    std::string ca_file;
    bool verify_tls = true;
    std::string tls_server_name;
    std::string cert_file;
    std::string key_file;
    bool operator==(const quota_store_config&) const = default;
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
};

} // namespace gw::config
