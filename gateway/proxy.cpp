// Serving one tenant request: authenticate and route on the header, admit against the
// quotas, read or stream the body, forward with retries, relay the response.
#include "gateway/proxy.hpp"

#include "core/dify_routes.hpp"
#include "core/retry.hpp"
#include "core/text.hpp"
#include "core/upstream_attempts.hpp"
#include "gateway/exchange.hpp"
#include "gateway/relay.hpp"
#include "gateway/request_checks.hpp"

#include <boost/json.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>

namespace gw::gateway {

namespace json = boost::json;

namespace {

// Copies the client's body to Dify piece by piece (endpoints that need no rewrite).
template <typename S>
net::awaitable<error_code> stream_client_body(exchange& x, S& up)
{
    auto& dp = *x.streamed;
    // The whole body within client_idle_timeout_ms (a body trickled byte by byte must not
    // hold an upstream connection and a quota slot for ever).
    client_deadline deadline(x.down, std::chrono::milliseconds(x.dir.config().server.client_idle_timeout_ms));
    std::array<char, piece_size> piece;
    while (!dp.is_done()) {
        dp.get().body().data = piece.data();
        dp.get().body().size = piece.size();
        auto [ec, n] = co_await http::async_read_some(x.down, x.down_buffer, dp, use_nothrow);
        if (ec == http::error::need_buffer) ec = {};
        if (deadline.fired()) {
            x.body_timed_out = true;
            co_return error_code(beast::error::timeout);
        }
        if (ec) {
            x.client_broken = true;
            co_return ec;
        }
        std::size_t got = piece.size() - dp.get().body().size;
        if (got == 0) continue;
        x.body_sent = true;
        auto [wec, wn] = co_await net::async_write(up, net::buffer(piece.data(), got), use_nothrow);
        if (wec) co_return wec;
    }
    co_return error_code{};
}

// Sends the request on `conn` and reads the response head within the response deadline.
template <typename S>
net::awaitable<error_code> send_and_read_head(exchange& x, upstream_connection& conn,
                                              http::response_parser<http::buffer_body>& p)
{
    auto& up = stream_of<S>(conn);
    // Head and a body of up to coalesce_limit go out as one buffer: one TLS record and one
    // send, where TLS streams would otherwise write each buffer (each header) separately.
    std::string wire = serialize_head(x.up.head);
    auto body = body_buffers(x, x.body);
    if (net::buffer_size(body) <= coalesce_limit) {
        for (const auto& b : body) wire.append(static_cast<const char*>(b.data()), b.size());
        body.clear();
    }
    auto [hec, hn] = co_await net::async_write(up, net::buffer(wire), use_nothrow);
    if (hec) co_return hec;
    if (!body.empty()) {
        auto [bec, bn] = co_await net::async_write(up, body, use_nothrow);
        if (bec) co_return bec;
    }
    if (x.streamed) {
        if (auto ec = co_await stream_client_body(x, up)) co_return ec;
    }
    auto [rec, rn] = co_await http::async_read_header(up, conn.buffer(), p, use_nothrow);
    co_return rec;
}

// A Dify reply kept whole to decide on a retry (small error bodies only).
struct held_reply
{
    http::response<http::string_body> res;
    core::upstream_failure failure;
};

constexpr std::size_t max_held_reply = 64 * 1024;

// Reads the rest of a small error reply so it can be retried or passed on whole.
// nullopt: not a retryable kind of reply, or too large to hold (then relayed as usual).
template <typename S>
net::awaitable<std::optional<held_reply>> hold_error_reply(upstream_connection& conn, http::response_parser<http::buffer_body>& p)
{
    const int status = static_cast<int>(p.get().result_int());
    if (status != 400 && status != 429 && status != 500 && status != 502 && status != 503 && status != 504) co_return std::nullopt;
    auto len = p.content_length();
    if (!len || *len > max_held_reply) co_return std::nullopt;
    held_reply out;
    out.res.result(p.get().result());
    out.res.version(11);
    for (const auto& f : p.get()) out.res.insert(f.name_string(), f.value());
    std::string body;
    std::array<char, piece_size> piece;
    auto& up = stream_of<S>(conn);
    while (!p.is_done()) {
        p.get().body().data = piece.data();
        p.get().body().size = piece.size();
        auto [ec, n] = co_await http::async_read_some(up, conn.buffer(), p, use_nothrow);
        if (ec == http::error::need_buffer) ec = {};
        if (ec) co_return std::nullopt;
        body.append(piece.data(), piece.size() - p.get().body().size);
    }
    std::string code, message;
    json::error_code jec;
    auto doc = json::parse(body, jec);
    if (!jec && doc.is_object()) {
        if (auto* c = doc.get_object().if_contains("code"); c && c->is_string()) code = std::string(c->get_string());
        if (auto* m = doc.get_object().if_contains("message"); m && m->is_string()) message = std::string(m->get_string());
    }
    out.failure = core::classify_status(status, code, message).value_or(core::upstream_failure::other);
    out.res.body() = std::move(body);
    co_return out;
}

// Passes a held Dify reply to the client unchanged (status, end-to-end headers, body).
net::awaitable<bool> write_held_reply(exchange& x, held_reply& h)
{
    http::response<http::string_body> res{h.res.result(), 11};
    for (const auto& f : h.res)
        if (!is_hop_by_hop(f.name_string()) && !core::iequals(f.name_string(), "content-length")) res.insert(f.name_string(), f.value());
    res.set("X-Request-Id", x.request_id);
    for (const auto& [k, v] : x.quota_headers) res.set(k, v);
    bool keep_alive = client_reusable(x);
    res.keep_alive(keep_alive);
    res.body() = std::move(h.res.body());
    res.prepare_payload();
    x.rec->status = static_cast<int>(res.result_int());
    x.rec->bytes_out += res.body().size();
    auto [ec, n] = co_await http::async_write(x.down, res, use_nothrow);
    co_return !ec && keep_alive;
}

// Logs a change of the upstream's circuit state once.
struct breaker_watch
{
    const std::string& upstream;
    const core::circuit_breaker& breaker;
    core::circuit_breaker::state before = breaker.current();
    void check()
    {
        auto now = breaker.current();
        if (now != before) spdlog::warn("upstream {}: circuit {}", upstream, core::to_string(now));
        before = now;
    }
};

core::attempt_settings attempt_settings_for(const exchange& x, const config::upstream_config& u)
{
    core::attempt_settings s;
    s.retry = {u.retry.max_attempts, std::chrono::milliseconds(u.retry.base_delay_ms), std::chrono::milliseconds(u.retry.max_delay_ms)};
    s.deadline = x.w.now() + std::chrono::milliseconds(u.response_timeout_ms);
    s.generating = x.generating;
    s.safe_method = x.req.method() == http::verb::get || x.req.method() == http::verb::head;
    s.key_count = x.dir.config().apps.at(x.target.app).api_keys.size();
    return s;
}

// What one call's attempts share: the connection borrowed, the reply being read, the
// last held error reply, the last failure.
struct attempt_state
{
    std::optional<http::response_parser<http::buffer_body>> parser;
    std::optional<held_reply> held;
    upstream_pool::lease lease;
    error_code failure;
    std::optional<bool> answered; // the attempt ended the exchange itself: forward() returns this
};

// One attempt: acquire, send, read the head, hold a small retryable error reply. Returns
// what the machine says to do next.
template <typename S>
net::awaitable<core::attempt_action> run_attempt(exchange& x, upstream_pool& pool, core::attempt_machine& attempts, attempt_state& st,
                                                 clock::time_point deadline)
{
    ++x.rec->attempts;
    auto [aec, acquired] = co_await pool.acquire(deadline);
    if (aec) {
        st.failure = aec;
        co_return attempts.acquire_failed(x.w.now());
    }
    st.lease = std::move(acquired);
    st.parser.emplace();
    st.parser->body_limit(boost::none);
    if (x.req.method() == http::verb::head) st.parser->skip(true);
    st.lease->expires_at(deadline);
    if (x.ticket) x.ticket->reached_upstream();
    if (auto ec = co_await send_and_read_head<S>(x, *st.lease, *st.parser)) {
        st.lease.give_back(false);
        if (x.client_broken) { // the client's body broke off: nothing to answer
            st.answered = false;
            co_return core::attempt_action{};
        }
        if (x.body_timed_out) {
            x.client_broken = true; // the rest of the body is still coming: close after the answer
            gateway_error slow{408, "request_timeout", "The request body took too long to arrive."};
            st.answered = co_await write_error(x, slow);
            co_return core::attempt_action{};
        }
        // A pooled connection the server had already closed: nothing reached Dify.
        bool stale = st.lease.reused() && !st.parser->got_some() && !is_timeout(ec);
        st.failure = ec;
        co_return attempts.send_failed(x.w.now(), stale, x.body_sent);
    }
    st.held = co_await hold_error_reply<S>(*st.lease, *st.parser);
    if (!st.held)
        co_return attempts.replied(x.w.now(), static_cast<int>(st.parser->get().result_int()), std::nullopt, std::nullopt, x.body_sent);
    st.lease.give_back(st.parser->get().keep_alive());
    std::optional<core::nanos> retry_after;
    if (auto ra = st.held->res[http::field::retry_after]; !ra.empty()) retry_after = core::parse_retry_after(ra, x.w.unix_seconds());
    auto act = attempts.replied(x.w.now(), st.held->res.result_int(), st.held->failure, retry_after, x.body_sent);
    if (act.step == core::attempt_step::wait)
        spdlog::debug("request {}: retrying after {} ({} ms)", x.request_id, st.held->res.result_int(),
                      std::chrono::duration_cast<std::chrono::milliseconds>(act.delay).count());
    co_return act;
}

// The answer when retries end without a reply to relay: Dify's held reply, or ours.
net::awaitable<bool> answer_without_relay(exchange& x, const core::attempt_action& act, attempt_state& st)
{
    if (act.step == core::attempt_step::pass_held) {
        if (x.ticket) x.ticket->charge(0); // Dify refused: no tokens used
        co_return co_await write_held_reply(x, *st.held);
    }
    if (act.step == core::attempt_step::fail_circuit_open) {
        gateway_error open{503, "unavailable", "The upstream is unavailable (circuit open); retry later."};
        co_return co_await write_error(x, open);
    }
    auto error = upstream_failure(st.failure, act.step == core::attempt_step::fail_connect ? "connect" : "response"); // named: g++ 12
    co_return co_await write_error(x, error);
}

// Relays the reply the attempts ended with, then settles the request's usage.
template <typename S>
net::awaitable<bool> relay_response(exchange& x, attempt_state& st, const std::string& upstream_name)
{
    const auto& head = st.parser->get();
    // Dify refused the request (4xx/5xx before generating): it used no tokens.
    if (x.ticket && head.result_int() != 200) x.ticket->charge(0);
    // A HEAD reply has no body, whatever its type: nothing to relay after the head.
    bool sse = x.req.method() != http::verb::head && core::media_type(head[http::field::content_type]) == "text/event-stream";
    bool keep_alive = client_reusable(x);
    const std::string head_bytes = response_head(x, *st.parser, sse, keep_alive);
    if (sse) { // the head goes out at once: the client sees the stream open
        auto [ec, n] = co_await send_to_client(x, net::buffer(head_bytes));
        if (ec) co_return false; // the lease closes the upstream connection
    }
    auto [down_ok, up_ok] = sse ? co_await relay_sse<S>(x, *st.lease, *st.parser, upstream_name)
                                : co_await relay_body<S>(x, *st.lease, *st.parser, head_bytes);
    ++st.lease->requests;
    st.lease.give_back(up_ok);
    if (x.usage) {
        x.rec->tokens = *x.usage;
        x.w.metrics().tokens[{x.who.name, x.target.app}] += static_cast<std::uint64_t>(*x.usage);
    }
    if (x.ticket && x.usage) {
        x.ticket->charge(*x.usage);
        x.w.local_quota().observe_usage(x.target.app, *x.usage);
    }
    co_return down_ok && keep_alive;
}

// Drives the attempts of one call (core::attempt_machine decides), then relays the answer.
template <typename S>
net::awaitable<bool> forward(exchange& x)
{
    const auto& upstream_name = x.dir.config().apps.at(x.target.app).upstream;
    auto pool_ref = x.w.pool(upstream_name); // kept: a reload may retire the pool meanwhile
    auto& pool = *pool_ref;
    const auto deadline = clock::now() + std::chrono::milliseconds(pool.config().response_timeout_ms);
    core::attempt_machine attempts(attempt_settings_for(x, pool.config()), pool.breaker, pool.budget, [&w = x.w] { return w.random01(); });
    breaker_watch watch{upstream_name, pool.breaker};
    attempt_state st;
    for (auto act = attempts.start(x.w.now());;) {
        watch.check();
        if (act.retrying) ++x.w.metrics().retries[{upstream_name, core::to_string(*act.retrying)}];
        if (act.rotate_key) {
            x.api_key = x.w.next_api_key(x.target.app);
            x.up.head.set(http::field::authorization, "Bearer " + x.api_key);
        }
        if (act.step == core::attempt_step::relay) break;
        if (act.step == core::attempt_step::wait) {
            timer_for(x).expires_after(act.delay);
            co_await timer_for(x).async_wait(use_nothrow);
            act = attempts.resume(x.w.now());
            continue;
        }
        if (act.step != core::attempt_step::acquire) co_return co_await answer_without_relay(x, act, st);
        act = co_await run_attempt<S>(x, pool, attempts, st, deadline);
        if (st.answered) co_return *st.answered;
    }
    watch.check();
    co_return co_await relay_response<S>(x, st, upstream_name);
}

} // namespace

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
        client_deadline deadline(down, std::chrono::milliseconds(cfg.client_idle_timeout_ms));
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
    auto& m = w.metrics();
    ++m.requests[{r.tenant, r.app, r.endpoint, r.status}];
    if (!r.tenant.empty()) {
        m.duration[{r.tenant, r.app}].observe(seconds);
        if (r.ttfb_seconds) m.ttfb[{r.tenant, r.app}].observe(*r.ttfb_seconds);
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
    down.expires_after(std::chrono::seconds(10));
    auto [ec, n] = co_await http::async_read(down, buffer, p, use_nothrow);
    down.expires_never();
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

net::awaitable<bool> forward_request(exchange& x)
{
    if (auto refused = build_upstream_request(x)) co_return co_await write_error(x, *refused);
    if (auto refs = named_resources(x); !refs.empty())
        if (auto foreign = co_await check_ownership(x, std::move(refs))) co_return co_await write_error(x, *foreign);
    if (x.dir.upstream_of(x.target.app).tls) co_return co_await forward<tls_stream>(x);
    co_return co_await forward<beast::tcp_stream>(x);
}

} // namespace

net::awaitable<bool> serve_request(worker& w, beast::tcp_stream& down, beast::flat_buffer& buffer, header_parser& hp,
                                   const std::string& peer)
{
    const auto snapshot = w.tenants_snapshot(); // in-flight requests finish on the config they started with
    const auto& dir = *snapshot;
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
    r.rec.client = client_address(peer, head, dir.config().server.trusted_proxies);
    bool keep_alive = head.keep_alive() && !w.draining();

    // What Dify's stack could read differently is refused before anything else; the
    // connection closes, since the request's framing may itself be in doubt.
    if (auto ambiguous = check_request_head(head)) {
        r.rec.status = ambiguous->status;
        co_return co_await refuse_early(down, buffer, hp, *ambiguous, request_id, false, {});
    }
    std::string why;
    std::string_view target = head.target();
    auto path = core::canonicalize_path(target.substr(0, target.find('?')), &why);
    if (!path) {
        gateway_error bad_path{400, "bad_request", "The request path cannot be read unambiguously: " + why + "."};
        r.rec.status = bad_path.status;
        co_return co_await refuse_early(down, buffer, hp, bad_path, request_id, keep_alive, {});
    }

    gateway_error err;
    const tenant* who = dir.authenticate(head[http::field::authorization], err);
    if (!who) {
        r.rec.status = err.status;
        co_return co_await refuse_early(down, buffer, hp, err, request_id, keep_alive, {});
    }
    r.rec.tenant = who->name;
    const std::string_view method = head.method_string();
    auto app = dir.route(*who, method, *path, err);
    if (!app) {
        r.rec.status = err.status;
        co_return co_await refuse_early(down, buffer, hp, err, request_id, keep_alive, {});
    }
    r.rec.app = app->app;
    const core::dify_route* route = app->match.route; // null: an unknown route forwarded by switch
    r.rec.endpoint = endpoint_label(route);

    // Quotas are checked before any upstream work (and before the body is read).
    const bool generates = route && route->generating;
    auto* counts = w.usage().find(who->name, app->app);
    if (counts) ++counts->requests;
    auto admitted = co_await w.quotas().admit(who->name, app->app, generates);
    auto quota_headers = rate_headers(admitted);
    if (admitted.refused) {
        if (counts) ++counts->refused[static_cast<std::size_t>(*admitted.refused)];
        ++w.metrics().rate_limited[{who->name, reason_name(*admitted.refused)}];
        auto refusal = quota_error(*who->cfg, *admitted.refused);
        r.rec.status = refusal.status;
        co_return co_await refuse_early(down, buffer, hp, refusal, request_id, keep_alive, quota_headers);
    }
    std::unique_ptr<quota_ticket> ticket = std::move(admitted.ticket);

    const bool has_body = !hp.is_done();
    const auto place = route ? route->place : core::user_place::anywhere;
    const bool rewrite = place != core::user_place::none;
    if (has_body && !rewrite && hp.content_length()) {
        // Nothing to change in this body: it goes to Dify as it arrives.
        http::request_parser<http::buffer_body> body_parser{std::move(hp)};
        body_parser.body_limit(static_cast<std::uint64_t>(dir.config().server.max_request_body_bytes));
        if (!co_await continue_if_expected(down, body_parser.get())) co_return false;
        exchange x{w, dir, down, buffer, body_parser.get(), *who, std::move(*app), request_id, body_parser.get().keep_alive(),
                   ticket.get(), std::move(quota_headers)};
        x.streamed = &body_parser;
        x.rec = &r.rec;
        x.generating = generates;
        x.place = place;
        x.uploads_file = route && route->creates_file;
        r.rec.bytes_in = *body_parser.content_length();
        co_return co_await forward_request(x);
    }
    http::request_parser<http::string_body> body_parser{std::move(hp)};
    if (has_body) {
        if (!co_await continue_if_expected(down, body_parser.get())) co_return false;
        const auto fields_before = field_count(body_parser.get());
        if (!co_await read_whole_body(w, down, buffer, body_parser, request_id)) co_return false;
        // Beast merges a chunked body's trailer fields into the header: Dify's stack would
        // see them (or not) differently, so a request with trailers is refused.
        if (field_count(body_parser.get()) != fields_before) {
            gateway_error trailers{400, "bad_request", "Requests with trailers are not accepted."};
            r.rec.status = trailers.status;
            co_await write_gateway_error(down, trailers, request_id, false);
            co_return false;
        }
    }
    exchange x{w, dir, down, buffer, body_parser.get(), *who, std::move(*app), request_id, body_parser.get().keep_alive(),
               ticket.get(), std::move(quota_headers)};
    x.body = std::move(body_parser.get().body());
    x.rec = &r.rec;
    x.generating = generates;
    x.place = place;
    x.uploads_file = route && route->creates_file;
    r.rec.bytes_in = x.body.size();
    co_return co_await forward_request(x);
}

} // namespace gw::gateway
