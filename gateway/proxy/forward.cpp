// Serving one tenant request, the upstream side: the attempts of the call to Dify (driven
// by core::attempt_machine: retries, breaker, key rotation, held error replies), the
// request body sent or streamed, and the reply relayed (relay.hpp).
#include "gateway/proxy/forward.hpp"

#include "core/retry.hpp"
#include "core/text.hpp"
#include "core/upstream_attempts.hpp"
#include "gateway/downstream/serve_request.hpp"
#include "gateway/proxy/openai_relay.hpp"
#include "gateway/proxy/relay.hpp"
#include "gateway/http_fields.hpp"

#include <boost/json.hpp>

#include <spdlog/spdlog.h>

#include <array>
#include <type_traits>

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
    client_deadline deadline(x.down, x.dir.config().server.client_idle_timeout_ms);
    recycled_buffer piece(piece_size);
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
                                              dify_reply_parser<http::buffer_body>& p)
{
    auto& up = stream_of<S>(conn);
    // Head and a body of up to coalesce_limit go out as one buffer: one TLS record and one
    // send, where TLS streams would otherwise write each buffer (each header) separately.
    auto body = body_buffers(x, x.body);
    recycled_string wire;
    wire.reserve(x.up.fields.size() + x.up.target.size() + 256 + std::min(net::buffer_size(body), coalesce_limit));
    append_upstream_head(wire, x);
    if (net::buffer_size(body) <= coalesce_limit) {
        for (const auto& b : body) wire.append(static_cast<const char*>(b.data()), b.size());
        body.clear();
    }
    // TLS: one SSL_write now usually takes it all (no asynchronous write and its post).
    net::const_buffer head_bytes = net::buffer(wire);
    if constexpr (std::is_same_v<S, tls_stream>) {
        error_code wec;
        head_bytes += up.write_now(head_bytes.data(), head_bytes.size(), wec);
        if (wec && wec != net::error::would_block) co_return wec;
    }
    if (head_bytes.size() > 0) {
        auto [hec, hn] = co_await net::async_write(up, head_bytes, use_nothrow);
        if (hec) co_return hec;
    }
    if (!body.empty()) {
        auto [bec, bn] = co_await net::async_write(up, body, use_nothrow);
        if (bec) co_return bec;
    }
    if (x.streamed) {
        if (auto ec = co_await stream_client_body(x, up)) co_return ec;
    }
    // A read takes at most the buffer's free room (512 bytes for a buffer that never held
    // more): with room for a whole usual reply, one SSL_read takes the record it came in,
    // where 512-byte reads took three. A stream gives the room back (relay_sse).
    conn.buffer().reserve(reply_read_room);
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

// Whether a reply is a small error reply of a retryable kind, to be held whole (else it
// is relayed as usual). A plain function: most replies are not, and the holding
// coroutine's frame (a read piece) is not made for them.
bool worth_holding(const dify_reply_parser<http::buffer_body>& p)
{
    if (!core::may_be_retryable_status(static_cast<int>(p.get().result_int()))) return false;
    auto len = p.content_length();
    return len && *len <= max_held_reply;
}

// Reads the rest of a reply worth_holding() so it can be retried or passed on whole.
// nullopt: the reply could not be read.
template <typename S>
net::awaitable<std::optional<held_reply>> hold_error_reply(upstream_connection& conn, dify_reply_parser<http::buffer_body>& p)
{
    const int status = static_cast<int>(p.get().result_int());
    held_reply out;
    out.res.result(p.get().result());
    out.res.version(11);
    for (const auto& f : p.get()) out.res.insert(f.name_string(), f.value());
    std::string body;
    recycled_buffer piece(piece_size);
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

// Passes a held Dify reply to the client unchanged (status, end-to-end headers, body);
// through the OpenAI front, as OpenAI's error.
net::awaitable<bool> write_held_reply(exchange& x, held_reply& h)
{
    if (x.openai) {
        auto e = openai_error_of_dify(static_cast<int>(h.res.result_int()), h.res.body());
        co_return co_await write_openai_error(x, e, h.res[http::field::retry_after]);
    }
    http::response<http::string_body> res{h.res.result(), 11};
    for (const auto& f : h.res)
        if (!is_hop_by_hop(f.name()) && f.name() != http::field::content_length) res.insert(f.name_string(), f.value());
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
    s.retry = {u.retry.max_attempts, u.retry.base_delay_ms, u.retry.max_delay_ms};
    s.deadline = x.w.now() + u.response_timeout_ms;
    s.generating = x.generating;
    s.safe_method = x.req.method() == http::verb::get || x.req.method() == http::verb::head;
    s.key_count = x.target.app->cfg->api_keys.size();
    return s;
}

// What one call's attempts share besides the exchange's connection and reply: the last
// held error reply, the last failure.
struct attempt_state
{
    std::optional<held_reply> held;
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
    begin_attempt_span(x);
    auto [aec, acquired] = co_await pool.acquire(deadline);
    if (aec) {
        st.failure = aec;
        end_attempt_span(x, 0, aec);
        co_return attempts.acquire_failed(x.w.now());
    }
    x.lease = std::move(acquired);
    x.reply.emplace();
    x.reply->body_limit(boost::none);
    if (x.req.method() == http::verb::head) x.reply->skip(true);
    x.lease->expires_at(deadline);
    if (x.ticket) x.ticket->reached_upstream();
    if (auto ec = co_await send_and_read_head<S>(x, *x.lease, *x.reply)) {
        x.lease.give_back(false);
        end_attempt_span(x, 0, ec);
        if (x.client_broken || x.body_timed_out) attempts.abandoned(); // nothing learnt about Dify
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
        bool stale = x.lease.reused() && !x.reply->got_some() && !is_timeout(ec);
        st.failure = ec;
        co_return attempts.send_failed(x.w.now(), stale, x.body_sent);
    }
    st.held.reset(); // an earlier attempt's held reply is not this one's
    if (worth_holding(*x.reply)) st.held = co_await hold_error_reply<S>(*x.lease, *x.reply);
    if (st.held) end_attempt_span(x, st.held->res.result_int()); // a reply relayed ends its span after the relay
    if (!st.held)
        co_return attempts.replied(x.w.now(), static_cast<int>(x.reply->get().result_int()), std::nullopt, std::nullopt, x.body_sent);
    x.lease.give_back(keeps_alive(x.reply->get()));
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
    end_attempt_span(x, 0); // one the machine did not relay
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

} // namespace

bool settle_relayed_reply(exchange& x, bool down_ok, bool up_ok, bool keep_alive)
{
    // Dify refused the request (4xx/5xx before generating): it used no tokens. A turn sent
    // again as a new conversation is charged by its second sending.
    const bool refused = x.reply->get().result_int() != 200;
    if (x.ticket && refused && !(x.openai && x.openai->conversation_gone)) x.ticket->charge(0);
    ++x.lease->requests;
    x.lease.give_back(up_ok);
    end_attempt_span(x, x.reply->get().result_int());
    if (x.usage) {
        x.rec->tokens = *x.usage;
        x.w.metrics().pair(x.target.pair).tokens += static_cast<std::uint64_t>(*x.usage);
    }
    if (x.ticket && x.usage) {
        x.ticket->charge(*x.usage);
        x.w.local_quota().observe_usage(x.target.app->name, *x.usage);
    }
    return down_ok && keep_alive;
}

namespace {

// Relays the reply the attempts ended with, then settles the request's usage; or, for an
// SSE stream relay_dify handed over (exchange::handoff), leaves both to relay_handed_stream.
template <typename S>
net::awaitable<bool> relay_response(exchange& x)
{
    const bool keep_alive = client_reusable(x);
    auto [down_ok, up_ok] = x.openai ? co_await relay_openai<S>(x, *x.lease, *x.reply, keep_alive)
                                     : co_await relay_dify<S>(x, *x.lease, *x.reply, keep_alive);
    if (x.handoff.pending) co_return keep_alive;
    co_return settle_relayed_reply(x, down_ok, up_ok, keep_alive);
}

// Drives the attempts of one call (core::attempt_machine decides), then relays the answer.
template <typename S>
net::awaitable<bool> forward(exchange& x)
{
    const auto& app = *x.target.app;
    auto& pool = *x.pool;
    const auto deadline = clock::now() + pool.config().response_timeout_ms;
    core::attempt_machine attempts(attempt_settings_for(x, pool.config()), pool.breaker, pool.budget, [&w = x.w] { return w.random01(); });
    breaker_watch watch{*app.upstream_name, pool.breaker};
    attempt_state st;
    for (auto act = attempts.start(x.w.now());;) {
        watch.check();
        if (act.retrying) ++x.w.metrics().upstream(app.upstream_id).retries[static_cast<std::size_t>(*act.retrying)];
        if (act.rotate_key) x.api_key = x.w.next_api_key(app); // the next attempt's head carries it
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
    co_return co_await relay_response<S>(x);
}

} // namespace

net::awaitable<bool> forward_request(exchange& x)
{
    if (auto refused = build_upstream_request(x)) co_return co_await write_error(x, *refused);
    if (auto refs = named_resources(x); !refs.empty())
        if (auto foreign = co_await check_ownership(x, std::move(refs))) co_return co_await write_error(x, *foreign);
    auto pool = x.w.pool(x.target.app->upstream_id);
    // A reload changed this upstream (its URL, TLS, limits) after the request was planned on
    // the old settings: the request is not sent anywhere the old settings did not name.
    if (!same_connection_settings(pool->config(), *x.target.app->upstream)) {
        gateway_error changed{503, "unavailable", "The upstream was reconfigured while this request waited; retry it."};
        co_return co_await write_error(x, changed);
    }
    const bool tls = pool->config().tls;
    x.pool = std::move(pool);
    if (tls) co_return co_await forward<tls_stream>(x);
    co_return co_await forward<beast::tcp_stream>(x);
}

// Not a coroutine: relay_sse's frame is the stream's only one, and owns the request.
net::awaitable<std::pair<bool, bool>> relay_handed_stream(handed_stream stream)
{
    auto& x = *stream->x;
    if (x.handoff.tls) return relay_sse<tls_stream>(x, *x.lease, *x.reply, std::move(stream));
    return relay_sse<beast::tcp_stream>(x, *x.lease, *x.reply, std::move(stream));
}

} // namespace gw::gateway
