// The emulator's network side: accepts HTTP/1.1 (plain or TLS) on one executor, runs a
// keep-alive session coroutine per connection, writes replies and SSE streams (with
// pings, token delays and injected faults) for `service`. Single-threaded by design:
// the service and its state are touched only from the io_context that runs the server.
// drain() is the graceful stop: no new connections, replies and streams under way run to
// their end (each says `Connection: close`), then `quiet` is called.
#pragma once

#include "gateway/emulator/service.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace gw::emulator {

struct server_options
{
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;                        // 0 = ephemeral
    std::shared_ptr<boost::asio::ssl::context> tls; // null = plain HTTP
    // Each new connection waits this long before the server reads from it (TLS: before
    // the handshake): a distant server's connection setup, for preconnect tests and benches.
    std::chrono::milliseconds connect_delay{0};
};

class server
{
public:
    // Binds and listens immediately (throws on failure); `svc` must outlive the server
    // and every session it started (i.e. the io_context's run).
    server(boost::asio::io_context& io, service& svc, server_options opts);

    boost::asio::ip::tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }
    void start();
    void stop();
    // Stops accepting; calls `quiet` once no reply is under way, or after `limit` at the
    // latest. Idle keep-alive connections do not hold it up.
    void drain(std::chrono::milliseconds limit, std::function<void()> quiet);
    // A drain nothing waits for any more (a second signal stops at once): `quiet` is dropped.
    void abandon_drain() { activity_->on_quiet = nullptr; }

    // Replies under way on every connection, and what a drain waits for.
    struct activity
    {
        int replying = 0;
        bool draining = false;
        std::function<void()> on_quiet; // called once, when draining and nothing replies
        void reply_done();
    };

private:
    boost::asio::io_context& io_;
    service& svc_;
    server_options opts_;
    boost::asio::ip::tcp::acceptor acceptor_;
    std::shared_ptr<activity> activity_ = std::make_shared<activity>();
    std::unique_ptr<boost::asio::steady_timer> drain_limit_;
};

// A TLS server context from PEM files (throws with a clear message on failure).
std::shared_ptr<boost::asio::ssl::context> make_server_tls(const std::string& cert_file, const std::string& key_file);

} // namespace gw::emulator
