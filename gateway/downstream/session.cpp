#include "gateway/downstream/session.hpp"

#include "gateway/downstream/serve_request.hpp"
#include "gateway/proxy/tenants.hpp"

#include <boost/beast/http.hpp>

#include <spdlog/spdlog.h>

#include <array>
#include <atomic>

namespace gw::gateway {

namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

// The server settings a session reads, copied at its start (a reload may free the
// configuration): the few it needs, not the whole section, since its frame lasts as long
// as the connection.
struct session_limits
{
    explicit session_limits(const config::server_config& s)
        : idle(s.client_idle_timeout_ms), drain_grace(s.drain_idle_grace_ms), header_time(s.client_header_timeout_ms),
          header_bytes(static_cast<std::uint32_t>(s.max_header_bytes)), body_bytes(static_cast<std::uint64_t>(s.max_request_body_bytes))
    {
    }
    std::chrono::milliseconds idle, drain_grace, header_time;
    std::uint32_t header_bytes;
    std::uint64_t body_bytes;
};

// Reads the next request's first bytes, waiting at most the keep-alive idle time (while
// draining, at most the drain's idle grace).
net::awaitable<error_code> wait_for_request(worker& w, client_socket& stream, beast::flat_buffer& buffer,
                                            session_entry& entry, const session_limits& limits)
{
    if (buffer.size() > 0) co_return error_code{}; // pipelined bytes already here
    entry.idle = true;
    const auto limit = w.draining() ? std::min(limits.idle, limits.drain_grace) : limits.idle;
    entry.idle_until = std::chrono::steady_clock::now() + limit;
    w.watch_idle(entry, limit); // the worker's sweep cancels the read once the limit passes
    auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), use_nothrow);
    buffer.commit(n);
    entry.idle = false;
    co_return ec;
}

// Reads the rest of a request head that did not come whole with its first bytes, within
// `limit` (a head that never ends is a timeout). A coroutine of its own: its deadline and
// read are not kept in the session's frame for the connection's life.
net::awaitable<error_code> read_request_head(client_socket& stream, beast::flat_buffer& buffer, header_parser& parser,
                                             std::chrono::milliseconds limit)
{
    client_deadline deadline(stream, limit);
    auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, use_nothrow);
    co_return deadline.fired() ? error_code(beast::error::timeout) : ec;
}

// After an answer that closes the connection, the client may still be sending (a body the
// gateway did not read): closing at once would reset the connection and could destroy the
// answer in flight. The send side is shut, and what still comes is read and dropped until
// the client closes too, for at most two seconds.
net::awaitable<void> linger_before_close(client_socket& stream)
{
    error_code ignored;
    stream.shutdown(tcp::socket::shutdown_send, ignored);
    client_deadline deadline(stream, std::chrono::seconds(2));
    std::array<char, 4096> scratch;
    for (;;) { // the deadline is checked too: a read that finds bytes waiting completes at once
        auto [ec, n] = co_await stream.async_read_some(net::buffer(scratch), use_nothrow);
        if (ec || deadline.fired()) break;
    }
}

// The error for a request head the gateway could not read (`hec`); the connection closes.
net::awaitable<void> reject(client_socket& stream, error_code hec)
{
    gateway_error e{400, "bad_request", "Malformed HTTP request."};
    if (hec == http::error::header_limit)
        e = {431, "request_header_too_large", "Request headers are too large."};
    else if (hec == http::error::body_limit) // Content-Length above the limit
        e = {413, "request_too_large", "The request body is larger than the gateway accepts."};
    else if (hec == beast::error::timeout) // slow-loris: the request began but its headers never ended
        e = {408, "request_timeout", "The request headers took too long to arrive."};
    co_await write_gateway_error(stream, e, "", false);
}

} // namespace

// g++ 12 reports a false -Wmismatched-new-delete at the end of this coroutine: the frame
// is allocated and freed by Asio's awaitable_frame_base operators, which it fails to pair.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
net::awaitable<void> session(client_socket stream, worker* w, std::string peer, std::shared_ptr<void> client_slot)
{
    // Non-blocking for synchronous sends too: a response write is first tried at once and
    // must never block the worker (send_to_client).
    error_code nb;
    stream.non_blocking(true, nb);
    if (nb) co_return; // a write could block the worker: not served
    session_registration registration(*w, stream); // until this frame ends, however it ends
    auto& entry = registration.entry();
    const session_limits limits(w->tenants().config().server);
    beast::flat_buffer buffer;
    key_memo keys;       // the key this connection presented last
    bool linger = false; // the last answer closed the connection: the client may still send
    for (;;) {
        if (w->aborting() && buffer.size() == 0) break;
        if (auto ec = co_await wait_for_request(*w, stream, buffer, entry, limits)) break;
        header_parser parser; // a new parser per request
        parser.header_limit(limits.header_bytes);
        parser.body_limit(limits.body_bytes);
        error_code hec;
        if (!parse_buffered(parser, buffer, hec, [](const header_parser& p) { return p.is_header_done(); }))
            hec = co_await read_request_head(stream, buffer, parser, limits.header_time);
        if (hec == http::error::end_of_stream || hec == net::error::eof) break;
        if (hec) {
            co_await reject(stream, hec);
            linger = true;
            break;
        }
        handed_stream handed; // an SSE stream the request path handed over once its head went out
        linger = !co_await serve_request(*w, stream, buffer, parser, peer, keys, handed);
        if (handed) {
            const auto ends = co_await relay_handed_stream(std::move(handed)); // {client reusable, upstream reusable}
            linger = !ends.first;
        }
        if (linger) break;
    }
    if (linger && stream.is_open()) co_await linger_before_close(stream);
    error_code ignored;
    stream.shutdown(tcp::socket::shutdown_send, ignored);
    stream.close(ignored);
}

#pragma GCC diagnostic pop

void turn_away(tcp::socket socket, std::string_view why)
{
    static std::atomic<std::int64_t> last_log{0};
    std::string body = std::string(R"({"code":"too_many_connections","message":")") + std::string(why) + R"(","status":503})" + "\n";
    std::string reply = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                        "Connection: close\r\nContent-Length: " +
                        std::to_string(body.size()) + "\r\n\r\n" + body;
    error_code ignored;
    socket.non_blocking(true, ignored);
    socket.send(net::buffer(reply), 0, ignored);
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
    auto now = std::chrono::duration_cast<std::chrono::seconds>(clock::now().time_since_epoch()).count();
    if (last_log.exchange(now) != now) spdlog::warn("connection turned away: {}", why);
}

} // namespace gw::gateway
