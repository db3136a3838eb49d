// The steps serving a request is made of, downstream: the body read whole, refusals
// before it, 100-continue, rate headers and quota refusals, the exchange handed upstream,
// and the record of the request. Shared by the Dify path (serve_request.cpp) and the
// OpenAI front (serve_openai.cpp).
#include "gateway/downstream/request_steps.hpp"

#include "core/text.hpp"
#include "gateway/ops/tracing.hpp"
#include "gateway/http_fields.hpp"

#include <algorithm>
#include <cstdio>

namespace gw::gateway {

// Reads the whole body for the rewrite path; answers 413/400 itself. False: do not go on.
net::awaitable<bool> read_whole_body(
    worker& w,
    client_socket& down,
    beast::flat_buffer& buffer,
    client_request_parser<http::string_body>& p,
    const std::string& request_id,
    api_front front
)
{
    // Read before any co_await: a reload may free the configuration meanwhile.
    const auto& server = w.tenants().config().server;
    p.body_limit(static_cast<std::uint64_t>(server.max_request_body_bytes));
    const auto idle_timeout = server.client_idle_timeout_ms;
    error_code ec;
    p.eager(true); // as http::async_read parses a whole message
    if (!parse_buffered(p, buffer, ec, [](const auto& parser) { return parser.is_done(); })) {
        client_deadline deadline(down, idle_timeout);
        auto [read_ec, n] = co_await http::async_read(down, buffer, p, use_nothrow);
        ec = deadline.fired() ? error_code(beast::error::timeout) : read_ec;
    }
    // Errors are named before co_await: g++ 12 mishandles temporaries inside co_await expressions.
    const header_list none;
    if (ec == http::error::body_limit) {
        gateway_error too_large{
            413, "request_too_large", "The request body is larger than the gateway accepts."};
        co_await write_gateway_error(down, too_large, request_id, false, none, front);
    } else if (ec == beast::error::timeout) { // a body trickled too slowly (client_idle_timeout_ms in all)
        gateway_error slow{408, "request_timeout", "The request body took too long to arrive."};
        co_await write_gateway_error(down, slow, request_id, false, none, front);
    } else if (ec && ec != net::error::eof && ec != http::error::partial_message) {
        gateway_error malformed{400, "bad_request", "Malformed HTTP request body."};
        co_await write_gateway_error(down, malformed, request_id, false, none, front);
    }
    co_return !ec;
}

// The client's address: the peer, or the last X-Forwarded-For hop when the peer is a
// trusted proxy (nginx in front).
std::string client_address(
    const std::string& peer, const request_head& req, const std::vector<std::string>& trusted
)
{
    auto forwarded = field_value(req, "X-Forwarded-For");
    if (!forwarded.empty() && std::find(trusted.begin(), trusted.end(), peer) != trusted.end()) {
        auto parts = core::split(forwarded, ',');
        return std::string(core::trim(parts.back()));
    }
    return peer;
}

// Metrics and the access log for one finished request.
void record_request(worker& w, const request_record& r)
{
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - r.start).count();
    auto& figures = w.metrics().pair(r.pair);
    figures.count_request(r.endpoint, r.status);
    if (r.pair != metric_names::anonymous) {
        figures.duration.observe(seconds);
        if (r.ttfb_seconds) figures.ttfb.observe(*r.ttfb_seconds);
    }
    log_access(r, seconds);
    // A request refused before it named a tenant exports nothing: no unauthenticated client
    // fills the span queue.
    if (r.trace.exported && !r.tenant.empty()) record_server_span(w, r);
}

// X-RateLimit-* (and Retry-After when refused) for tenants with a rate.
header_list rate_headers(const admission& a)
{
    header_list h;
    if (a.rate || a.refused) h.reserve(4); // most tenants have no rate: nothing allocated
    if (a.rate) {
        h.emplace_back("X-RateLimit-Limit", std::to_string(a.rate->limit));
        h.emplace_back("X-RateLimit-Remaining", std::to_string(a.rate->remaining));
        h.emplace_back("X-RateLimit-Reset", std::to_string(a.rate->reset_seconds));
    }
    if (a.refused) h.emplace_back("Retry-After", std::to_string(a.retry_after_seconds));
    return h;
}

