#include "config/loader.hpp"

#include "config/json_reader.hpp"
#include "config/tracing.hpp"
#include "config/validate.hpp"

#include <boost/json/parse_options.hpp>
#include <boost/json/stream_parser.hpp>

#include <fstream>
#include <sstream>

namespace gw::config {

namespace json = boost::json;

namespace {

// Parses JSONC; on a syntax error records "line L, column C: <reason>".
std::optional<json::value> parse_jsonc(std::string_view text, problems& out)
{
    json::parse_options opts;
    opts.allow_comments = true;
    opts.allow_trailing_commas = true;
    json::stream_parser p({}, opts);
    json::error_code ec;
    std::size_t used = p.write_some(text.data(), text.size(), ec);
    if (!ec && used < text.size()) ec = json::error::extra_data;
    if (!ec) p.finish(ec);
    if (ec) {
        std::size_t line = 1, col = 1;
        for (std::size_t i = 0; i < used && i < text.size(); ++i) {
            if (text[i] == '\n') {
                ++line;
                col = 1;
            } else {
                ++col;
            }
        }
        out.add("", "line " + std::to_string(line) + ", column " + std::to_string(col) + ": " + ec.message());
        return std::nullopt;
    }
    return p.release();
}

constexpr std::int64_t max_ms = 24LL * 3600 * 1000; // one day
constexpr std::int64_t max_bytes = 1LL << 40;

void read_server(json_reader r, server_config& c)
{
    r.get("listen", c.listen);
    r.get("threads", c.threads, 0, 1024);
    r.get("max_request_body_bytes", c.max_request_body_bytes, 1, max_bytes);
    r.get("max_header_bytes", c.max_header_bytes, 1024, 1024 * 1024);
    r.get("client_header_timeout_ms", c.client_header_timeout_ms, 1, max_ms);
    r.get("client_idle_timeout_ms", c.client_idle_timeout_ms, 1, max_ms);
    r.get("drain_timeout_ms", c.drain_timeout_ms, 0, max_ms);
    r.get("drain_idle_grace_ms", c.drain_idle_grace_ms, 0, max_ms);
    r.get("client_send_timeout_ms", c.client_send_timeout_ms, 1, max_ms);
    r.get("forward_unknown_routes", c.forward_unknown_routes);
    r.get("trusted_proxies", c.trusted_proxies);
    r.get("max_connections_per_worker", c.max_connections_per_worker, 1, 1'000'000);
    r.get("max_connections_per_client", c.max_connections_per_client, 0, 1'000'000);
    r.finish();
}

void read_retry(json_reader r, retry_config& c)
{
    r.get("max_attempts", c.max_attempts, 1, 10);
    r.get("base_delay_ms", c.base_delay_ms, 0, max_ms);
    r.get("max_delay_ms", c.max_delay_ms, 0, max_ms);
    r.get("budget_percent", c.budget_percent, 0, 100);
    r.finish();
}

void read_upstream(json_reader r, upstream_config& c, problems& out)
{
    r.get("url", c.url, true);
    r.get("ca_file", c.ca_file);
    r.get("verify_tls", c.verify_tls);
    r.get("max_connections", c.max_connections, 1, 100'000);
    r.get("max_connecting", c.max_connecting, 1, 100'000);
    r.get("preconnect_ratio", c.preconnect_ratio, 1.0, 3.0);
    r.get("idle_timeout_ms", c.idle_timeout_ms, 1, max_ms);
    r.get("connect_timeout_ms", c.connect_timeout_ms, 1, max_ms);
    r.get("response_timeout_ms", c.response_timeout_ms, 1, max_ms);
    r.get("stream_idle_timeout_ms", c.stream_idle_timeout_ms, 1, max_ms);
    r.get("max_sse_event_bytes", c.max_sse_event_bytes, 1024, 1LL << 30);
    if (auto* v = r.member("retry")) read_retry(json_reader(*v, child_path(r.path(), "retry"), out), c.retry);
    if (auto* v = r.member("circuit_breaker")) {
        json_reader cb(*v, child_path(r.path(), "circuit_breaker"), out);
        cb.get("failures", c.circuit_breaker.failures, 1, 1000);
        cb.get("open_ms", c.circuit_breaker.open_ms, 1, max_ms);
        cb.finish();
    }
    r.finish();
}

void read_app(json_reader r, app_config& c, problems& out)
{
    r.get("upstream", c.upstream);
    r.get("api_keys", c.api_keys, true);
    r.get("max_concurrent", c.max_concurrent, 0, 1'000'000);
    if (auto* v = r.member("openai")) {
        json_reader o(*v, child_path(r.path(), "openai"), out);
        o.get("type", c.openai.type, openai_app_kind_names);
        o.get("instructions_input", c.openai.instructions_input);
        o.get("text_input", c.openai.text_input);
        o.get("output", c.openai.output);
        o.get("unknown_history_as_context", c.openai.unknown_history_as_context);
        o.finish();
    }
    r.finish();
}

void read_tenant(json_reader r, tenant_config& c, problems& out)
{
    r.get("keys", c.keys, true);
    r.get("apps", c.apps, true);
    r.get("admin_apps", c.admin_apps);
    r.get("default_app", c.default_app);
    if (auto* v = r.member("rate")) {
        json_reader rr(*v, child_path(r.path(), "rate"), out);
        rate_config rate;
        rr.get("requests_per_second", rate.requests_per_second, 0, 1e9);
        rr.get("burst", rate.burst, 0, 1e9);
        if (!rr.has("requests_per_second") && rr.ok()) out.add(child_path(rr.path(), "requests_per_second"), "is required");
        rr.finish();
        c.rate = rate;
    }
    r.get("max_concurrent", c.max_concurrent, 0, 1'000'000);
    r.get("tokens_per_day", c.tokens_per_day, 0, INT64_MAX / 2);
    r.finish();
}

void read_quota_store(json_reader r, quota_store_config& c)
{
    const bool known_type = r.get("type", c.type, store_kind_names);
    r.get("url", c.url);
    if (!known_type) c.url.clear(); // a store of unknown type: its URL is not checked as well
    r.get("timeout_ms", c.timeout_ms, 1, 60'000);
    r.get("on_error", c.on_error, store_error_policy_names);
    r.get("ownership_ttl_s", c.ownership_ttl_s, 60, 31'536'000);
    r.get("ownership_max_entries", c.ownership_max_entries, 1'000, 100'000'000);
    r.get("lease_ttl_s", c.lease_ttl_s, 5, 86'400);
    r.get("ca_file", c.ca_file);
    r.get("verify_tls", c.verify_tls);
    r.get("tls_server_name", c.tls_server_name);
    r.get("cert_file", c.cert_file);
    r.get("key_file", c.key_file);
    r.get("sentinels", c.sentinels);
    r.get("sentinel_username", c.sentinel_username);
    r.get("sentinel_password", c.sentinel_password);
    r.finish();
}

// Reads an object whose members are named entries ("upstreams", "apps", "tenants").
template <typename T, typename ReadFn>
void read_named(const json::value* v, const std::string& path, std::map<std::string, T>& out, problems& p, ReadFn read)
{
    if (!v) return;
    if (!v->is_object()) {
        p.add(path, "must be an object");
        return;
    }
    for (const auto& [name, member] : v->get_object()) {
        T item;
        read(json_reader(member, child_path(path, name), p), item);
        out.emplace(std::string(name), std::move(item));
    }
}

} // namespace

load_result load_config_text(std::string_view text, const env_lookup& env)
{
    load_result result;
    problems p;
    auto doc = parse_jsonc(text, p);
    if (doc) expand_env(*doc, env, p);
    if (doc) {
        gateway_config c;
        json_reader root(*doc, "", p);
        if (auto* v = root.member("server")) read_server(json_reader(*v, "server", p), c.server);
        if (auto* v = root.member("admin")) {
            json_reader r(*v, "admin", p);
            r.get("listen", c.admin.listen);
            r.get("token", c.admin.token);
            r.finish();
        }
        if (auto* v = root.member("log")) {
            json_reader r(*v, "log", p);
            r.get("level", c.log.level, log_level_names);
            r.get("format", c.log.format, log_format_names);
            r.get("access_log", c.log.access_log);
            r.finish();
        }
        read_named(root.member("upstreams"), "upstreams", c.upstreams, p, [&](json_reader r, upstream_config& u) {
            read_upstream(std::move(r), u, p);
        });
        read_named(root.member("apps"), "apps", c.apps, p, [&](json_reader r, app_config& a) { read_app(std::move(r), a, p); });
        read_named(root.member("tenants"), "tenants", c.tenants, p, [&](json_reader r, tenant_config& t) {
            read_tenant(std::move(r), t, p);
        });
        if (auto* v = root.member("quota_store")) read_quota_store(json_reader(*v, "quota_store", p), c.quota_store);
        apply_otel_env(c.tracing, env, p); // the environment first: the file's keys win
        if (auto* v = root.member("tracing")) read_tracing(json_reader(*v, "tracing", p), c.tracing, p);
        check_tracing(c.tracing, p);
        root.finish();
        validate(c, p);
        if (p.empty()) result.config = std::move(c);
    }
    result.problems = p.list();
    return result;
}

load_result load_config_file(const std::string& path, const env_lookup& env)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        load_result r;
        r.problems.push_back(path + ": cannot open file");
        return r;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    return load_config_text(ss.str(), env);
}

} // namespace gw::config
