// A TLS client stream over a TCP socket of its own, with OpenSSL reading and writing
// the socket itself (SSL_set_fd) and Asio only waiting for readiness -- as nginx does.
// Compared with asio::ssl::stream it keeps no fixed 17 KiB staging buffers and no BIO
// pair (≈ 100 KiB per connection), and copies no bytes twice: an idle or slowly streaming
// upstream connection holds only OpenSSL's session state, since SSL_MODE_RELEASE_BUFFERS
// frees its record buffers between records. That is what lets 10,000 open SSE streams fit.
//
// Models Beast's AsyncReadStream/AsyncWriteStream (any completion token). One read and one
// write may be outstanding at a time (as with any Asio stream); each uses the first
// non-empty buffer of its sequence (callers coalesce). Deadlines: expires_at/after/never
// like beast::tcp_stream -- when the deadline passes, outstanding operations end with
// beast::error::timeout, and so do later ones until the deadline is reset.
// Not thread-safe: used on its connection's executor.
#pragma once

#include "gateway/net.hpp"

#include <boost/asio/compose.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <memory>
#include <openssl/ssl.h>
#include <string>

namespace gw::gateway {

// The last TLS session an upstream's server issued, offered on the next connection so
// that new connections resume (no certificate exchange or verification). One per pool
// (per worker and upstream): touched only on that worker's thread.
class tls_session_slot
{
public:
    tls_session_slot() = default;
    ~tls_session_slot();
    tls_session_slot(const tls_session_slot&) = delete;
    tls_session_slot& operator=(const tls_session_slot&) = delete;

    SSL_SESSION* get() const { return session_; }
    void keep(SSL_SESSION* s); // takes the reference

private:
    SSL_SESSION* session_ = nullptr;
};

// A TLS client context: TLS 1.2 and later, verifying the peer with `ca_file` (PEM; "" =
// the system trust store) unless `verify` is false. Throws on an unreadable file.
std::shared_ptr<net::ssl::context> make_client_tls(const std::string& ca_file, bool verify);

// Makes `ctx` hand new client sessions to the connection's tls_session_slot.
void enable_session_resumption(net::ssl::context& ctx);

class tls_socket
{
public:
    using executor_type = net::any_io_executor;

    // Over `socket`, connected or not (connect it through socket(), within the deadline;
    // then set_peer and handshake). `ctx` carries the trust store and verify mode, and
    // `sessions` (optional) the session to resume and where new ones go. A plain socket,
    // not a beast::tcp_stream: the deadlines are this class's own, and an open connection
    // keeps no stream block of Beast's.
    tls_socket(net::ip::tcp::socket socket, net::ssl::context& ctx, std::shared_ptr<tls_session_slot> sessions = nullptr);
    ~tls_socket();
    tls_socket(const tls_socket&) = delete;
    tls_socket& operator=(const tls_socket&) = delete;

    executor_type get_executor() { return socket_.get_executor(); }
    net::ip::tcp::socket& socket() { return socket_; }
    // True when the handshake resumed an earlier session.
    bool resumed() const { return ::SSL_session_reused(ssl_) == 1; }
    // Bytes OpenSSL has read from the socket and not handed out yet (read-ahead may take
    // more than the record asked for): what the socket alone no longer shows.
    bool holds_unread_bytes() const { return ::SSL_has_pending(ssl_) == 1; }

    // SNI and host-name (or IP address) verification for `host`; false on an OpenSSL error.
    bool set_peer(const std::string& host, bool verify);

    void expires_at(std::chrono::steady_clock::time_point t);
    void expires_after(std::chrono::steady_clock::duration d)
    {
        expires_at(std::chrono::steady_clock::now() + d);
    }
    void expires_never();
    // Whether the deadline has passed (and cancelled what was under way on socket(), a
    // connect included).
    bool expired() const { return deadline_->expired; }

    // One write tried now, without waiting: the bytes OpenSSL took (possibly fewer than
    // `size`), or 0 with ec = would_block when the socket cannot take them now (the caller
    // goes on with async_write over the same bytes, as OpenSSL requires of a retry). A
    // deadline already passed is a timeout.
    std::size_t write_now(const void* data, std::size_t size, error_code& ec);
    // One read tried now, without waiting: the bytes OpenSSL decrypted (at most `size`), or
    // 0 with ec = would_block when none are ready (wait with async_wait_readable, then try
    // again). End of stream and failures as async_read_some gives them.
    std::size_t read_now(void* data, std::size_t size, error_code& ec);

    // After read_now found nothing ready: completes when the socket is readable (or
    // writable, when that read needed to write first), holding no buffer while it waits.
    // A part of a record OpenSSL holds is no reason to complete: the rest must come first.
    // Ends with beast::error::timeout at the deadline.
    template <typename Token> auto async_wait_readable(Token&& token)
    {
        return net::async_compose<Token, void(error_code)>(ready_op{this}, token, socket_);
    }

    template <typename Token> auto async_handshake(Token&& token)
    {
        return net::async_compose<Token, void(error_code)>(handshake_op{this}, token, socket_);
    }

    template <typename MutableBuffers, typename Token>
    auto async_read_some(const MutableBuffers& buffers, Token&& token)
    {
        auto first = first_buffer<net::mutable_buffer>(buffers);
        return net::async_compose<Token, void(error_code, std::size_t)>(
            io_op<true>{this, first.data(), first.size()}, token, socket_
        );
    }

