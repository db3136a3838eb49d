// The request path's tracing: a request's trace begun from its head (W3C traceparent /
// tracestate; invalid ones ignored), its SERVER span, CLIENT spans for upstream attempts
// and stop calls, the quota decision's span, all children of the SERVER span and handed
// to the worker's span_exporter when they end. Spans are built only for sampled traces
// with an exporter configured (request_trace::exported); with no exporter, a request
// costs three random numbers and its access line still names its trace and span.
#pragma once

#include "core/span.hpp"
#include "gateway/ops/logging.hpp"
#include "gateway/ops/request_trace.hpp"

#include "gateway/head_fields.hpp"

#include <string>

namespace gw::gateway {

class worker;

// A request's trace: the caller's context if its traceparent is valid, else a new trace;
// a new SERVER span id; sampled per tracing.sample_ratio / parent_based.
request_trace begin_request_trace(worker& w, const request_head& head);

// A span of `t` (child of its SERVER span unless `parent` is given), started now.
core::span start_span(
    worker& w, const request_trace& t, std::string name, core::span_kind kind, const core::span_id* parent = nullptr
);
// Ends `s` now (error status for a non-empty `error`) and hands it to the exporter.
void finish_span(worker& w, core::span s, std::string_view error = {});

// The SERVER span of a finished request (exported traces only), from its record.
void record_server_span(worker& w, const request_record& r);

// The traceparent for a call the gateway makes to Dify on behalf of request `t`, with
// span `id` as the parent.
std::string traceparent_for(const request_trace& t, const core::span_id& id);

} // namespace gw::gateway
