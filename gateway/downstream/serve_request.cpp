// Serving one tenant request, the downstream side: authenticate and route on the header,
// admit against the quotas, read or stream the body, then hand the exchange to
// forward_request (proxy/forward.cpp) for the upstream side.
#include "gateway/downstream/serve_request.hpp"

#include "core/dify_routes.hpp"
#include "core/text.hpp"
#include "gateway/proxy/exchange.hpp"
#include "gateway/proxy/forward.hpp"
#include "gateway/downstream/request_checks.hpp"
#include "gateway/proxy/request_plan.hpp"

#include <boost/json.hpp>

#include <algorithm>

namespace gw::gateway {

namespace json = boost::json;

client_deadline::client_deadline(beast::tcp_stream& stream, std::chrono::milliseconds limit) : timer_(stream.get_executor())
{
    timer_.expires_after(limit);
    // The handler may run after this object is gone: it touches the stream only while the
    // shared state says the deadline is still in force.
    timer_.async_wait([state = state_, &stream](error_code ec) {
        if (ec || state->done) return;
        state->fired = true;
        error_code ignored;
        stream.socket().cancel(ignored);
    });
}

client_deadline::~client_deadline()
{
    state_->done = true;
    timer_.cancel();
}

net::awaitable<bool> write_gateway_error(beast::tcp_stream& down, const gateway_error& e, const std::string& request_id,
                                         bool keep_alive, const header_list& extra)
{
    http::response<http::string_body> res{static_cast<http::status>(e.status), 11};
    res.set(http::field::content_type, "application/json");
    res.set("X-Request-Id", request_id);
    for (const auto& [k, v] : extra) res.set(k, v);
    if (e.status == 401) res.set(http::field::www_authenticate, "Bearer realm=\"api\"");
    res.body() = json::serialize(json::object{{"code", e.code}, {"message", e.message}, {"status", e.status}}) + "\n";
    res.keep_alive(keep_alive);
    res.prepare_payload();
    auto [ec, n] = co_await http::async_write(down, res, use_nothrow);
    co_return !ec && keep_alive;
}

namespace {

// Reads the whole body for the rewrite path; answers 413/400 itself. False: do not go on.
net::awaitable<bool> read_whole_body(worker& w, beast::tcp_stream& down, beast::flat_buffer& buffer,
                                     http::request_parser<http::string_body>& p, const std::string& request_id)
{
    const config::server_config cfg = w.tenants().config().server; // a copy: a reload may free the old config
    p.body_limit(static_cast<std::uint64_t>(cfg.max_request_body_bytes));
    error_code ec;
    {
        client_deadline deadline(down, cfg.client_idle_timeout_ms);
        auto [read_ec, n] = co_await http::async_read(down, buffer, p, use_nothrow);
        ec = deadline.fired() ? error_code(beast::error::timeout) : read_ec;
    }
    // Errors are named before co_await: g++ 12 mishandles temporaries inside co_await expressions.
    if (ec == http::error::body_limit) {
        gateway_error too_large{413, "request_too_large", "The request body is larger than the gateway accepts."};
        co_await write_gateway_error(down, too_large, request_id, false);
    } else if (ec == beast::error::timeout) { // a body trickled too slowly (client_idle_timeout_ms in all)
        gateway_error slow{408, "request_timeout", "The request body took too long to arrive."};
        co_await write_gateway_error(down, slow, request_id, false);
    } else if (ec && ec != net::error::eof && ec != http::error::partial_message) {
        gateway_error malformed{400, "bad_request", "Malformed HTTP request body."};
        co_await write_gateway_error(down, malformed, request_id, false);
    }
    co_return !ec;
}

// The client's address: the peer, or the last X-Forwarded-For hop when the peer is a
// trusted proxy (nginx in front).
std::string client_address(const std::string& peer, const http::request_header<>& req, const std::vector<std::string>& trusted)
{
    auto forwarded = req["X-Forwarded-For"];
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
}

// X-RateLimit-* (and Retry-After when refused) for tenants with a rate.
header_list rate_headers(const admission& a)
{
    header_list h;
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
        return {429, "too_many_requests", std::string("Rate limit exceeded (") + rate + " requests per second)."};
    }
    case quota_reason::tenant_concurrency:
        return {429, "too_many_requests", "Too many concurrent requests (at most " + std::to_string(t.max_concurrent) + ")."};
    case quota_reason::app_concurrency: return {429, "too_many_requests", "Too many concurrent requests for this app."};
    case quota_reason::tokens:
        return {429, "quota_exceeded", "The daily token quota (" + std::to_string(t.tokens_per_day) +
                                           " tokens) is used up; it renews at 00:00 UTC."};
    case quota_reason::store_unavailable: return {503, "unavailable", "Quotas cannot be checked right now."};
    }
    return {500, "internal_error", "Unexpected quota decision."};
}

