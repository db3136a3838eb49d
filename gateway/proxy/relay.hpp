// Internal to gateway/: relaying Dify's response downstream — the head, SSE streams
// event by event (with a watch on the client), and any other body piece by piece.
// Templates over the upstream stream type (plain or TLS); included by forward.cpp only.
#pragma once

#include "core/sse_relay.hpp"
#include "core/stream_facts.hpp"
#include "core/text.hpp"
#include "core/workflow_spans.hpp"
#include "gateway/ops/tracing.hpp"
#include "gateway/proxy/chunk_frame.hpp"
#include "gateway/proxy/client_watch.hpp"
#include "gateway/proxy/exchange.hpp"
#include "gateway/http_fields.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>

#include <spdlog/spdlog.h>

#include <array>
#include <cstring>
#include <span>

namespace gw::gateway {

// After the client left a stream before its task id was seen: how much more is read to
// learn the task id (so that it can be stopped) before giving up; the time allowed is the
// upstream's stream_idle_timeout_ms.
inline constexpr std::size_t max_read_after_client_left = 64 * 1024;


// The response head for the client, serialized: Dify's status and end-to-end headers,
// plus ours (X-Request-Id, X-RateLimit-*, SSE no-buffering hints, framing). Built as one
// string so it can go out in the same write as the first body bytes.
template <typename Parser>
recycled_string response_head(exchange& x, Parser& p, bool sse, bool keep_alive)
{
    using namespace std::string_view_literals;
    const auto& up = p.get();
    auto ours = [&](http::field id, std::string_view name) { // headers the gateway sets itself
        if (id == http::field::cache_control) return sse;
        // X-Request-Id and X-Accel-Buffering have no code of Beast's.
        if (id == http::field::unknown &&
            (core::iequals(name, "x-request-id") || (sse && core::iequals(name, "x-accel-buffering"))))
            return true;
        for (const auto& [k, v] : x.quota_headers)
            if (core::iequals(name, k)) return true;
        return false;
    };
    recycled_string out;
    out.reserve(512);
    auto field = [&out](std::string_view name, std::string_view value) { append_field(out, name, value); };
    out.append("HTTP/1.1 "sv).append(std::to_string(up.result_int())).append(" "sv).append(http::obsolete_reason(up.result())).append("\r\n"sv);
    for (const auto& f : up)
        if (!is_hop_by_hop(f.name()) && f.name() != http::field::content_length && !ours(f.name(), f.name_string()))
            field(f.name_string(), f.value());
    field("X-Request-Id", x.request_id);
    for (const auto& [k, v] : x.quota_headers) field(k, v);
    x.rec->status = static_cast<int>(up.result_int());
    if (sse) {
        x.rec->ttfb_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - x.rec->start).count();
        field("Cache-Control", "no-cache");
        field("X-Accel-Buffering", "no");
        field("Transfer-Encoding", "chunked");
    } else if (auto len = p.content_length()) {
        field("Content-Length", std::to_string(*len));
    } else if (x.req.method() == http::verb::head) {
        // No length and no framing: what Dify sent for HEAD, no body follows.
    } else if (!p.is_done()) {
        field("Transfer-Encoding", "chunked");
    } else if (up.result_int() != 204 && up.result_int() != 304) {
        field("Content-Length", "0");
    }
    if (!keep_alive) field("Connection", "close");
    out.append("\r\n"sv);
    return out;
}

// The head of a streamed turn: the gateway's own (none of Dify's headers), chunked, with
// the Dify conversation's id for chat apps once Dify has named it.
inline std::string openai_stream_head(exchange& x)
{
    const auto& turn = *x.openai;
    std::string out =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"
        "X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\nX-Request-Id: " +
        x.request_id + "\r\n";
    for (const auto& [k, v] : x.quota_headers)
        out.append(k).append(": ").append(v).append("\r\n");
    // A continued conversation's id is among the quota headers already; a new one's is
    // Dify's, written only in its canonical form.
    const auto named = canonical_conversation_id(turn.translator.conversation_id());
    if (turn.conversation_id.empty() && named && x.target.app->cfg->openai.type == config::openai_app_kind::chat)
        out.append(conversation_header).append(": ").append(*named).append("\r\n");
    if (!turn.head_keep_alive) out += "Connection: close\r\n";
    out += "\r\n";
    x.rec->status = 200;
    x.rec->ttfb_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - x.rec->start).count();
    return out;
}