gateway_error quota_error(const config::tenant_config& t, quota_reason r)
{
    switch (r) {
    case quota_reason::rate: {
        char rate[32];
        std::snprintf(rate, sizeof rate, "%g", t.rate ? t.rate->requests_per_second : 0.0);
        return {
            429, "too_many_requests", std::string("Rate limit exceeded (") + rate + " requests per second)."};
    }
    case quota_reason::tenant_concurrency:
        return {
            429, "too_many_requests",
            "Too many concurrent requests (at most " + std::to_string(t.max_concurrent) + ")."};
    case quota_reason::app_concurrency:
        return {429, "too_many_requests", "Too many concurrent requests for this app."};
    case quota_reason::tokens:
        return {
            429, "quota_exceeded",
            "The daily token quota (" + std::to_string(t.tokens_per_day) +
                " tokens) is used up; it renews at 00:00 UTC."};
    case quota_reason::store_unavailable:
        return {503, "unavailable", "Quotas cannot be checked right now."};
    }
    return {500, "internal_error", "Unexpected quota decision."};
}

// Answers a request refused before its body was read (see the header).
net::awaitable<bool> refuse_early(
    client_socket& down,
    beast::flat_buffer& buffer,
    header_parser& hp,
    const gateway_error& e,
    const std::string& request_id,
    bool keep_alive,
    const header_list& extra,
    api_front front
)
{
    const auto len = hp.content_length();
    const bool droppable = keep_alive && !beast::iequals(field_value(hp.get(), http::field::expect), "100-continue") &&
                           (!len || *len <= max_dropped_body);
    if (!hp.is_done()) {
        bool dropped = false;
        if (droppable) {
            client_request_parser<http::string_body> p{std::move(hp)};
            p.body_limit(max_dropped_body); // a chunked body that grows beyond it: the connection closes
            client_deadline deadline(down, std::chrono::seconds(10));
            auto [ec, n] = co_await http::async_read(down, buffer, p, use_nothrow);
            dropped = !ec && !deadline.fired();
        }
        keep_alive = keep_alive && dropped;
    }
    co_return co_await write_gateway_error(down, e, request_id, keep_alive, extra, front);
}

std::size_t field_count(const request_head& h)
{
    return static_cast<std::size_t>(std::distance(h.begin(), h.end()));
}

// "HTTP/1.1 100 Continue" when the client waits for it before sending its body.
net::awaitable<bool> continue_if_expected(client_socket& down, const request_head& req)
{
    if (!beast::iequals(field_value(req, http::field::expect), "100-continue")) co_return true;
    http::response<http::empty_body> cont{http::status::continue_, 11};
    auto [ec, n] = co_await http::async_write(down, cont, use_nothrow);
    co_return !ec;
}

net::awaitable<admission> admit(worker& w, const request_plan& plan, request_record& rec)
{
    const auto& app = plan.target->app->name;
    const bool shared = w.tenants().config().quota_store.type == config::store_kind::redis;
    if (!rec.trace.exported || !shared) co_return co_await w.quotas().admit(plan.who->name, app, plan.generates);
    auto span = start_span(w, rec.trace, "quota admission", core::span_kind::internal);
    auto admitted = co_await w.quotas().admit(plan.who->name, app, plan.generates);
    span.set("dify_gateway.quota.store", "redis");
    span.set("dify_gateway.quota.decision", admitted.refused ? reason_name(*admitted.refused) : "admitted");
    finish_span(w, std::move(span));
    co_return admitted;
}

std::optional<gateway_error> account_admission(worker& w, const request_plan& plan, const admission& a)
{
    auto* counts = w.usage().find(plan.pair);
    if (counts) ++counts->requests;
    if (!a.refused) return std::nullopt;
    const auto reason = static_cast<std::size_t>(*a.refused);
    if (counts) ++counts->refused[reason];
    ++w.metrics().tenant(plan.who->id).rate_limited[reason];
    return quota_error(*plan.who->cfg, *a.refused);
}

exchange& make_exchange(
    std::optional<exchange>& slot,
    downstream_request& d,
    const request_head& req,
    bool keep_alive,
    request_plan& plan,
    quota_ticket* ticket,
    header_list quota_headers
)
{
    auto& x = slot.emplace(
        d.w,
        d.dir,
        d.down,
        d.buffer,
        req,
        *plan.who,
        std::move(*plan.target),
        d.request_id,
        keep_alive,
        ticket,
        std::move(quota_headers));
    x.rec = &d.rec;
    x.generating = plan.generates;
    x.place = plan.place;
    x.uploads_file = plan.uploads_file;
    return x;
}

} // namespace gw::gateway