// Answers a request refused before its body was read. The answer goes out at once; a
// small body (≤ 64 KiB, not awaiting 100-continue) is then read and dropped so the
// connection stays usable; otherwise the connection closes. True: reusable.
net::awaitable<bool> refuse_early(beast::tcp_stream& down, beast::flat_buffer& buffer, header_parser& hp, const gateway_error& e,
                                  const std::string& request_id, bool keep_alive, const header_list& extra)
{
    auto len = hp.content_length();
    bool small = hp.is_done() ||
                 (len && *len <= 64 * 1024 && !beast::iequals(hp.get()[http::field::expect], "100-continue"));
    if (!co_await write_gateway_error(down, e, request_id, keep_alive && small, extra)) co_return false;
    if (hp.is_done()) co_return true;
    http::request_parser<http::string_body> p{std::move(hp)};
    p.body_limit(64 * 1024);
    client_deadline deadline(down, std::chrono::seconds(10));
    auto [ec, n] = co_await http::async_read(down, buffer, p, use_nothrow);
    co_return !ec;
}

std::size_t field_count(const http::request_header<>& h)
{
    return static_cast<std::size_t>(std::distance(h.begin(), h.end()));
}

// "HTTP/1.1 100 Continue" when the client waits for it before sending its body.
net::awaitable<bool> continue_if_expected(beast::tcp_stream& down, const http::request_header<>& req)
{
    if (!beast::iequals(req[http::field::expect], "100-continue")) co_return true;
    http::response<http::empty_body> cont{http::status::continue_, 11};
    auto [ec, n] = co_await http::async_write(down, cont, use_nothrow);
    co_return !ec;
}

} // namespace

namespace {

// What serving a request needs from its session, bundled for the helpers below.
struct downstream_request
{
    worker& w;
    const tenant_directory& dir;
    beast::tcp_stream& down;
    beast::flat_buffer& buffer;
    const std::string& request_id;
    request_record& rec;
};

exchange make_exchange(downstream_request& d, const http::request_header<>& req, bool keep_alive, request_plan& plan,
                       quota_ticket* ticket, header_list quota_headers)
{
    exchange x{d.w, d.dir, d.down, d.buffer, req, *plan.who, std::move(*plan.target), d.request_id, keep_alive, ticket,
               std::move(quota_headers)};
    x.rec = &d.rec;
    x.generating = plan.generates;
    x.place = plan.place;
    x.uploads_file = plan.uploads_file;
    return x;
}

// A body with nothing to change in it: it goes to Dify as it arrives.
net::awaitable<bool> forward_streamed_body(downstream_request& d, header_parser& hp, request_plan& plan, quota_ticket* ticket,
                                           header_list quota_headers)
{
    http::request_parser<http::buffer_body> body_parser{std::move(hp)};
    body_parser.body_limit(static_cast<std::uint64_t>(d.dir.config().server.max_request_body_bytes));
    if (!co_await continue_if_expected(d.down, body_parser.get())) co_return false;
    auto x = make_exchange(d, body_parser.get(), body_parser.get().keep_alive(), plan, ticket, std::move(quota_headers));
    x.streamed = &body_parser;
    d.rec.bytes_in = *body_parser.content_length();
    co_return co_await forward_request(x);
}

// A body read whole first (`user` is rewritten in it; or no body at all), then forwarded.
net::awaitable<bool> forward_whole_body(downstream_request& d, header_parser& hp, request_plan& plan, quota_ticket* ticket,
                                        header_list quota_headers)
{
    const bool has_body = !hp.is_done();
    http::request_parser<http::string_body> body_parser{std::move(hp)};
    if (has_body) {
        if (!co_await continue_if_expected(d.down, body_parser.get())) co_return false;
        const auto fields_before = field_count(body_parser.get());
        if (!co_await read_whole_body(d.w, d.down, d.buffer, body_parser, d.request_id)) co_return false;
        // Beast merges a chunked body's trailer fields into the header: Dify's stack would
        // see them (or not) differently, so a request with trailers is refused.
        if (field_count(body_parser.get()) != fields_before) {
            gateway_error trailers{400, "bad_request", "Requests with trailers are not accepted."};
            d.rec.status = trailers.status;
            co_await write_gateway_error(d.down, trailers, d.request_id, false);
            co_return false;
        }
    }
    auto x = make_exchange(d, body_parser.get(), body_parser.get().keep_alive(), plan, ticket, std::move(quota_headers));
    x.body = std::move(body_parser.get().body());
    d.rec.bytes_in = x.body.size();
    co_return co_await forward_request(x);
}

} // namespace