// Frames of the OpenAI front to the client (nothing when it waits for the whole answer).
// The head goes out once Dify has sent its first event (for chat apps, it names the
// conversation), or with the end.
inline net::awaitable<std::tuple<error_code, std::size_t>> write_openai_frames(exchange& x, const std::string& frames, bool last)
{
    auto& turn = *x.openai;
    if (!turn.request.stream) co_return std::tuple{error_code{}, std::size_t{0}};
    const bool head_due = turn.head_pending && (turn.saw_event || !frames.empty() || last);
    const std::string head = head_due ? openai_stream_head(x) : std::string();
    turn.head_pending = turn.head_pending && !head_due;
    if (frames.empty() && !last && head.empty()) co_return std::tuple{error_code{}, std::size_t{0}};
    x.rec->bytes_out += frames.size();
    const auto head_part = net::buffer(head);
    auto end = http::make_chunk_last();
    if (frames.empty()) { // a zero-size chunk would end the body: none is made
        if (!last) co_return co_await send_to_client(x, head_part);
        auto head_end = beast::buffers_cat(head_part, end); // named: no temporaries inside co_await (g++ 12)
        co_return co_await send_to_client(x, std::move(head_end));
    }
    const chunk_size_line line(frames.size()); // in this frame until the write is done
    const auto chunk = chunk_buffers<1>(line, {net::buffer(frames)});
    if (!last) {
        auto head_chunk = beast::buffers_cat(head_part, chunk);
        co_return co_await send_to_client(x, std::move(head_chunk));
    }
    auto all = beast::buffers_cat(head_part, chunk, end);
    co_return co_await send_to_client(x, std::move(all));
}

// Whole Dify events (`a` then `b`) through the OpenAI front's translator.
inline std::string translate_events(exchange& x, std::string_view a, std::string_view b)
{
    std::string frames;
    auto on_event = [&](const core::sse_event& e, std::size_t) {
        if (!e.event.empty() && e.event != "message") return; // pings
        x.openai->saw_event = true;
        frames += x.openai->translator.on_event(e.data);
    };
    x.openai->events.feed(a, on_event);
    x.openai->events.feed(b, on_event);
    return frames;
}

// One chunk of an SSE body to the client: `a` then `b` (a held tail, then fresh bytes;
// not both empty), its size line in `line`, which the caller keeps until the write is done.
// Not a coroutine itself: the write's own frame is the only one.
inline net::awaitable<std::tuple<error_code, std::size_t>> send_sse_chunk(exchange& x, chunk_size_line& line, std::string_view a,
                                                                          std::string_view b)
{
    x.rec->bytes_out += a.size() + b.size();
    line = chunk_size_line(a.size() + b.size());
    return send_to_client(x, chunk_buffers<2>(line, {net::buffer(a.data(), a.size()), net::buffer(b.data(), b.size())}));
}

// The same through the OpenAI front's translator, when the turn has one.
inline net::awaitable<std::tuple<error_code, std::size_t>> write_sse_chunk(exchange& x, std::string_view a, std::string_view b)
{
    if (x.openai) {
        const auto frames = translate_events(x, a, b); // named: no temporaries inside co_await (g++ 12)
        co_return co_await write_openai_frames(x, frames, false);
    }
    if (a.empty() && b.empty()) co_return std::tuple{error_code{}, std::size_t{0}}; // never a zero-size chunk
    chunk_size_line line;
    co_return co_await send_sse_chunk(x, line, a, b);
}

