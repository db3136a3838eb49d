// Serving one tenant request: authenticate, select the app, namespace `user`, forward
// to Dify over the worker's pool with the app's key, and relay the response — bodies
// piece by piece, SSE streams event by event.
#pragma once

#include "gateway/head_fields.hpp"
#include "gateway/worker.hpp"

#include <boost/asio/recycling_allocator.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

namespace gw::gateway {

// A request whose header has been read; its body (if any) is still on the connection.
using header_parser = client_request_parser<boost::beast::http::empty_body>;

// Serves one request: authenticates and routes on the header, then reads the body whole
// when `user` must be rewritten in it, or streams it to Dify when not, and writes the
// whole response to `down`. `buffer` holds bytes already read from `down`. Returns false
// when the downstream connection must not be reused (the client left, a body could not
// be completed, or an error was answered before the body was read). `peer` is the
// connection's remote address (read once per connection), `keys` the connection's last
// accepted key (see key_memo).
//
// When the answer is an SSE stream, serve_request may end once the stream's head has gone
// out and hand the stream over in `stream`, with everything its request owns: the caller
// then relays it with relay_handed_stream. (A coroutine frame keeps every local of every
// branch for its whole life: the frames of the request path would otherwise stay with each
// open stream.)
struct request_scope; // proxy/exchange.hpp
struct request_scope_deleter
{
    void operator()(request_scope* s) const;
};
using handed_stream = std::unique_ptr<request_scope, request_scope_deleter>;
net::awaitable<bool> serve_request(worker& w, client_socket& down, beast::flat_buffer& buffer, header_parser& hp,
                                   const std::string& peer, key_memo& keys, handed_stream& stream);
// Relays a stream serve_request handed over to its end, then settles the request (usage,
// quota, the upstream connection) and records it. Returns {client connection reusable,
// upstream connection reusable}.
net::awaitable<std::pair<bool, bool>> relay_handed_stream(handed_stream stream);

// Headers the gateway adds to a response (rate limits, Retry-After, the OpenAI front's
// conversation): names are the gateway's own constants, never read from a request or
// reply, so they are held as views (most are longer than a string keeps inline).
using header_list = std::vector<std::pair<std::string_view, std::string>>;

// Parses what `buffer` already holds into `p`, as Beast's asynchronous reads would, until
// `done(p)` (its head, or the whole message) or the bytes run out. The usual request comes
// in the bytes its first read brought, so no asynchronous read (and no deadline timer) is
// needed for it. True when `done` was reached or parsing failed (`ec`); false when more
// bytes are needed: the asynchronous read goes on from there.
template <typename Parser, typename Done>
bool parse_buffered(Parser& p, beast::flat_buffer& buffer, error_code& ec, Done done)
{
    while (!done(p) && buffer.size() > 0) {
        const auto n = p.put(buffer.data(), ec);
        buffer.consume(n);
        if (ec == boost::beast::http::error::need_more) {
            ec = {};
            return false;
        }
        if (ec) return true;
        if (n == 0) return false;
    }
    return done(p);
}

// A time limit on an operation on a client connection that, unlike Beast's stream
// timeouts, leaves the connection open when it passes: the pending operations end with
// operation_aborted and fired() is true, so that a 408 can still be written after a slow
// read, or the exchange can end cleanly after a write the client does not take.
// Scoped: the limit ends with it.
class client_deadline
{
public:
    client_deadline(client_socket& stream, std::chrono::milliseconds limit);
    ~client_deadline();
    client_deadline(const client_deadline&) = delete;
    client_deadline& operator=(const client_deadline&) = delete;
    bool fired() const { return state_->fired; }

private:
    struct state
    {
        bool done = false, fired = false;
    };
    net::steady_timer timer_;
    // From the thread's recycled blocks (one per client write: no malloc each time).
    std::shared_ptr<state> state_ = std::allocate_shared<state>(net::recycling_allocator<state>());
};

// A gateway-made error response (plus `extra` headers), written to `down`: in Dify's
// shape, or in OpenAI's for the OpenAI front.
net::awaitable<bool> write_gateway_error(client_socket& down, const gateway_error& e, const std::string& request_id,
                                         bool keep_alive, const header_list& extra = {}, api_front front = api_front::dify);

} // namespace gw::gateway
