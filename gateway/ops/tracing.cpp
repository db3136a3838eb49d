#include "gateway/ops/tracing.hpp"

#include "core/dify_routes.hpp"
#include "gateway/ops/metrics.hpp"
#include "gateway/worker.hpp"

#include <algorithm>

namespace gw::gateway {

namespace http = boost::beast::http;

request_trace begin_request_trace(worker& w, const request_head& head)
{
    request_trace t;
    // Two traceparent fields cannot be told apart: the request starts a trace.
    std::optional<core::span_context> caller;
    if (head.count("traceparent") == 1) {
        std::string state;
        for (auto [it, end] = head.equal_range("tracestate"); it != end; ++it)
            state.append(state.empty() ? "" : ",").append(it->value());
        caller = core::parse_traceparent(head["traceparent"], state);
    }
    const auto& settings = w.tracer().settings();
    if (caller) {
        t.trace = caller->trace;
        t.parent = caller->span;
        t.tracestate = std::move(caller->tracestate);
    } else {
        t.trace = core::make_trace_id(w.random64(), w.random64());
    }
    t.span = core::make_span_id(w.random64());
    t.sampled = core::sample(settings.parent_based ? caller : std::nullopt, t.trace, settings.sample_ratio);
    t.exported = t.sampled && w.tracer().enabled();
    if (t.exported) t.start_unix_nano = unix_nanos_now();
    return t;
}

core::span start_span(worker& w, const request_trace& t, std::string name, core::span_kind kind, const core::span_id* parent)
{
    core::span s;
    s.trace = t.trace;
    s.id = core::make_span_id(w.random64());
    s.parent = parent ? *parent : t.span;
    s.name = std::move(name);
    s.kind = kind;
    s.start_unix_nano = unix_nanos_now();
    return s;
}

void finish_span(worker& w, core::span s, std::string_view error)
{
    s.end_unix_nano = unix_nanos_now();
    if (!error.empty()) {
        s.status = core::span_status::error;
        s.status_message = std::string(error);
    }
    w.tracer().submit(std::move(s));
}

void record_server_span(worker& w, const request_record& r)
{
    const auto& t = r.trace;
    // The OpenAI front's requests are named by their own route; Dify's by theirs.
    const bool openai = r.path == "/openai/v1/chat/completions" || r.path == "/openai/v1/models";
    const core::dify_route* route = openai ? nullptr : route_of_endpoint(r.endpoint);
    core::span s;
    s.trace = t.trace;
    s.id = t.span;
    s.parent = t.parent;
    s.tracestate = t.tracestate;
    s.kind = core::span_kind::server;
    // Only the standard methods name a span (any other token is "HTTP": no unbounded names).
    static constexpr std::string_view known[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    const bool standard = std::find(std::begin(known), std::end(known), r.method) != std::end(known);
    const std::string method = standard ? r.method : "HTTP";
    s.name = route ? method + " /v1" + std::string(route->pattern) : openai ? method + " " + r.path : method;
    s.start_unix_nano = t.start_unix_nano;
    s.end_unix_nano = unix_nanos_now();
    s.set("http.request.method", standard ? r.method : "_OTHER");
    s.set("url.path", r.path);
    if (route) s.set("http.route", "/v1" + std::string(route->pattern));
    if (openai) s.set("http.route", r.path);
    if (r.status > 0) s.set("http.response.status_code", r.status);
    s.set("network.protocol.version", "1.1");
    s.set("client.address", r.client);
    if (!r.user_agent.empty()) s.set("user_agent.original", r.user_agent);
    s.set("dify_gateway.request_id", r.request_id);
    if (!r.tenant.empty()) s.set("dify_gateway.tenant", r.tenant);
    if (!r.app.empty()) s.set("dify_gateway.app", r.app);
    if (r.endpoint != no_endpoint) s.set("dify_gateway.endpoint", endpoint_label(r.endpoint));
    s.set("dify_gateway.attempts", r.attempts);
    if (r.input_tokens) s.set("gen_ai.usage.input_tokens", *r.input_tokens);
    if (r.output_tokens) s.set("gen_ai.usage.output_tokens", *r.output_tokens);
    if (r.tokens > 0) s.set("dify_gateway.tokens", r.tokens);
    if (r.ttfb_seconds)
        s.events.push_back({"first_byte", t.start_unix_nano + static_cast<std::int64_t>(*r.ttfb_seconds * 1e9)});
    if (r.status >= 500) s.status = core::span_status::error; // a server span's 4xx is the client's
    w.tracer().submit(std::move(s));
}

std::string traceparent_for(const request_trace& t, const core::span_id& id)
{
    return core::format_traceparent(t.trace, id, t.sampled);
}

} // namespace gw::gateway