// The last frame of a stream the gateway ends itself, and the end of the chunked body.
inline net::awaitable<bool> end_stream_with_error(exchange& x, const core::sse_action& act)
{
    if (x.openai) {
        auto frames = x.openai->translator.on_failure(act.error_code, act.error_message);
        auto [ec, n] = co_await write_openai_frames(x, frames, true);
        co_return !ec;
    }
    boost::json::object error{{"event", "error"}, {"code", act.error_code}, {"status", act.error_status}, {"message", act.error_message}};
    std::string frame = "data: " + boost::json::serialize(error) + "\n\n";
    auto [wec, wn] = co_await write_sse_chunk(x, frame, {});
    if (wec) co_return false;
    auto [lec, ln] = co_await send_to_client(x, http::make_chunk_last());
    co_return !lec;
}

// The next turn of this conversation will resend this history: remember which Dify
// conversation it continues (chat apps; a turn that finished).
// Two conversations that reached the same history (the same first question and a
// predictable answer, from two clients of one end user) make it ambiguous: it is marked so,
// and continues neither (one client must never land in the other's conversation).
inline net::awaitable<void> remember_turn(exchange& x)
{
    auto& turn = *x.openai;
    if (!turn.translator.finished() || x.target.app->cfg->openai.type != config::openai_app_kind::chat)
        co_return;
    const std::string id =
        turn.translator.conversation_id().empty() ? turn.conversation_id : turn.translator.conversation_id();
    if (id.empty()) co_return;
    auto digest = core::openai::digest_after_answer(turn.request, turn.translator.answer());
    auto key = conversation_key(turn.conversation_scope, digest);
    auto known = co_await x.w.quotas().conversation_of(key);
    if (known && *known == ambiguous_conversation) co_return;
    const bool clash = known && !known->empty() && *known != id;
    x.w.quotas().remember_conversation(x.who.name, key, clash ? std::string(ambiguous_conversation) : id);
}

// The end of a stream Dify finished: the tail the relay held, then the last chunk.
// Returns {downstream reusable, upstream reusable}.
inline net::awaitable<std::pair<bool, bool>> finish_sse_stream(exchange& x, const core::sse_action& act, bool upstream_keep_alive)
{
    if (x.openai) {
        auto frames = translate_events(x, act.held, {}) + x.openai->translator.on_end();
        if (x.openai->request.stream) co_await remember_turn(x); // before the last frames: the next turn may follow at once
        auto [ec, n] = co_await write_openai_frames(x, frames, true);
        co_return std::pair{!ec, upstream_keep_alive};
    }
    if (!act.held.empty()) {
        auto [wec, wn] = co_await write_sse_chunk(x, act.held, {});
        if (wec) co_return std::pair{false, false};
    }
    auto [lec, ln] = co_await send_to_client(x, http::make_chunk_last());
    co_return std::pair{!lec, upstream_keep_alive};
}

// An SSE relay's registration with its worker, held for the relay's life: listed in
// relays() (a drain that times out ends the stream, worker::abort_streams) and counted in
// the tenant's active_streams gauge.
class stream_registration
{
public:
    stream_registration(worker& w, upstream_connection& c, std::uint32_t tenant) : w_(w), c_(&c), tenant_(tenant)
    {
        w_.relays().insert(c_);
        auto& figures = w_.metrics().tenant(tenant_);
        figures.streamed = true;
        ++figures.active_streams;
    }
    ~stream_registration()
    {
        w_.relays().erase(c_);
        --w_.metrics().tenant(tenant_).active_streams;
    }
    stream_registration(const stream_registration&) = delete;
    stream_registration& operator=(const stream_registration&) = delete;

private:
    worker& w_;
    upstream_connection* c_;
    std::uint32_t tenant_;
};

