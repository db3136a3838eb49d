// Logging setup: spdlog to stdout through an async logger, so a worker never
// blocks on output; log.level and log.format (json | text) honoured. With log.access_log
// on, each worker formats one line per request into its own buffer (thread-local) and
// hands the buffer to the async "access" logger as one batch when it passes 32 KiB, when
// flush_access_log() runs (each worker calls it every second and when it stops), so a
// request costs no lock and no thread wake-up. Nothing here or in its callers ever logs
// a tenant key or a Dify key.
#pragma once

#include "config/gateway_config.hpp"
#include "gateway/ops/request_trace.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace gw::gateway {

void setup_logging(const config::log_config& cfg);

// One request's facts for the access log and the metrics.
struct request_record
{
    std::string request_id, method, client;
    std::string_view tenant, app;          // names owned by the request's configuration snapshot
    std::uint32_t pair = 0;                // metric_names pair (tenant, app); 0 = no tenant
    std::uint16_t endpoint = 0;            // endpoint_id (metrics.hpp)
    int status = 0;
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    std::optional<double> ttfb_seconds; // streams: when the response head went out
    int attempts = 0;
    std::int64_t tokens = 0;
    std::uint64_t bytes_in = 0, bytes_out = 0;
    request_trace trace;
    // Kept for the SERVER span (exported traces only).
    std::string path, user_agent;
    std::optional<std::int64_t> input_tokens, output_tokens; // Dify's usage split, when it gives one
};

// Adds the access line (if enabled) for a finished request to this thread's batch.
void log_access(const request_record& r, double duration_seconds);
// Hands this thread's batch of access lines to the logger.
void flush_access_log();

} // namespace gw::gateway
