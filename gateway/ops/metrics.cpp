#include "gateway/ops/metrics.hpp"

#include "gateway/ops/span_exporter.hpp"

#include "core/text.hpp"
#include "gateway/ops/metric_names.hpp"
#include "gateway/ops/spawn.hpp"

#include <algorithm>
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
    for (std::size_t i = 0; i < counts.size(); ++i)
        counts[i] += o.counts[i];
    count += o.count;
    sum += o.sum;
}

void metrics_shard::pair_figures::count_request(std::uint16_t endpoint, int status)
{
    const auto key = static_cast<std::uint32_t>(endpoint) * 1000 + static_cast<std::uint32_t>(status);
    for (auto& [k, n] : requests)
        if (k == key) {
            ++n;
            return;
        }
    requests.emplace_back(key, 1);
}

void metrics_shard::add(const metrics_shard& o)
{
    for (std::uint32_t id = 0; id < o.pairs.size(); ++id) {
        const auto& from = o.pairs[id];
        auto& to = pair(id);
        for (const auto& [key, n] : from.requests) {
            auto it = std::find_if(to.requests.begin(), to.requests.end(), [key = key](const auto& e) {
                return e.first == key;
            });
            if (it == to.requests.end())
                to.requests.emplace_back(key, n);
            else
                it->second += n;
        }
        to.duration.add(from.duration);
        to.ttfb.add(from.ttfb);
        to.tokens += from.tokens;
    }
    for (std::uint32_t id = 0; id < o.tenants.size(); ++id) {
        const auto& from = o.tenants[id];
        auto& to = tenant(id);
        to.streamed = to.streamed || from.streamed;
        to.active_streams += from.active_streams;
        for (std::size_t r = 0; r < quota_reason_count; ++r)
            to.rate_limited[r] += from.rate_limited[r];
    }
    for (std::uint32_t id = 0; id < o.upstreams.size(); ++id)
        for (std::size_t r = 0; r < core::upstream_failure_count; ++r)
            upstream(id).retries[r] += o.upstreams[id].retries[r];
}

std::uint16_t endpoint_id(const core::dify_route* route)
{
    return route ? static_cast<std::uint16_t>(route - core::all_routes().data() + 2) : 1;
}

const core::dify_route* route_of_endpoint(std::uint16_t endpoint)
{
    return endpoint >= 2 && endpoint - 2u < core::all_routes().size() ? &core::all_routes()[endpoint - 2u] : nullptr;
}

std::string endpoint_label(std::uint16_t endpoint)
{
    std::string label;
    append_endpoint_label(label, endpoint);
    return label;
}

void append_endpoint_label(std::string& out, std::uint16_t endpoint)
{
    if (endpoint == no_endpoint) return;
    const auto* route = route_of_endpoint(endpoint);
    if (!route) {
        out.append("unknown");
        return;
    }
    out.append(route->method).append(1, ' ').append(route->pattern);
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

// A bucket bound as written in `le` ("0.005", not "0.0050000000000000001").
std::string bound(double v)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

void header(std::string& out, const char* name, const char* type, const char* help)
{
    out += std::string("# HELP dify_gateway_") + name + " " + help + "\n# TYPE dify_gateway_" + name + " " +
           type + "\n";
}

std::string pair_labels(const std::pair<std::string, std::string>& names)
{
    return "tenant=\"" + esc(names.first) + "\",app=\"" + esc(names.second) + "\"";
}

void histograms(
    std::string& out,
    const char* name,
    const char* help,
    const metrics_shard& m,
    const metric_names::labels& names,
    histogram metrics_shard::pair_figures::*which
)
{
    header(out, name, "histogram", help);
    for (std::uint32_t id = 0; id < m.pairs.size(); ++id) {
        const histogram& h = m.pairs[id].*which;
        if (h.count == 0) continue;
        std::string labels = pair_labels(names.pairs[id]);
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i < latency_buckets.size(); ++i) {
            cumulative += h.counts[i];
            out += std::string("dify_gateway_") + name + "_bucket{" + labels + ",le=\"" +
                   bound(latency_buckets[i]) + "\"} " + std::to_string(cumulative) + "\n";
        }
        out += std::string("dify_gateway_") + name + "_bucket{" + labels + ",le=\"+Inf\"} " +
               std::to_string(h.count) + "\n";
        out += std::string("dify_gateway_") + name + "_sum{" + labels + "} " + num(h.sum) + "\n";
        out +=
            std::string("dify_gateway_") + name + "_count{" + labels + "} " + std::to_string(h.count) + "\n";
    }
}

} // namespace

