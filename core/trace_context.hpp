// W3C Trace Context (traceparent / tracestate) and the sampling decision, without I/O.
//
// traceparent = version "-" trace-id "-" parent-id "-" trace-flags, lower-case hex. A
// header that breaks the rules (wrong lengths, upper case, all-zero ids, version ff, a
// version-00 header with anything after the flags) is ignored, as the specification says:
// the request then starts a new trace. Versions above 00 are read by their first four
// fields. tracestate is kept only beside a valid traceparent, and only if it is at most
// 512 characters of printable ASCII (else dropped, not repaired).
//
// Sampling is parent-based: a request that arrives with a context follows its sampled
// flag; a new trace is sampled when its trace id falls under the ratio (the id's last 8
// bytes read as a number, as OpenTelemetry's TraceIdRatioBased sampler does), so every
// replica decides a trace alike.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace gw::core {

using trace_id = std::array<std::uint8_t, 16>;
using span_id = std::array<std::uint8_t, 8>;

struct span_context
{
    trace_id trace{};
    span_id span{};
    bool sampled = false;
    std::string tracestate; // "" = none
};

// A valid traceparent, or nullopt. `tracestate` is the header's value ("" = absent;
// several headers joined with ",").
std::optional<span_context> parse_traceparent(std::string_view traceparent, std::string_view tracestate);
// "00-<trace>-<span>-0<sampled>".
std::string format_traceparent(const trace_id& t, const span_id& s, bool sampled);

std::string to_hex(const trace_id& t);
std::string to_hex(const span_id& s);
// The same hex, appended to `out`.
void append_hex(std::string& out, const trace_id& t);
void append_hex(std::string& out, const span_id& s);
bool is_zero(const trace_id& t);
bool is_zero(const span_id& s);

// Ids from 64-bit random numbers (zero ids are never made).
trace_id make_trace_id(std::uint64_t hi, std::uint64_t lo);
span_id make_span_id(std::uint64_t r);

// Parent-based, ratio for new traces (0 = none, 1 = all).
bool sample(const std::optional<span_context>& parent, const trace_id& t, double ratio);

} // namespace gw::core
