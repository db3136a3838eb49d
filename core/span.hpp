// A finished span as the gateway records it (its own SERVER, CLIENT and INTERNAL spans,
// and the spans it derives from a Dify workflow's node events), and the OTLP/HTTP JSON
// encoding of a batch of them (an ExportTraceServiceRequest: ids in hex, 64-bit integers
// as decimal strings, as the OTLP JSON mapping requires).
#pragma once

#include "core/trace_context.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace gw::core {

enum class span_kind : std::uint8_t { internal = 1, server = 2, client = 3 };
enum class span_status : std::uint8_t { unset = 0, ok = 1, error = 2 };

struct span_attribute
{
    std::string key;
    std::variant<std::string, std::int64_t, double, bool> value;
};

struct span_event
{
    std::string name;
    std::int64_t time_unix_nano = 0;
};

// Span text (names, string attributes, status messages) is cut to this many bytes, at a
// UTF-8 character boundary: what tenants and Dify put in it (a node title, an error
// message, a user agent) never makes a queued span large.
inline constexpr std::size_t max_span_text = 1024;
std::string bounded_text(std::string_view v);

struct span
{
    trace_id trace{};
    span_id id{};
    span_id parent{}; // zero: a root span
    std::string tracestate;
    std::string name;
    span_kind kind = span_kind::internal;
    std::int64_t start_unix_nano = 0, end_unix_nano = 0;
    std::vector<span_attribute> attributes;
    std::vector<span_event> events;
    span_status status = span_status::unset;
    std::string status_message;

    void set(std::string key, std::string_view v) { attributes.push_back({std::move(key), bounded_text(v)}); }
    void set(std::string key, const char* v) { attributes.push_back({std::move(key), bounded_text(v)}); }
    void set(std::string key, std::int64_t v) { attributes.push_back({std::move(key), v}); }
    void set(std::string key, int v) { attributes.push_back({std::move(key), static_cast<std::int64_t>(v)}); }
    void set(std::string key, double v) { attributes.push_back({std::move(key), v}); }
    void set(std::string key, bool v) { attributes.push_back({std::move(key), v}); }
};

// The resource every span of this process shares.
struct span_resource
{
    std::string service_name = "dify-gateway";
    std::string service_version;
    std::string instance_id; // service.instance.id ("" = none)
};

// One OTLP/HTTP JSON request body for `spans`.
std::string otlp_json(const span_resource& resource, const std::vector<span>& spans);

} // namespace gw::core
