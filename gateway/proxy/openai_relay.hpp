// Internal to gateway/: Dify's reply to a turn of the OpenAI front, relayed in OpenAI's
// terms — its stream as chat.completion.chunk frames (stream: true) or one
// chat.completion (stream: false), an error reply as OpenAI's error — and Dify's own
// replies relayed as they are (relay_dify). Templates over the upstream stream type;
// included by forward.cpp only.
#pragma once

#include "gateway/proxy/relay.hpp"
#include "gateway/http_fields.hpp"

#include <boost/json.hpp>

namespace gw::gateway {

// A JSON reply of the OpenAI front, within server.client_send_timeout_ms (a client that
// does not read is dropped), with X-Request-Id, the quota headers and `extra` (if named).
inline net::awaitable<bool> write_json_reply(
    exchange& x,
    int status,
    std::string body,
    bool keep_alive,
    std::pair<std::string_view, std::string_view> extra
)
{
    http::response<http::string_body> res{static_cast<http::status>(status), 11};
    res.set(http::field::content_type, "application/json");
    res.set("X-Request-Id", x.request_id);
    for (const auto& [k, v] : x.quota_headers)
        res.set(k, v);
    if (!extra.second.empty()) res.set(extra.first, extra.second);
    res.keep_alive(keep_alive);
    res.body() = std::move(body);
    res.prepare_payload();
    x.rec->status = status;
    x.rec->bytes_out += res.body().size();
    client_deadline deadline(x.down, x.dir.config().server.client_send_timeout_ms);
    auto [ec, n] = co_await http::async_write(x.down, res, use_nothrow);
    co_return !ec && keep_alive;
}

// An error in OpenAI's shape for the OpenAI front (Dify's Retry-After kept).
inline net::awaitable<bool>
write_openai_error(exchange& x, const core::openai::api_error& e, std::string_view retry_after)
{
    auto body = core::openai::error_body(e);
    const std::pair<std::string_view, std::string_view> header{"Retry-After", retry_after};
    co_return co_await write_json_reply(x, e.status, std::move(body), client_reusable(x), header);
}

// stream: false: the whole answer as one chat.completion (or the turn's error).
inline net::awaitable<bool> write_completion(exchange& x, bool keep_alive)
{
    auto& turn = *x.openai;
    if (turn.translator.error()) co_return co_await write_openai_error(x, *turn.translator.error(), "");
    auto body = boost::json::serialize(turn.translator.completion()) + "\n";
    const std::pair<std::string_view, std::string_view> header{
        conversation_header, turn.translator.conversation_id()};
    co_return co_await write_json_reply(x, 200, std::move(body), keep_alive, header);
}

// The body of a reply that is not a stream, read whole up to `limit` bytes. {body, read to
// its end}.
template <typename S, typename Parser>
net::awaitable<std::pair<std::string, bool>>
read_small_body(upstream_connection& conn, Parser& p, std::size_t limit)
{
    std::string body;
    recycled_buffer piece(piece_size);
    while (!p.is_done() && body.size() < limit) {
        p.get().body().data = piece.data();
        p.get().body().size = piece.size();
        auto [ec, n] = co_await http::async_read_some(stream_of<S>(conn), conn.buffer(), p, use_nothrow);
        if (ec == http::error::need_buffer) ec = {};
        if (ec) co_return std::pair{std::move(body), false};
        body.append(piece.data(), piece.size() - p.get().body().size);
    }
    co_return std::pair{std::move(body), p.is_done()};
}

// Dify's reply relayed as it is: a stream event by event (the head at once: the client
// sees the stream open), any other body piece by piece. {downstream ok, upstream reusable}.
template <typename S, typename Parser>
net::awaitable<std::pair<bool, bool>>
relay_dify(exchange& x, upstream_connection& conn, Parser& p, bool keep_alive)
{
    // A HEAD reply has no body, whatever its type: nothing to relay after the head.
    const bool sse = x.req.method() != http::verb::head &&
                     core::has_media_type(field_value(p.get(), http::field::content_type), "text/event-stream");
    recycled_string head_bytes = response_head(x, p, sse, keep_alive);
    if (!sse) co_return co_await relay_body<S>(x, conn, p, head_bytes);
    auto [ec, n] = co_await send_to_client(x, net::buffer(head_bytes));
    if (ec) co_return std::pair{false, false}; // the lease closes the upstream connection
    recycled_string().swap(head_bytes); // sent: a long stream does not hold it
    if (x.handoff.allowed) { // relayed by relay_handed_stream once the request path has returned
        x.handoff.pending = true;
        x.handoff.tls = std::is_same_v<S, tls_stream>;
        x.handoff.keep_alive = keep_alive;
        co_return std::pair{true, true};
    }
    co_return co_await relay_sse<S>(x, conn, p);
}

// An image upload's reply (201): the new file's id kept for the turn, and recorded as the
// tenant's; nothing is written to the client unless Dify named no file.
template <typename S, typename Parser>
net::awaitable<std::pair<bool, bool>> keep_upload_reply(exchange& x, upstream_connection& conn, Parser& p)
{
    auto [body, complete] = co_await read_small_body<S>(conn, p, 64 * 1024);
    core::stream_facts facts;
    facts.feed_json_body(body);
    facts.end_json_body();
    created_records created;
    record_created(x, facts, created, false);
    x.upload->file_id = facts.id();
    const bool reusable = complete && keeps_alive(p.get());
    if (!x.upload->file_id.empty()) co_return std::pair{true, reusable};
    const core::openai::api_error e{502, "server_error", "unexpected_reply", "", "Dify's upload of an image named no file."};
    const bool ok = co_await write_openai_error(x, e, "");
    co_return std::pair{ok, reusable};
}

// A turn's reply translated (see the top of this file).
template <typename S, typename Parser>
net::awaitable<std::pair<bool, bool>>
relay_openai(exchange& x, upstream_connection& conn, Parser& p, bool keep_alive)
{
    auto& turn = *x.openai;
    const int status = static_cast<int>(p.get().result_int());
    if (x.upload && status == 201) co_return co_await keep_upload_reply<S>(x, conn, p);
    if (x.upload || status != 200 || !core::has_media_type(field_value(p.get(), http::field::content_type), "text/event-stream")) {
        auto [body, complete] = co_await read_small_body<S>(conn, p, 64 * 1024);
        // The remembered conversation is gone at Dify (deleted): forgotten, and the turn
        // starts a new one (serve_openai sends it again); nothing is answered here.
        if (status == 404 && !turn.remembered_as.empty() && !x.upload) {
            x.w.quotas().remember_conversation(x.who.name, turn.remembered_as, "");
            turn.conversation_gone = !turn.restarted;
            if (turn.conversation_gone && x.ticket) x.ticket->not_reached();
            if (turn.conversation_gone) co_return std::pair{true, complete && keeps_alive(p.get())};
        }
        auto e = status != 200 && status != 201
                     ? openai_error_of_dify(status, body)
                     : core::openai::api_error{
                           502, "server_error", "unexpected_reply", "", "Dify did not answer with a stream."};
        const bool ok = co_await write_openai_error(x, e, field_value(p.get(), http::field::retry_after));
        co_return std::pair{ok, complete && keeps_alive(p.get())};
    }
    if (turn.request.stream) {
        // The head waits for Dify's first event, which names a new conversation's id.
        turn.head_pending = true;
        turn.head_keep_alive = keep_alive;
        x.rec->status = 200; // what Dify answered, should the client leave before the head

        co_return co_await relay_sse<S>(x, conn, p);
    }
    auto [down_ok, up_ok] = co_await relay_sse<S>(x, conn, p); // nothing written: the answer is assembled
    if (!down_ok) co_return std::pair{false, up_ok};
    co_await remember_turn(x); // before the reply: the client's next turn may come on another connection at once
    const bool written = co_await write_completion(x, keep_alive);
    co_return std::pair{written, up_ok};
}

} // namespace gw::gateway