net::awaitable<bool> serve_request(worker& w, beast::tcp_stream& down, beast::flat_buffer& buffer, header_parser& hp,
                                   const std::string& peer)
{
    const auto snapshot = w.tenants_snapshot(); // in-flight requests finish on the config they started with
    const auto& head = hp.get();
    std::string request_id(head["X-Request-Id"]);
    if (!valid_request_id(request_id)) request_id = w.new_request_id();
    // Every way out of here records the request once (metrics, access log).
    struct recorder
    {
        worker& w;
        request_record rec;
        ~recorder() { record_request(w, rec); }
    } r{w, {}};
    r.rec.request_id = request_id;
    r.rec.method = std::string(head.method_string());
    r.rec.client = client_address(peer, head, snapshot->config().server.trusted_proxies);
    const bool keep_alive = head.keep_alive() && !w.draining();

    auto plan = plan_request(*snapshot, head);
    if (plan.who) r.rec.tenant = plan.who->name;
    if (plan.target) r.rec.app = plan.target->app->name;
    r.rec.pair = plan.pair;
    r.rec.endpoint = plan.endpoint;
    if (plan.refusal) {
        r.rec.status = plan.refusal->status;
        co_return co_await refuse_early(down, buffer, hp, *plan.refusal, request_id, keep_alive && !plan.close_after_refusal, {});
    }
    // Quotas are checked before any upstream work (and before the body is read).
    auto* counts = w.usage().find(plan.pair);
    if (counts) ++counts->requests;
    auto admitted = co_await w.quotas().admit(plan.who->name, plan.target->app->name, plan.generates);
    auto quota_headers = rate_headers(admitted);
    if (admitted.refused) {
        if (counts) ++counts->refused[static_cast<std::size_t>(*admitted.refused)];
        ++w.metrics().tenant(plan.who->id).rate_limited[static_cast<std::size_t>(*admitted.refused)];
        auto refusal = quota_error(*plan.who->cfg, *admitted.refused);
        r.rec.status = refusal.status;
        co_return co_await refuse_early(down, buffer, hp, refusal, request_id, keep_alive, quota_headers);
    }
    std::unique_ptr<quota_ticket> ticket = std::move(admitted.ticket); // returned when this frame ends
    downstream_request d{w, *snapshot, down, buffer, request_id, r.rec};
    if (!hp.is_done() && plan.place == core::user_place::none && hp.content_length())
        co_return co_await forward_streamed_body(d, hp, plan, ticket.get(), std::move(quota_headers));
    co_return co_await forward_whole_body(d, hp, plan, ticket.get(), std::move(quota_headers));
}

} // namespace gw::gateway