// The spans of the workflow nodes a stream reports (exported traces only), children of
// the attempt that streams them; nodes still open are closed when the relay ends.
class stream_node_spans
{
public:
    stream_node_spans(exchange& x, core::sse_relay& relay) : x_(x)
    {
        if (!x.rec->trace.exported) return;
        relay.keep_node_events();
        nodes_.emplace(x.rec->trace.trace, x.attempt_id);
    }
    ~stream_node_spans()
    {
        if (!nodes_) return;
        nodes_->end(unix_nanos_now(), done_);
        submit();
    }
    stream_node_spans(const stream_node_spans&) = delete;
    stream_node_spans& operator=(const stream_node_spans&) = delete;

    // What the piece just read reported.
    void take(core::sse_relay& relay)
    {
        if (!nodes_) return;
        for (auto& e : relay.take_node_events())
            nodes_->on_event(std::move(e), unix_nanos_now(), core::make_span_id(x_.w.random64()), done_);
        submit();
    }

private:
    void submit()
    {
        for (auto& s : done_) x_.w.tracer().submit(std::move(s));
        done_.clear();
    }
    exchange& x_;
    std::optional<core::workflow_node_spans> nodes_;
    std::vector<core::span> done_;
};

// Dify's usage so far: the total (what the quota is charged) and, for the trace, its split.
inline void note_usage(exchange& x, const core::stream_facts& facts)
{
    if (auto used = facts.total_tokens()) x.usage = used;
    if (auto in = facts.prompt_tokens()) x.rec->input_tokens = in;
    if (auto out = facts.completion_tokens()) x.rec->output_tokens = out;
}

// The steps of an SSE relay around its reads, written as plain functions called from
// relay_sse (a coroutine of its own would allocate a frame per piece).
//
// Memory: an open stream holds no read buffer while it waits for Dify. Over TLS it reads
// what is ready into the worker's read scratch and, when nothing is, waits for the socket
// to be readable without a buffer; the events parsed out of the bytes go to the worker's
// event scratch. Both are shared by the worker's streams, so whatever outlives a step is
// copied before the relay next waits: bytes the parser did not take (part of a chunk's
// framing) to the relay's carry or conn.buffer(), the unfinished event to
// core::sse_relay's tail, and a write the client does not take at once to the stream's
// own spill. A plain connection's reads complete later, in the event loop, after other
// streams may have run, so they go into conn.buffer() (never into shared memory).

// Reads of an SSE relay that found bytes ready before it passes through the event loop.
inline constexpr int max_reads_in_turn = 8;

// The bytes of Dify's stream read and not parsed yet.
inline std::string_view unparsed(upstream_connection& conn)
{
    const auto b = conn.buffer().data();
    return {static_cast<const char*>(b.data()), b.size()};
}

// A few bytes the parser left at the end of the last read (Beast reads a chunk's closing
// CRLF with the next chunk's size line): kept in the relay's frame, and put in front of the
// next read, rather than in a heap buffer that every open stream would hold.
struct sse_carry
{
    std::array<char, 32> bytes{};
    std::size_t size = 0;
};

// One read of a TLS stream, tried now, into the worker's read scratch behind the carried
// bytes. Returns the bytes to parse: the carried and those read, or (`from_buffer`) the
// unparsed bytes of conn.buffer() with those read appended. would_block: nothing is ready
// (OpenSSL has given back its record buffer; wait with async_wait_readable).
inline std::string_view read_tls_now(exchange& x, upstream_connection& conn, sse_carry& carry, bool& from_buffer, error_code& ec)
{
    const auto scratch = x.w.relay_read_scratch();
    auto& b = conn.buffer();
    from_buffer = b.size() > 0;
    const std::size_t behind = from_buffer ? 0 : carry.size;
    std::memcpy(scratch.data(), carry.bytes.data(), behind);
    const std::size_t n = conn.tls().read_now(scratch.data() + behind, scratch.size() - behind, ec);
    if (ec) return {};
    if (!from_buffer) {
        carry.size = 0;
        return {scratch.data(), behind + n};
    }
    const auto room = b.prepare(n);
    std::memcpy(room.data(), scratch.data(), n);
    b.commit(n);
    return unparsed(conn);
}

