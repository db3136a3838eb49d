// A request's place in its trace: the caller's context (a valid traceparent, or none: the
// request starts a trace), the gateway's SERVER span id, and whether the trace is sampled
// and exported. Carried by the request's record; see gateway/ops/tracing.hpp.
#pragma once

#include "core/trace_context.hpp"

#include <chrono>
#include <cstdint>
#include <string>

namespace gw::gateway {

struct request_trace
{
    core::trace_id trace{};
    core::span_id span{};   // the request's SERVER span
    core::span_id parent{}; // the caller's span (zero: the gateway started the trace)
    std::string tracestate; // the caller's, passed on
    bool sampled = false;
    bool exported = false;  // sampled, and an exporter is configured: spans are recorded
    std::int64_t start_unix_nano = 0;
};

inline std::int64_t unix_nanos_now()
{
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

} // namespace gw::gateway
