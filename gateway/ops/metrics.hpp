// Prometheus metrics. Each worker owns a metrics_shard that only its thread
// writes (no locks, no atomics on the data path); a scrape copies every shard on its own
// worker and renders the sum in the Prometheus text format.
#pragma once

#include "core/dify_routes.hpp"
#include "core/retry.hpp"
#include "gateway/quota/quota.hpp"

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace gw::gateway {

// Bucket upper bounds (seconds): LLM calls run from milliseconds to ten minutes.
inline constexpr std::array<double, 18> latency_buckets{
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};

struct histogram
{
    std::array<std::uint64_t, latency_buckets.size()> counts{}; // non-cumulative
    std::uint64_t count = 0;
    double sum = 0;
    void observe(double seconds);
    void add(const histogram& o);
};

// The endpoint label of a request, as a small id: 0 = not routed (label ""), 1 = a route
// forwarded by switch ("unknown"), 2 + i = route i of the route table ("POST
// /conversations/{}/name"). A closed set, so metric series stay few.
inline constexpr std::uint16_t no_endpoint = 0;
std::uint16_t endpoint_id(const core::dify_route* route); // for a routed request
std::string endpoint_label(std::uint16_t endpoint);
// Appends the label: route-table text, with no quote, backslash or control character.
void append_endpoint_label(std::string& out, std::uint16_t endpoint);
// The route an endpoint id names (nullptr: not routed, or unknown).
const core::dify_route* route_of_endpoint(std::uint16_t endpoint);

static_assert(quota_reason_count == static_cast<std::size_t>(quota_reason::store_unavailable) + 1);
static_assert(core::upstream_failure_count == static_cast<std::size_t>(core::upstream_failure::other) + 1);

// Figures indexed by the ids of metric_names: a request adds to them without a string key
// or a lookup by name. Vectors grow on first use of an id (a reload that adds names).
struct metrics_shard
{
    struct pair_figures // one (tenant, app)
    {
        std::vector<std::pair<std::uint32_t, std::uint64_t>> requests; // endpoint * 1000 + status -> count
        histogram duration;
        histogram ttfb; // streams
        std::uint64_t tokens = 0;
        void count_request(std::uint16_t endpoint, int status);
    };
    struct tenant_figures
    {
        bool streamed = false; // active_streams is reported once a stream ran
        std::int64_t active_streams = 0;
        std::array<std::uint64_t, quota_reason_count> rate_limited{};
    };
    struct upstream_figures
    {
        std::array<std::uint64_t, core::upstream_failure_count> retries{}; // by failure retried
    };
    std::vector<pair_figures> pairs;
    std::vector<tenant_figures> tenants;
    std::vector<upstream_figures> upstreams;

    pair_figures& pair(std::uint32_t id) { return at(pairs, id); }
    tenant_figures& tenant(std::uint32_t id) { return at(tenants, id); }
    upstream_figures& upstream(std::uint32_t id) { return at(upstreams, id); }

    void add(const metrics_shard& o);

private:
    template <typename T> static T& at(std::vector<T>& v, std::uint32_t id)
    {
        if (id >= v.size()) v.resize(id + 1);
        return v[id];
    }
};

// Per-upstream pool figures, read at scrape time.
struct upstream_view
{
    std::string name;
    std::uint64_t connects = 0;
    std::int64_t active = 0, idle = 0, connecting = 0; // leased, pooled, being opened
    bool circuit_open = false;
    std::uint64_t resumed = 0; // TLS connections that resumed a session
    std::uint64_t connect_waits = 0;                        // requests that found no idle connection and connected
    std::uint64_t connecting_limit_waits = 0;               // requests held back by max_connecting
    std::uint64_t preconnects = 0, preconnect_failures = 0; // opened ahead of demand (in `connects`), failed
};

// A tenant's quotas for the limit and remaining gauges.
struct tenant_quota_line
{
    std::string tenant;
    tenant_quota_view quota;
    bool remaining_known = false; // the memory store: exact; with Redis the shared state is not scraped
};

// The Prometheus text exposition of everything (labels from metric_names).
std::string render_metrics(
    const metrics_shard& m,
    const std::vector<upstream_view>& upstreams,
    const store_counters& store,
    const std::vector<tenant_quota_line>& quotas
);

} // namespace gw::gateway