namespace {

// dify_gateway_tenant_quota_limit / _remaining, one line per tenant and quota it has.
void quota_gauges(std::string& out, const std::vector<tenant_quota_line>& quotas)
{
    auto line = [&out](const char* name, const std::string& tenant, const char* quota, double v) {
        if (v >= 0)
            out += std::string("dify_gateway_") + name + "{tenant=\"" + esc(tenant) + "\",quota=\"" + quota + "\"} " +
                   num(v) + "\n";
    };
    header(out, "tenant_quota_limit", "gauge", "A tenant's configured limits: rate (per second), burst, concurrency, tokens_per_day.");
    for (const auto& q : quotas) {
        line("tenant_quota_limit", q.tenant, "rate", q.quota.rate_per_second);
        line("tenant_quota_limit", q.tenant, "burst", q.quota.burst);
        line("tenant_quota_limit", q.tenant, "concurrency", static_cast<double>(q.quota.max_concurrent));
        line("tenant_quota_limit", q.tenant, "tokens_per_day", static_cast<double>(q.quota.tokens_per_day));
    }
    header(out, "tenant_quota_remaining", "gauge", "What is left of a tenant's limits now: burst (rate tokens), concurrency, tokens_per_day (today).");
    for (const auto& q : quotas) {
        if (!q.remaining_known) continue;
        line("tenant_quota_remaining", q.tenant, "burst", q.quota.rate_remaining);
        line("tenant_quota_remaining", q.tenant, "concurrency", static_cast<double>(q.quota.concurrent_remaining));
        line("tenant_quota_remaining", q.tenant, "tokens_per_day", static_cast<double>(q.quota.tokens_remaining));
    }
}

// build_info and the span exporter's figures.
void process_figures(std::string& out)
{
    header(out, "build_info", "gauge", "The running build: its version (always 1).");
    out += std::string("dify_gateway_build_info{version=\"") + GW_VERSION + "\"} 1\n";
    const auto& t = trace_figures::process();
    header(out, "trace_spans_exported_total", "counter", "Spans the OTLP collector accepted.");
    out += "dify_gateway_trace_spans_exported_total " + std::to_string(t.spans_exported.load()) + "\n";
    header(out, "trace_spans_dropped_total", "counter", "Spans dropped: a full queue, or an export that failed.");
    out += "dify_gateway_trace_spans_dropped_total " + std::to_string(t.spans_dropped.load()) + "\n";
    header(out, "trace_exports_failed_total", "counter", "Span exports that failed (not retried).");
    out += "dify_gateway_trace_exports_failed_total " + std::to_string(t.exports_failed.load()) + "\n";
}

} // namespace

