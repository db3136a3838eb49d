// The `tracing` section and the standard OpenTelemetry environment. The environment is
// read first (OTEL_SDK_DISABLED, OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT / _HEADERS /
// _TIMEOUT / _PROTOCOL, OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER / _ARG, OTEL_BSP_*), then
// the file's `tracing` keys, which win; then both are checked together. Exports are OTLP/HTTP with JSON bodies: protocol
// http/json, or http/protobuf (every OTLP/HTTP receiver also takes JSON); grpc is refused.
#pragma once

#include "config/env_expand.hpp"
#include "config/gateway_config.hpp"
#include "config/json_reader.hpp"
#include "config/problems.hpp"

#include <cstdint>
#include <optional>
#include <string>

namespace gw::config {

void apply_otel_env(tracing_config& c, const env_lookup& env, problems& out);
void read_tracing(json_reader r, tracing_config& c, problems& out);
// What the environment and the file made of `tracing`, checked (header names and values,
// the endpoint, the batch within the queue): problems named under "tracing.".
void check_tracing(const tracing_config& c, problems& out);

// Where an OTLP endpoint URL points.
struct otlp_target
{
    bool tls = false;
    std::string host;
    std::uint16_t port = 0;
    std::string target; // path and query, "/v1/traces"
};
std::optional<otlp_target> parse_otlp_endpoint(const std::string& url, std::string* why = nullptr);

} // namespace gw::config
