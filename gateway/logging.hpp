// Logging setup (design §9): spdlog to stdout through an async logger, so a worker never
// blocks on output; log.level and log.format (json | text) honoured; a separate "access"
// logger writes one line per request when log.access_log is on. Nothing here or in its
// callers ever logs a tenant key or a Dify key.
#pragma once

#include "config/gateway_config.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace gw::gateway {

void setup_logging(const config::log_config& cfg);

// One request's facts for the access log and the metrics.
struct request_record
{
    std::string request_id, tenant, app, method, endpoint, client;
    int status = 0;
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    std::optional<double> ttfb_seconds; // streams: when the response head went out
    int attempts = 0;
    std::int64_t tokens = 0;
    std::uint64_t bytes_in = 0, bytes_out = 0;
};

// Writes the access line (if enabled) for a finished request.
void log_access(const request_record& r, double duration_seconds);

} // namespace gw::gateway