// Parses body bytes out of `input` into the worker's event scratch, a step of Beast's
// parser at a time, until the scratch is full, the input is used up or the body ends.
// What the parser did not take is kept: in `carry` when it fits, else in conn.buffer().
// Returns the event bytes parsed; `stalled` when the parser needs more input to go on.
template <typename Parser>
std::string_view parse_sse_bytes(exchange& x, upstream_connection& conn, Parser& p, std::string_view input, bool from_buffer,
                                 sse_carry& carry, bool& stalled, error_code& ec)
{
    const auto piece = x.w.relay_event_scratch();
    std::size_t consumed = 0, filled = 0;
    while (!p.is_done() && filled < piece.size() && consumed < input.size()) {
        p.get().body().data = piece.data() + filled;
        p.get().body().size = piece.size() - filled;
        const std::size_t used = p.put(net::const_buffer(input.data() + consumed, input.size() - consumed), ec);
        consumed += used;
        filled = piece.size() - p.get().body().size;
        if (ec == http::error::need_buffer || ec == http::error::need_more) ec = {};
        if (ec || used == 0) break;
    }
    p.get().body().data = nullptr; // no pointer into the scratch is left behind
    p.get().body().size = 0;
    stalled = filled == 0 && !p.is_done();
    auto& b = conn.buffer();
    const auto rest = input.substr(consumed);
    if (from_buffer) {
        b.consume(consumed);
        if (b.size() == 0 && b.capacity() > 512) b.shrink_to_fit(); // room a leftover took is not kept
    } else if (rest.size() <= carry.bytes.size()) { // the scratch goes to another stream at the next wait
        std::memcpy(carry.bytes.data(), rest.data(), rest.size());
        carry.size = rest.size();
    } else {
        const auto room = b.prepare(rest.size());
        std::memcpy(room.data(), rest.data(), rest.size());
        b.commit(rest.size());
    }
    return {piece.data(), filled};
}

// What the relay does when reading Dify's stream failed. A stream delimited by the
// connection's close (neither chunked nor sized) ends with it, as Beast's read would end it.
template <typename Parser>
std::optional<core::sse_action> sse_read_failed(exchange& x, Parser& p, core::sse_relay& relay, error_code ec)
{
    if (ec == net::error::eof) {
        if (!p.got_some()) ec = http::error::end_of_stream;
        else p.put_eof(ec);
        if (!ec) return std::nullopt; // the body ended: relay_sse finishes the stream
    }
    if (x.client_gone) relay.client_left(); // it left during the read: only the task id is wanted now
    if (!x.client_gone) spdlog::warn("request {}: upstream stream ended early: {}", x.request_id, ec.message());
    return relay.upstream_failed(x.w.aborting() ? core::upstream_end::shutting_down
                                 : is_timeout(ec) ? core::upstream_end::idle
                                                  : core::upstream_end::broken);
}

// Tells `relay` the events parsed and records what they name.
inline core::sse_action feed_sse_events(exchange& x, core::sse_relay& relay, std::string_view events, created_records& created)
{
    if (x.client_gone) relay.client_left(); // it left during the read: only the task id is wanted now
    auto act = relay.feed(events);
    note_usage(x, relay.facts()); // partial streams: what was reported
    record_created(x, relay.facts(), created, true);
    x.task_known = relay.task_known();
    return act;
}

// Writes a chunk of whole events (`held`, then `fresh` from the event scratch) to the client
// if its socket takes them now; what it does not take is copied into `spill`, to be written
// from there (empty: nothing is left to write). Returns the error of a failed write.
inline error_code send_sse_events_now(exchange& x, chunk_size_line& line, std::string_view held, std::string_view fresh,
                                      std::string& spill)
{
    x.rec->bytes_out += held.size() + fresh.size();
    line = chunk_size_line(held.size() + fresh.size());
    const auto chunk = chunk_buffers<2>(line, {net::buffer(held.data(), held.size()), net::buffer(fresh.data(), fresh.size())});
    error_code ec;
    const std::size_t sent = x.down.write_some(chunk, ec);
    if (ec == net::error::would_block || ec == net::error::try_again) ec = {};
    if (ec || sent == net::buffer_size(chunk)) return ec;
    beast::buffers_suffix<std::decay_t<decltype(chunk)>> rest(chunk);
    rest.consume(sent);
    spill.resize(net::buffer_size(rest));
    net::buffer_copy(net::buffer(spill), rest);
    return ec;
}