    template <typename ConstBuffers, typename Token>
    auto async_write_some(const ConstBuffers& buffers, Token&& token)
    {
        auto first = first_buffer<net::const_buffer>(buffers);
        return net::async_compose<Token, void(error_code, std::size_t)>(
            io_op<false>{this, const_cast<void*>(first.data()), first.size()}, token, socket_
        );
    }

private:
    // The first non-empty buffer of a sequence (empty when there is none).
    template <typename Buffer, typename Sequence> static Buffer first_buffer(const Sequence& buffers)
    {
        for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers); ++it)
            if (Buffer b(*it); b.size() > 0) return b;
        return Buffer{};
    }

    // What one OpenSSL call asks for next.
    enum class step { done, want_read, want_write, failed };
    struct outcome
    {
        step next = step::failed;
        std::size_t bytes = 0;
        error_code ec;
    };
    outcome try_handshake();
    outcome try_io(bool reading, void* data, std::size_t size);
    std::size_t io_now(bool reading, void* data, std::size_t size, error_code& ec);
    outcome note_failure(outcome o); // remembers a TLS protocol failure
    // The error an interrupted wait reports (timeout when the deadline passed).
    error_code wait_error(const error_code& ec) const;

    struct handshake_op
    {
        tls_socket* self_;
        template <typename Self> void operator()(Self& self, error_code ec = {})
        {
            if (ec) return self.complete(self_->wait_error(ec));
            if (self_->deadline_->expired) return self.complete(beast::error::timeout);
            auto r = self_->try_handshake();
            if (r.next == step::want_read)
                return self_->socket_.async_wait(net::socket_base::wait_read, std::move(self));
            if (r.next == step::want_write)
                return self_->socket_.async_wait(net::socket_base::wait_write, std::move(self));
            self.complete(r.ec);
        }
    };

    // One read or write. An operation that completes within its initiating call (data
    // already decrypted, a socket ready to take the bytes) completes through a post, as
    // Asio's own sockets do: a loop of such reads must not grow the stack call by call.
    template <bool Reading> struct io_op
    {
        tls_socket* self_;
        void* data_;
        std::size_t size_;
        bool waited_ = false;   // an async wait ran: completing now is not within the initiation
        bool finished_ = false; // the result below is ready; this call comes from the post
        error_code result_{};
        std::size_t bytes_ = 0;

        template <typename Self> void operator()(Self& self, error_code ec = {})
        {
            if (finished_) return self.complete(result_, bytes_);
            if (ec) return finish(self, self_->wait_error(ec), 0);
            if (self_->deadline_->expired) return finish(self, beast::error::timeout, 0);
            if (size_ == 0) return finish(self, error_code{}, 0);
            auto r = self_->try_io(Reading, data_, size_);
            if (r.next == step::want_read || r.next == step::want_write) {
                waited_ = true;
                auto what = r.next == step::want_read ? net::socket_base::wait_read : net::socket_base::wait_write;
                return self_->socket_.async_wait(what, std::move(self));
            }
            finish(self, r.ec, r.bytes);
        }

        template <typename Self> void finish(Self& self, error_code ec, std::size_t bytes)
        {
            if (waited_) return self.complete(ec, bytes);
            finished_ = true;
            result_ = ec;
            bytes_ = bytes;
            auto ex = self_->socket_.get_executor();
            net::post(ex, std::move(self));
        }
    };

    // async_wait_readable: a deadline already passed completes it through a post.
    struct ready_op
    {
        tls_socket* self_;
        bool waited_ = false;

        template <typename Self> void operator()(Self& self, error_code ec = {})
        {
            if (waited_) return self.complete(ec ? self_->wait_error(ec) : self_->deadline_->expired ? beast::error::timeout : ec);
            waited_ = true;
            if (self_->deadline_->expired) {
                auto ex = self_->socket_.get_executor();
                return net::post(ex, beast::bind_front_handler(std::move(self), net::error::operation_aborted));
            }
            auto what = self_->read_wants_write_ ? net::socket_base::wait_write : net::socket_base::wait_read;
            self_->socket_.async_wait(what, std::move(self));
        }
    };

    // Shared with the deadline timer's handler, which may run after this object is gone.
    struct deadline_state
    {
        bool expired = false;
        bool waiting = false;        // a wait runs on timer_ (its generation is the current one)
        std::uint64_t generation = 0;
        std::chrono::steady_clock::time_point due = std::chrono::steady_clock::time_point::max(); // max: none
        tls_socket* owner = nullptr;
    };
    // Starts a wait until `t` (the one running is cancelled).
    void arm(std::chrono::steady_clock::time_point t);
    static void on_timer(const std::shared_ptr<deadline_state>& state, std::uint64_t generation, error_code ec);

    net::ip::tcp::socket socket_;
    SSL* ssl_ = nullptr;
    std::shared_ptr<tls_session_slot> sessions_;
    bool protocol_failed_ = false;
    bool read_wants_write_ = false; // the last read_now found OpenSSL waiting to write
    net::steady_timer timer_;
    std::shared_ptr<deadline_state> deadline_ = std::make_shared<deadline_state>();
};

} // namespace gw::gateway
