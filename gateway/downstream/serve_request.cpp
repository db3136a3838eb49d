// Serving one tenant request, the downstream side: authenticate and route on the header,
// admit against the quotas, read or stream the body, then hand the exchange to
// forward_request (proxy/forward.cpp) for the upstream side.
#include "gateway/downstream/serve_request.hpp"

#include "core/dify_routes.hpp"
#include "core/text.hpp"
#include "gateway/proxy/exchange.hpp"
#include "gateway/proxy/forward.hpp"
#include "gateway/downstream/request_checks.hpp"
#include "gateway/downstream/request_steps.hpp"
#include "gateway/downstream/serve_openai.hpp"
#include "gateway/ops/tracing.hpp"
#include "gateway/proxy/request_plan.hpp"
#include "gateway/http_fields.hpp"

#include <boost/json.hpp>

#include <algorithm>

namespace gw::gateway {

namespace json = boost::json;

client_deadline::client_deadline(client_socket& stream, std::chrono::milliseconds limit) : timer_(stream.get_executor())
{
    timer_.expires_after(limit);
    // The handler may run after this object is gone: it touches the stream only while the
    // shared state says the deadline is still in force.
    timer_.async_wait([state = state_, &stream](error_code ec) {
        if (ec || state->done) return;
        state->fired = true;
        error_code ignored;
        stream.cancel(ignored);
    });
}

client_deadline::~client_deadline()
{
    state_->done = true;
    timer_.cancel();
}

net::awaitable<bool> write_gateway_error(client_socket& down, const gateway_error& e, const std::string& request_id,
                                         bool keep_alive, const header_list& extra, api_front front)
{
    http::response<http::string_body> res{static_cast<http::status>(e.status), 11};
    res.set(http::field::content_type, "application/json");
    res.set("X-Request-Id", request_id);
    for (const auto& [k, v] : extra) res.set(k, v);
    if (e.status == 401) res.set(http::field::www_authenticate, "Bearer realm=\"api\"");
    res.body() = front == api_front::dify
                     ? json::serialize(json::object{{"code", e.code}, {"message", e.message}, {"status", e.status}}) + "\n"
                     : core::openai::error_body(openai_error(e));
    res.keep_alive(keep_alive);
    res.prepare_payload();
    auto [ec, n] = co_await http::async_write(down, res, use_nothrow);
    co_return !ec && keep_alive;
}

namespace {

// A body with nothing to change in it: it goes to Dify as it arrives. The exchange is kept in
// `scope`; its reply is not handed over (the body's parser is in this frame).
net::awaitable<bool> forward_streamed_body(downstream_request& d, header_parser& hp, request_plan& plan, request_scope& scope,
                                           header_list quota_headers)
{
    client_request_parser<http::buffer_body> body_parser{std::move(hp)};
    body_parser.body_limit(static_cast<std::uint64_t>(d.dir.config().server.max_request_body_bytes));
    if (!co_await continue_if_expected(d.down, body_parser.get())) co_return false;
    auto& x = make_exchange(scope.x, d, body_parser.get(), keeps_alive(body_parser.get()), plan, scope.ticket.get(),
                            std::move(quota_headers));
    x.streamed = &body_parser;
    d.rec.bytes_in = *body_parser.content_length();
    co_return co_await forward_request(x);
}

// A body read whole first (`user` is rewritten in it; or no body at all), then forwarded.
// The request and its exchange are kept in `scope`, which an SSE reply is handed over with.
net::awaitable<bool> forward_whole_body(downstream_request& d, header_parser& hp, request_plan& plan, request_scope& scope,
                                        header_list quota_headers)
{
    const bool has_body = !hp.is_done();
    auto& body_parser = scope.body.emplace(std::move(hp));
    if (has_body) {
        if (!co_await continue_if_expected(d.down, body_parser.get())) co_return false;
        const auto fields_before = field_count(body_parser.get());
        if (!co_await read_whole_body(d.w, d.down, d.buffer, body_parser, d.request_id, api_front::dify)) co_return false;
        // Beast merges a chunked body's trailer fields into the header: Dify's stack would
        // see them (or not) differently, so a request with trailers is refused.
        if (field_count(body_parser.get()) != fields_before) {
            gateway_error trailers{400, "bad_request", "Requests with trailers are not accepted."};
            d.rec.status = trailers.status;
            co_await write_gateway_error(d.down, trailers, d.request_id, false);
            co_return false;
        }
    }
    auto& x = make_exchange(scope.x, d, body_parser.get(), keeps_alive(body_parser.get()), plan, scope.ticket.get(),
                            std::move(quota_headers));
    x.client_fields = &body_parser.get();
    x.handoff.allowed = true;
    x.body = std::move(body_parser.get().body());
    d.rec.bytes_in = x.body.size();
    co_return co_await forward_request(x);
}

} // namespace

request_scope::~request_scope()
{
    x.reset();
    body.reset();
    ticket.reset();
    record_request(w, rec);
}

void request_scope_deleter::operator()(request_scope* s) const
{
    delete s;
}

net::awaitable<bool> serve_request(worker& w, client_socket& down, beast::flat_buffer& buffer, header_parser& hp,
                                   const std::string& peer, key_memo& keys, handed_stream& stream)
{
    // What the request owns is in one heap block from the start (request_scope): its record
    // (written when the scope ends, on every way out) and the configuration it started with
    // (in-flight requests finish on it); on the Dify front later its quota ticket, body and
    // exchange, and an SSE reply is handed over with it. Out of this frame, the frame stays
    // within the size Asio recycles.
    handed_stream scope{new request_scope(w, w.tenants_snapshot())};
    const auto& snapshot = *scope->snapshot;
    const auto& head = hp.get();
    auto& rec = scope->rec;
    // The record holds the request's id; everything after refers to that one string.
    rec.request_id = field_value(head, "X-Request-Id");
    if (!valid_request_id(rec.request_id)) rec.request_id = w.new_request_id();
    rec.method = std::string(head.method_string());
    rec.client = client_address(peer, head, snapshot.config().server.trusted_proxies);
    rec.trace = begin_request_trace(w, head);
    if (rec.trace.exported) {
        const std::string_view target = head.target();
        rec.path = std::string(target.substr(0, target.find('?')));
        rec.user_agent = std::string(field_value(head, http::field::user_agent));
    }
    const bool keep_alive = keeps_alive(head) && !w.draining();

    auto plan = plan_request(snapshot, head, &keys);
    if (plan.who) rec.tenant = plan.who->name;
    if (plan.target) rec.app = plan.target->app->name;
    rec.pair = plan.pair;
    rec.endpoint = plan.endpoint;
    if (plan.refusal) {
        rec.status = plan.refusal->status;
        co_return co_await refuse_early(down, buffer, hp, *plan.refusal, rec.request_id, keep_alive && !plan.close_after_refusal, {}, plan.front);
    }
    if (plan.front != api_front::dify) { // the OpenAI front: its app is named in its body
        downstream_request d{w, snapshot, down, buffer, rec.request_id, rec};
        co_return co_await serve_openai(d, hp, plan, keep_alive);
    }
    // Quotas are checked before any upstream work (and before the body is read).
    auto admitted = co_await admit(w, plan, rec);
    auto quota_headers = rate_headers(admitted);
    if (auto refusal = account_admission(w, plan, admitted)) {
        rec.status = refusal->status;
        co_return co_await refuse_early(down, buffer, hp, *refusal, rec.request_id, keep_alive, quota_headers, api_front::dify);
    }
    scope->ticket = std::move(admitted.ticket); // returned when the scope ends
    downstream_request d{w, snapshot, down, buffer, rec.request_id, rec};
    if (!hp.is_done() && plan.place == core::user_place::none && hp.content_length())
        co_return co_await forward_streamed_body(d, hp, plan, *scope, std::move(quota_headers));
    const bool reusable = co_await forward_whole_body(d, hp, plan, *scope, std::move(quota_headers));
    if (scope->x && scope->x->handoff.pending) stream = std::move(scope); // relay_handed_stream goes on
    co_return reusable;
}

} // namespace gw::gateway