// Where a relay's reading stands between two steps (kept in relay_sse's frame).
struct sse_reading
{
    sse_carry carry;           // TLS: bytes of the last read the parser left
    bool need_bytes = true;    // else: conn.buffer() holds bytes to parse first (those that came with the head)
    bool deadline_set = false; // the deadline of the wait for Dify's next bytes runs
    int reads_in_turn = 0;     // reads that found bytes ready, with no pass through the event loop
};

// Reads Dify's stream until core::sse_relay has a step to take (a write, the end), within
// the idle deadline: stream_idle_timeout_ms since the last bytes. Over TLS a read is tried
// at once and the socket waited for only when nothing is ready (no buffer held meanwhile).
template <typename S, typename Parser>
net::awaitable<core::sse_action> next_sse_action(exchange& x, upstream_connection& conn, Parser& p, core::sse_relay& relay,
                                                 sse_reading& r, created_records& created)
{
    for (;;) {
        if (p.is_done()) { // Dify's body ended
            conn.expires_never();
            co_return relay.upstream_ended();
        }
        error_code ec;
        std::string_view input = unparsed(conn);
        bool from_buffer = true;
        if (r.need_bytes) {
            if (x.client_gone) relay.client_left();
            if (!r.deadline_set) conn.expires_at(clock::time_point(relay.read_deadline(clock::now().time_since_epoch())));
            r.deadline_set = true;
            if constexpr (std::is_same_v<S, tls_stream>) {
                if (r.reads_in_turn == max_reads_in_turn) { // a stream whose bytes keep coming lets the worker's others run
                    r.reads_in_turn = 0;
                    co_await net::post(conn.socket().get_executor(), use_nothrow);
                }
                input = read_tls_now(x, conn, r.carry, from_buffer, ec);
                ++r.reads_in_turn;
                if (ec == net::error::would_block) {
                    r.reads_in_turn = 0;
                    auto [wec] = co_await conn.tls().async_wait_readable(use_nothrow);
                    if (!wec) continue; // read again
                    ec = wec;
                }
            } else {
                auto [rec, n] = co_await conn.plain().async_read_some(conn.buffer().prepare(512), use_nothrow);
                conn.buffer().commit(n);
                ec = rec;
                input = unparsed(conn);
            }
            if (!ec) r.deadline_set = false; // bytes came: the next wait gets a deadline of its own
        }
        std::string_view events;
        if (!ec) events = parse_sse_bytes(x, conn, p, input, from_buffer, r.carry, r.need_bytes, ec);
        if (ec) {
            if (auto act = sse_read_failed(x, p, relay, ec)) co_return *act;
        } else if (!events.empty()) {
            co_return feed_sse_events(x, relay, events, created);
        }
    }
}

// How a relay ends once core::sse_relay has said: the client gone, an error event of the
// gateway's, or the end of Dify's stream. Returns {downstream reusable, upstream reusable}.
inline net::awaitable<std::pair<bool, bool>> end_sse_relay(exchange& x, const core::sse_action& act, const core::sse_relay& relay,
                                                           bool upstream_keep_alive)
{
    if (act.step == core::sse_step::end_with_error) {
        if (act.error_code == "event_too_large")
            spdlog::warn("request {}: an upstream event exceeded {} bytes; stream ended", x.request_id,
                         x.target.app->upstream->max_sse_event_bytes);
        const bool ended = co_await end_stream_with_error(x, act);
        co_return std::pair{ended, false};
    }
    if (act.step != core::sse_step::finish) co_return std::pair{false, false}; // close
    x.usage = relay.facts().total_tokens();
    co_return co_await finish_sse_stream(x, act, upstream_keep_alive);
}

