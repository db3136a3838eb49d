#include "gateway/ops/metrics.hpp"

#include "core/text.hpp"
#include "gateway/ops/spawn.hpp"

#include <cstdio>

namespace gw::gateway {

void histogram::observe(double seconds)
{
    for (std::size_t i = 0; i < latency_buckets.size(); ++i)
        if (seconds <= latency_buckets[i]) {
            ++counts[i];
            break;
        }
    ++count;
    sum += seconds;
}

void histogram::add(const histogram& o)
{
    for (std::size_t i = 0; i < counts.size(); ++i) counts[i] += o.counts[i];
    count += o.count;
    sum += o.sum;
}

void metrics_shard::add(const metrics_shard& o)
{
    for (const auto& [k, v] : o.requests) requests[k] += v;
    for (const auto& [k, v] : o.duration) duration[k].add(v);
    for (const auto& [k, v] : o.ttfb) ttfb[k].add(v);
    for (const auto& [k, v] : o.active_streams) active_streams[k] += v;
    for (const auto& [k, v] : o.rate_limited) rate_limited[k] += v;
    for (const auto& [k, v] : o.retries) retries[k] += v;
    for (const auto& [k, v] : o.tokens) tokens[k] += v;
}

namespace {

// Label values escaped per the text format (\\, \", \n).
std::string esc(const std::string& v)
{
    std::string out;
    for (char c : v) {
        if (c == '\\' || c == '"') out.push_back('\\');
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out.push_back(c);
    }
    return out;
}

std::string num(double v)
{
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}

void header(std::string& out, const char* name, const char* type, const char* help)
{
    out += std::string("# HELP dify_gateway_") + name + " " + help + "\n# TYPE dify_gateway_" + name + " " + type + "\n";
}

void histograms(std::string& out, const char* name, const char* help, const std::map<metrics_shard::tenant_app, histogram>& hs)
{
    header(out, name, "histogram", help);
    for (const auto& [k, h] : hs) {
        std::string labels = "tenant=\"" + esc(k.first) + "\",app=\"" + esc(k.second) + "\"";
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i < latency_buckets.size(); ++i) {
            cumulative += h.counts[i];
            out += std::string("dify_gateway_") + name + "_bucket{" + labels + ",le=\"" + num(latency_buckets[i]) + "\"} " +
                   std::to_string(cumulative) + "\n";
        }
        out += std::string("dify_gateway_") + name + "_bucket{" + labels + ",le=\"+Inf\"} " + std::to_string(h.count) + "\n";
        out += std::string("dify_gateway_") + name + "_sum{" + labels + "} " + num(h.sum) + "\n";
        out += std::string("dify_gateway_") + name + "_count{" + labels + "} " + std::to_string(h.count) + "\n";
    }
}

} // namespace

std::string render_metrics(const metrics_shard& m, const std::vector<upstream_view>& upstreams, const store_counters& store)
{
    std::string out;
    header(out, "requests_total", "counter", "Requests answered, by tenant, app, endpoint and status.");
    for (const auto& [k, v] : m.requests)
        out += "dify_gateway_requests_total{tenant=\"" + esc(std::get<0>(k)) + "\",app=\"" + esc(std::get<1>(k)) +
               "\",endpoint=\"" + esc(std::get<2>(k)) + "\",status=\"" + std::to_string(std::get<3>(k)) + "\"} " +
               std::to_string(v) + "\n";
    histograms(out, "request_duration_seconds", "Time from the request's header to the end of its response.", m.duration);
    histograms(out, "time_to_first_byte_seconds", "Time to the first byte of a streamed response.", m.ttfb);
    header(out, "active_streams", "gauge", "SSE streams being relayed, by tenant.");
    for (const auto& [k, v] : m.active_streams) out += "dify_gateway_active_streams{tenant=\"" + esc(k) + "\"} " + std::to_string(v) + "\n";
    header(out, "rate_limited_total", "counter", "Requests refused by a quota, by tenant and reason.");
    for (const auto& [k, v] : m.rate_limited)
        out += "dify_gateway_rate_limited_total{tenant=\"" + esc(k.first) + "\",reason=\"" + esc(k.second) + "\"} " + std::to_string(v) + "\n";
    header(out, "task_failures_total", "counter", "Background tasks and sessions ended by an unexpected error (logged).");
    out += "dify_gateway_task_failures_total " + std::to_string(task_failures()) + "\n";
    header(out, "upstream_retries_total", "counter", "Retried upstream attempts, by upstream and reason.");
    for (const auto& [k, v] : m.retries)
        out += "dify_gateway_upstream_retries_total{upstream=\"" + esc(k.first) + "\",reason=\"" + esc(k.second) + "\"} " +
               std::to_string(v) + "\n";
    header(out, "upstream_connections", "gauge", "Open upstream connections, by upstream and state.");
    for (const auto& u : upstreams) {
        out += "dify_gateway_upstream_connections{upstream=\"" + esc(u.name) + "\",state=\"active\"} " + std::to_string(u.active) + "\n";
        out += "dify_gateway_upstream_connections{upstream=\"" + esc(u.name) + "\",state=\"idle\"} " + std::to_string(u.idle) + "\n";
    }
    header(out, "upstream_connects_total", "counter", "New upstream connections (TLS handshakes for https).");
    for (const auto& u : upstreams)
        out += "dify_gateway_upstream_connects_total{upstream=\"" + esc(u.name) + "\"} " + std::to_string(u.connects) + "\n";
    header(out, "upstream_tls_resumed_total", "counter", "New upstream TLS connections that resumed a session (abbreviated handshake).");
    for (const auto& u : upstreams)
        out += "dify_gateway_upstream_tls_resumed_total{upstream=\"" + esc(u.name) + "\"} " + std::to_string(u.resumed) + "\n";
    header(out, "upstream_circuit_open", "gauge", "Workers whose circuit breaker for the upstream is open.");
    for (const auto& u : upstreams)
        out += "dify_gateway_upstream_circuit_open{upstream=\"" + esc(u.name) + "\"} " + (u.circuit_open ? "1" : "0") + "\n";
    header(out, "tokens_total", "counter", "LLM tokens Dify reported, by tenant and app.");
    for (const auto& [k, v] : m.tokens)
        out += "dify_gateway_tokens_total{tenant=\"" + esc(k.first) + "\",app=\"" + esc(k.second) + "\"} " + std::to_string(v) + "\n";
    header(out, "quota_store_errors_total", "counter", "Quota store calls that failed (Redis slow or down).");
    out += "dify_gateway_quota_store_errors_total " + std::to_string(store.errors.load()) + "\n";
    header(out, "quota_store_pending_writes", "gauge", "Settlements, lease releases and ownership records not yet in Redis.");
    out += "dify_gateway_quota_store_pending_writes " + std::to_string(std::max<std::int64_t>(0, store.writes_pending.load())) + "\n";
    header(out, "quota_store_retried_writes_total", "counter", "Background writes sent again after Redis failed to take them.");
    out += "dify_gateway_quota_store_retried_writes_total " + std::to_string(store.writes_retried.load()) + "\n";
    header(out, "quota_store_dropped_writes_total", "counter", "Background writes given up (Redis away for minutes, or refused them).");
    out += "dify_gateway_quota_store_dropped_writes_total " + std::to_string(store.writes_dropped.load()) + "\n";
    return out;
}

std::string endpoint_label(const core::dify_route* route)
{
    if (!route) return "unknown";
    return std::string(route->method) + " " + std::string(route->pattern);
}

} // namespace gw::gateway
