// Prometheus metrics. Each worker owns a metrics_shard that only its thread
// writes (no locks, no atomics on the data path); a scrape copies every shard on its own
// worker and renders the sum in the Prometheus text format.
#pragma once

#include "core/dify_routes.hpp"
#include "gateway/quota/quota.hpp"

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace gw::gateway {

// Bucket upper bounds (seconds): LLM calls run from milliseconds to ten minutes.
inline constexpr std::array<double, 18> latency_buckets{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                       1,     2.5,    5,     10,   30,    60,   120, 300, 600};

struct histogram
{
    std::array<std::uint64_t, latency_buckets.size()> counts{}; // non-cumulative
    std::uint64_t count = 0;
    double sum = 0;
    void observe(double seconds);
    void add(const histogram& o);
};

struct metrics_shard
{
    using tenant_app = std::pair<std::string, std::string>;
    std::map<std::tuple<std::string, std::string, std::string, int>, std::uint64_t> requests; // tenant, app, endpoint, status
    std::map<tenant_app, histogram> duration;
    std::map<tenant_app, histogram> ttfb; // streams
    std::map<std::string, std::int64_t> active_streams;  // tenant
    std::map<tenant_app, std::uint64_t> rate_limited;    // tenant, reason
    std::map<tenant_app, std::uint64_t> retries;         // upstream, reason
    std::map<tenant_app, std::uint64_t> tokens;          // tenant, app

    void add(const metrics_shard& o);
};

// Per-upstream pool figures, read at scrape time.
struct upstream_view
{
    std::string name;
    std::uint64_t connects = 0;
    std::int64_t active = 0, idle = 0;
    bool circuit_open = false;
    std::uint64_t resumed = 0; // TLS connections that resumed a session
};

// The Prometheus text exposition of everything.
std::string render_metrics(const metrics_shard& m, const std::vector<upstream_view>& upstreams, const store_counters& store);

// The endpoint label of a request: its route in the route table ("POST /conversations/{}/name"),
// "unknown" for a route forwarded by switch — a closed set, so metric series stay few.
std::string endpoint_label(const core::dify_route* route);

} // namespace gw::gateway