// Relays a text/event-stream body as core::sse_relay decides (whole events only, the
// task stopped when the stream ends early or the client leaves), watching the client's
// connection meanwhile (client_watch: its close ends the stream at once); this coroutine
// only reads, writes and records what the events name. Returns {downstream reusable,
// upstream reusable}. `owner`: the request a stream was handed over with
// (relay_handed_stream), settled at the end and freed with this frame, after its locals.
template <typename S, typename Parser>
net::awaitable<std::pair<bool, bool>> relay_sse(exchange& x, upstream_connection& conn, Parser& p, handed_stream owner = {})
{
    const auto& upstream_cfg = *x.target.app->upstream;
    conn.buffer().shrink_to_fit(); // an open stream keeps no reply-sized read room, only what is unread
    release_sent_request(x);       // nor the request it answers
    // Nor Dify's header fields (one block each): all the relay needs of them is whether the
    // connection stays open. Fields found at the end came as trailers: the connection is
    // then not reused (they could say otherwise).
    const bool head_keeps_alive = keeps_alive(p.get());
    p.get().clear();
    std::pair<bool, bool> ends;
    { // the relay's state, which ends before a handed-over request is settled
        client_watch watch(x, conn);   // until the relay ends
        stream_registration registered(x.w, conn, x.who.id); // until the relay ends
        core::sse_relay relay({static_cast<std::size_t>(upstream_cfg.max_sse_event_bytes), max_read_after_client_left,
                               upstream_cfg.stream_idle_timeout_ms});
        created_records created; // owners recorded as soon as Dify names the task, conversation, run
        stream_node_spans nodes(x, relay);
        chunk_size_line size_line; // the size line of the chunk being written
        std::string spill;         // what the client did not take of a chunk at once
        sse_reading reading;
        reading.need_bytes = conn.buffer().size() == 0;
        for (;;) {
            auto act = co_await next_sse_action<S>(x, conn, p, relay, reading, created);
            nodes.take(relay);
            while (act.step == core::sse_step::write) {
                error_code wec;
                if (x.openai) { // the frames are translated (copied) before the write waits
                    auto [ec, n] = co_await write_sse_chunk(x, act.held, act.fresh);
                    wec = ec;
                } else if (wec = send_sse_events_now(x, size_line, act.held, act.fresh, spill); !wec && !spill.empty()) {
                    auto [ec, n] = co_await send_to_client(x, net::buffer(spill));
                    wec = ec;
                    std::string().swap(spill); // a slow client's copy is not kept
                }
                act = relay.written(!wec);
            }
            x.client_gone = x.client_gone || relay.client_gone();
            if (act.stop_task) spawn_stop_call(x, relay.facts().task_id());
            if (act.step == core::sse_step::read) continue;
            const bool upstream_keep_alive = head_keeps_alive && p.get().begin() == p.get().end();
            ends = co_await end_sse_relay(x, act, relay, upstream_keep_alive);
            break;
        }
    }
    if (owner) ends.first = settle_relayed_reply(x, ends.first, ends.second, x.handoff.keep_alive);
    co_return ends;
}

// What a JSON reply read on the side named: its usage, and the records it created.
inline void settle_scanned_body(exchange& x, core::stream_facts& facts)
{
    facts.end_json_body();
    note_usage(x, facts);
    x.usage = facts.total_tokens();
    created_records created;
    record_created(x, facts, created, false);
}

// The end of a relayed body: the last chunk of a chunked one, or the head of an empty
// one that has not gone out yet. False: the client did not take it.
inline net::awaitable<bool> end_body(exchange& x, bool chunked, net::const_buffer unsent_head)
{
    if (!chunked && unsent_head.size() == 0) co_return true;
    auto last = http::make_chunk_last();
    auto [ec, n] = chunked ? co_await send_to_client(x, beast::buffers_cat(unsent_head, last)) : co_await send_to_client(x, unsent_head);
    co_return !ec;
}