std::string render_metrics(
    const metrics_shard& m,
    const std::vector<upstream_view>& upstreams,
    const store_counters& store,
    const std::vector<tenant_quota_line>& quotas
)
{
    std::string out;
    const auto names = metric_names::process().all();
    process_figures(out);
    quota_gauges(out, quotas);
    header(out, "requests_total", "counter", "Requests answered, by tenant, app, endpoint and status.");
    for (std::uint32_t id = 0; id < m.pairs.size(); ++id)
        for (const auto& [key, n] : m.pairs[id].requests)
            out += "dify_gateway_requests_total{" + pair_labels(names.pairs[id]) + ",endpoint=\"" +
                   esc(endpoint_label(static_cast<std::uint16_t>(key / 1000))) + "\",status=\"" +
                   std::to_string(key % 1000) + "\"} " + std::to_string(n) + "\n";
    histograms(
        out, "request_duration_seconds", "Time from the request's header to the end of its response.", m,
        names, &metrics_shard::pair_figures::duration
    );
    histograms(
        out, "time_to_first_byte_seconds", "Time to the first byte of a streamed response.", m, names,
        &metrics_shard::pair_figures::ttfb
    );
    header(out, "active_streams", "gauge", "SSE streams being relayed, by tenant.");
    for (std::uint32_t id = 0; id < m.tenants.size(); ++id)
        if (m.tenants[id].streamed)
            out += "dify_gateway_active_streams{tenant=\"" + esc(names.tenants[id]) + "\"} " +
                   std::to_string(m.tenants[id].active_streams) + "\n";
    header(out, "rate_limited_total", "counter", "Requests refused by a quota, by tenant and reason.");
    for (std::uint32_t id = 0; id < m.tenants.size(); ++id)
        for (std::size_t r = 0; r < quota_reason_count; ++r)
            if (auto n = m.tenants[id].rate_limited[r])
                out += "dify_gateway_rate_limited_total{tenant=\"" + esc(names.tenants[id]) + "\",reason=\"" +
                       reason_name(static_cast<quota_reason>(r)) + "\"} " + std::to_string(n) + "\n";
    header(
        out, "task_failures_total", "counter",
        "Background tasks and sessions ended by an unexpected error (logged)."
    );
    out += "dify_gateway_task_failures_total " + std::to_string(task_failures()) + "\n";
    header(out, "upstream_retries_total", "counter", "Retried upstream attempts, by upstream and reason.");
    for (std::uint32_t id = 0; id < m.upstreams.size(); ++id)
        for (std::size_t r = 0; r < core::upstream_failure_count; ++r)
            if (auto n = m.upstreams[id].retries[r])
                out += "dify_gateway_upstream_retries_total{upstream=\"" + esc(names.upstreams[id]) +
                       "\",reason=\"" + core::to_string(static_cast<core::upstream_failure>(r)) + "\"} " +
                       std::to_string(n) + "\n";
    header(out, "upstream_connections", "gauge", "Open upstream connections, by upstream and state.");
    for (const auto& u : upstreams) {
        out += "dify_gateway_upstream_connections{upstream=\"" + esc(u.name) + "\",state=\"active\"} " +
               std::to_string(u.active) + "\n";
        out += "dify_gateway_upstream_connections{upstream=\"" + esc(u.name) + "\",state=\"idle\"} " +
               std::to_string(u.idle) + "\n";
        out += "dify_gateway_upstream_connections{upstream=\"" + esc(u.name) + "\",state=\"connecting\"} " +
               std::to_string(u.connecting) + "\n";
    }
    header(out, "upstream_connects_total", "counter", "New upstream connections (TLS handshakes for https).");
    for (const auto& u : upstreams)
        out += "dify_gateway_upstream_connects_total{upstream=\"" + esc(u.name) + "\"} " +
               std::to_string(u.connects) + "\n";
    header(
        out, "upstream_tls_resumed_total", "counter",
        "New upstream TLS connections that resumed a session (abbreviated handshake)."
    );
    for (const auto& u : upstreams)
        out += "dify_gateway_upstream_tls_resumed_total{upstream=\"" + esc(u.name) + "\"} " +
               std::to_string(u.resumed) + "\n";
    header(out, "upstream_connect_waits_total", "counter",
           "Requests that found no idle upstream connection and waited for a new one (connect and TLS handshake).");
    for (const auto& u : upstreams)
        out += "dify_gateway_upstream_connect_waits_total{upstream=\"" + esc(u.name) + "\"} " + std::to_string(u.connect_waits) + "\n";
    header(out, "upstream_connecting_limit_waits_total", "counter",
           "Requests that waited because max_connecting upstream connections were already being opened "
           "(raise it when this grows: new connections are asked for faster than that many set-ups allow).");
    for (const auto& u : upstreams)
        out += "dify_gateway_upstream_connecting_limit_waits_total{upstream=\"" + esc(u.name) + "\"} " +
               std::to_string(u.connecting_limit_waits) + "\n";
    header(out, "upstream_preconnects_total", "counter",
           "Upstream connections opened ahead of demand (preconnect_ratio), by result; opened ones are in upstream_connects_total.");
    for (const auto& u : upstreams) {
        out += "dify_gateway_upstream_preconnects_total{upstream=\"" + esc(u.name) + "\",result=\"opened\"} " +
               std::to_string(u.preconnects) + "\n";
        out += "dify_gateway_upstream_preconnects_total{upstream=\"" + esc(u.name) + "\",result=\"failed\"} " +
               std::to_string(u.preconnect_failures) + "\n";
    }
    header(out, "upstream_circuit_open", "gauge", "Workers whose circuit breaker for the upstream is open.");
    for (const auto& u : upstreams)
        out += "dify_gateway_upstream_circuit_open{upstream=\"" + esc(u.name) + "\"} " +
               (u.circuit_open ? "1" : "0") + "\n";
    header(out, "tokens_total", "counter", "LLM tokens Dify reported, by tenant and app.");
    for (std::uint32_t id = 0; id < m.pairs.size(); ++id)
        if (auto n = m.pairs[id].tokens)
            out +=
                "dify_gateway_tokens_total{" + pair_labels(names.pairs[id]) + "} " + std::to_string(n) + "\n";
    header(out, "quota_store_errors_total", "counter", "Quota store calls that failed (Redis slow or down).");
    out += "dify_gateway_quota_store_errors_total " + std::to_string(store.errors.load()) + "\n";
    header(
        out, "quota_store_pending_writes", "gauge",
        "Settlements, lease releases and ownership records not yet in Redis."
    );
    out += "dify_gateway_quota_store_pending_writes " +
           std::to_string(std::max<std::int64_t>(0, store.writes_pending.load())) + "\n";
    header(
        out, "quota_store_retried_writes_total", "counter",
        "Background writes sent again after Redis failed to take them."
    );
    out +=
        "dify_gateway_quota_store_retried_writes_total " + std::to_string(store.writes_retried.load()) + "\n";
    header(
        out, "quota_store_dropped_writes_total", "counter",
        "Background writes given up (Redis away for minutes, or refused them)."
    );
    out +=
        "dify_gateway_quota_store_dropped_writes_total " + std::to_string(store.writes_dropped.load()) + "\n";
    return out;
}

} // namespace gw::gateway
