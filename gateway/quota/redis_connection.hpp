// One multiplexed connection from a worker to one Redis node, plain or TLS. Concurrent
// callers' commands share it: each submit appends to one output buffer that a writer
// coroutine sends in as few writes as the socket allows, and a reader coroutine hands the
// replies back in order (redis_pipeline). No caller ever waits for a free connection.
//
// Lifetime: created by open(), which queues the session set-up (AUTH, SELECT) ahead of any
// caller's command and starts connecting; the writer and reader coroutines hold the object
// until it fails or is closed. A failed connection is never reused: every call in flight
// ends with its error, and the owner opens a new one. Runs on one worker's executor.
#pragma once

#include "config/redis_url.hpp"
#include "gateway/net.hpp"
#include "gateway/quota/redis_pipeline.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace gw::gateway {

class tls_socket;

// Errors of the Redis client itself (besides socket and TLS errors).
enum class redis_errc
{
    backing_off = 1, // a recent connect failed; not trying again yet
    protocol,        // a reply could not be parsed, or answered nothing asked
    setup_refused,   // AUTH or SELECT was refused (the reply is logged)
    closed,          // the connection was closed by this side
    unresponsive,    // nothing read for too long while calls waited
    redirected,      // Redis Cluster kept redirecting the command
    stalled,         // not sent: calls on the connection got no reply within a deadline
    partial,         // some of the calls failed after others were sent (they may have run)
    no_master,       // not sent: no sentinel named the master (yet)
    failing_over,    // not sent: a sentinel is promoting a replica of the master
};
error_code make_error_code(redis_errc e);

} // namespace gw::gateway

template <>
struct boost::system::is_error_code_enum<gw::gateway::redis_errc> : std::true_type
{
};

namespace gw::gateway {

// How to reach and greet one node.
struct redis_endpoint
{
    std::string host;
    std::uint16_t port = 6379;
    config::redis_target session;                  // credentials and db
    std::shared_ptr<net::ssl::context> tls;        // rediss://: the client context
    std::string tls_name;                          // name verified and sent as SNI ("" = host)
    bool verify = true;
    std::chrono::milliseconds connect_timeout{2000};
};

class redis_connection : public std::enable_shared_from_this<redis_connection>
{
public:
    using clock = std::chrono::steady_clock;

    static std::shared_ptr<redis_connection> open(net::any_io_executor ex, redis_endpoint endpoint);
    ~redis_connection();

    // Queues formatted commands expecting `replies` replies; the call completes when they
    // have all arrived, or with the connection's error.
    std::shared_ptr<redis_call> submit(std::string_view wire, std::size_t replies);
    // Subscribes the connection (RESP2): `wire` is the SUBSCRIBE command, and every reply
    // from then on (its confirmation, the messages, PING's answers) goes to `on_message`,
    // on this connection's executor, until the connection ends; the call then ends with its
    // error. Calls submitted after it end at once with redis_errc::protocol.
    std::shared_ptr<redis_call> subscribe(std::string_view wire, std::function<void(const redis_value&)> on_message);
    // After subscribe(): commands whose replies go to `on_message` (PING).
    void send_subscribed(std::string_view wire);
    // Ends the connection: calls in flight fail with `why`.
    void close(error_code why = redis_errc::closed);

    bool failed() const { return failed_; }
    bool was_ready() const { return ready_; } // Redis answered on it before it failed
    clock::time_point failed_at() const { return failed_at_; }
    // The oldest call has waited longer than `limit` and nothing was read for that long
    // either: a dead peer or a stalled server.
    bool stalled(clock::time_point now, clock::duration limit) const;

    redis_connection(net::any_io_executor ex, redis_endpoint endpoint); // use open()

private:
    static net::awaitable<void> run(std::shared_ptr<redis_connection> self);
    static net::awaitable<void> read_replies(std::shared_ptr<redis_connection> self);
    net::awaitable<error_code> connect();
    net::awaitable<error_code> write(std::string_view bytes);
    void fail(error_code ec);
    // Stamps `call` and queues it behind everything submitted; ends it at once instead when
    // the connection failed or is subscribed (its replies would go to the subscription).
    std::shared_ptr<redis_call> queue(std::shared_ptr<redis_call> call, std::string_view wire);
    // Bytes were queued: writes them now if it can, else wakes the writer.
    void output_queued();
    // Plain TCP with the writer idle: writes the queued bytes now, as far as the socket
    // takes them without blocking (the writer sends any rest).
    void write_now();
    // The connection's socket: the TLS socket's once TLS is set up (it takes the socket over).
    net::ip::tcp::socket& socket();

    net::any_io_executor ex_;
    redis_endpoint endpoint_;
    beast::tcp_stream tcp_;           // its deadline bounds the connect; reads and writes use its socket
    std::unique_ptr<tls_socket> tls_; // then over tcp_'s socket, moved into it
    net::steady_timer wake_writer_;
    redis_pipeline pipeline_;
    std::shared_ptr<redis_call> setup_;
    std::size_t setup_bytes_ = 0; // written alone, before any caller's command
    bool ready_ = false;
    bool subscribed_ = false;
    bool writer_idle_ = false; // the writer waits for output (set-up done, nothing being written)
    bool failed_ = false;
    error_code error_;
    clock::time_point failed_at_{};
    clock::time_point last_read_ = clock::now();
    std::array<char, 16 * 1024> buffer_;
};

// Waits until `call` is done or `deadline` passes (then beast::error::timeout; the call
// stays queued and its replies are dropped when they come).
net::awaitable<error_code> wait_for(redis_call& call, redis_connection::clock::time_point deadline);

// One command in RESP (an array of bulk strings), appended to `out` or returned.
void append_redis_command(std::string& out, const std::vector<std::string>& args);
std::string format_redis_command(const std::vector<std::string>& args);

} // namespace gw::gateway