// Relays any other body piece by piece (JSON, audio, file bytes), chunked or sized as
// the head says; the head goes out in the same write as the first body bytes.
template <typename S, typename Parser>
net::awaitable<std::pair<bool, bool>> relay_body(exchange& x, upstream_connection& conn, Parser& p, const recycled_string& head)
{
    auto& up = stream_of<S>(conn);
    const bool chunked = !p.content_length() && !p.is_done();
    // A blocking generate reply carries its usage (and an upload's reply its file id): read
    // on the side as it passes, whatever its size.
    const bool scan = (x.generating || x.uploads_file) && p.get().result_int() / 100 == 2 &&
                      core::has_media_type(field_value(p.get(), http::field::content_type), "application/json");
    const auto facts = scan ? make_recycled<core::stream_facts>() : recycled_ptr<core::stream_facts>();
    recycled_buffer piece(piece_size);
    std::size_t filled = 0; // bytes in piece not yet written
    net::const_buffer unsent_head = net::buffer(head);
    bool client_gone = false; // a write failed: the reply is still read to its end, for its usage
    while (!p.is_done()) {
        p.get().body().data = piece.data() + filled;
        p.get().body().size = piece.size() - filled;
        // Bytes already read (a small reply usually came whole with its head) are parsed at
        // once, as Beast's read would parse them first; the socket is read only for more.
        error_code ec;
        bool parsed = false;
        if (conn.buffer().size() > 0) {
            conn.buffer().consume(p.put(conn.buffer().data(), ec));
            parsed = ec != http::error::need_more;
            if (!parsed) ec = {};
        }
        if (!parsed) {
            auto [rec, rn] = co_await http::async_read_some(up, conn.buffer(), p, use_nothrow);
            ec = rec;
        }
        if (ec == http::error::need_buffer) ec = {};
        if (ec) {
            spdlog::warn("request {}: upstream body ended early: {}", x.request_id, ec.message());
            if (unsent_head.size() > 0) { // nothing reached the client yet: a clean gateway error
                auto failure = upstream_failure(ec, "body");
                co_await write_error(x, failure);
            }
            co_return std::pair{false, false}; // the client sees a truncated body; never reuse either side
        }
        std::size_t got = piece.size() - p.get().body().size - filled;
        if (scan) facts->feed_json_body(std::string_view(piece.data() + filled, got));
        if (client_gone) continue; // nothing kept: only the scan goes on
        filled += got;
        // A sized body fills the piece before it is written (a small reply goes out whole,
        // with the head, in one write); a chunked one goes on as it arrives.
        if (filled == 0 || (!chunked && !p.is_done() && filled < piece.size())) continue;
        x.rec->bytes_out += filled;
        auto bytes = net::buffer(piece.data(), std::exchange(filled, 0));
        auto head_part = std::exchange(unsent_head, net::const_buffer{});
        const chunk_size_line line(bytes.size()); // in this frame until the write is done
        const auto framed = chunk_buffers<1>(line, {bytes});
        auto [wec, wn] = chunked ? co_await send_to_client(x, beast::buffers_cat(head_part, framed))
                                 : co_await send_to_client(x, beast::buffers_cat(head_part, bytes));
        if (wec && !scan) co_return std::pair{false, false};
        // A generation Dify has run is charged what it used, client or not: read on (within
        // the upstream's response deadline) for the usage at the end of the reply.
        if (wec) client_gone = true;
    }
    conn.expires_never();
    if (scan) settle_scanned_body(x, *facts);
    if (client_gone) co_return std::pair{false, keeps_alive(p.get())};
    const bool ended = co_await end_body(x, chunked, unsent_head);
    co_return std::pair{ended, ended && keeps_alive(p.get())};
}

} // namespace gw::gateway
