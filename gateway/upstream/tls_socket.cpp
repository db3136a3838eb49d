#include "gateway/upstream/tls_socket.hpp"

#include <boost/asio/ip/address.hpp>

#include <cerrno>
#include <openssl/err.h>
#include <openssl/x509v3.h>

namespace gw::gateway {

namespace {

// The SSL ex_data slot that points a connection at its tls_session_slot.
int session_slot_index()
{
    static const int index = ::SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

// OpenSSL's new-session callback (TLS 1.3 tickets arrive after the handshake).
int on_new_session(SSL* ssl, SSL_SESSION* session)
{
    auto* slot = static_cast<tls_session_slot*>(::SSL_get_ex_data(ssl, session_slot_index()));
    if (!slot) return 0; // not kept: OpenSSL frees it
    slot->keep(session);
    return 1;
}

} // namespace

std::shared_ptr<net::ssl::context> make_client_tls(const std::string& ca_file, bool verify)
{
    namespace ssl = net::ssl;
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                     ssl::context::no_tlsv1_1);
    if (verify) {
        ctx->set_verify_mode(ssl::verify_peer);
        if (ca_file.empty())
            ctx->set_default_verify_paths();
        else
            ctx->load_verify_file(ca_file);
    } else {
        ctx->set_verify_mode(ssl::verify_none);
    }
    return ctx;
}

tls_session_slot::~tls_session_slot()
{
    if (session_) ::SSL_SESSION_free(session_);
}

void tls_session_slot::keep(SSL_SESSION* s)
{
    if (session_) ::SSL_SESSION_free(session_);
    session_ = s;
}

void enable_session_resumption(net::ssl::context& ctx)
{
    ::SSL_CTX_set_session_cache_mode(ctx.native_handle(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    ::SSL_CTX_sess_set_new_cb(ctx.native_handle(), on_new_session);
}

tls_socket::tls_socket(net::ip::tcp::socket socket, net::ssl::context& ctx, std::shared_ptr<tls_session_slot> sessions)
    : socket_(std::move(socket)), sessions_(std::move(sessions)), timer_(socket_.get_executor())
{
    ssl_ = ::SSL_new(ctx.native_handle());
    if (!ssl_) throw std::runtime_error("SSL_new failed");
    if (sessions_) {
        ::SSL_set_ex_data(ssl_, session_slot_index(), sessions_.get());
        if (auto* s = sessions_->get()) ::SSL_set_session(ssl_, s); // resumed if the server still accepts it
    }
    ::SSL_set_mode(
        ssl_, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
    );
    ::SSL_set_options(ssl_, SSL_OP_IGNORE_UNEXPECTED_EOF); // a bare TCP close reads as end of stream
    // A record in one read() (without read-ahead OpenSSL reads its 5-byte header, then the
    // rest: two system calls per reply and per SSE event). Whatever a read brings beyond
    // the record stays in OpenSSL's buffer and is read before the socket is waited on.
    ::SSL_set_read_ahead(ssl_, 1);
    deadline_->owner = this;
}

tls_socket::~tls_socket()
{
    deadline_->owner = nullptr;
    // Closing without close_notify would make OpenSSL mark the session not resumable;
    // only a TLS protocol failure should do that.
    if (!protocol_failed_) ::SSL_set_shutdown(ssl_, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    ::SSL_free(ssl_);
}

bool tls_socket::set_peer(const std::string& host, bool verify)
{
    error_code ec;
    socket_.non_blocking(true, ec); // OpenSSL reads and writes the descriptor itself
    if (ec) return false;
    if (!::SSL_set_fd(ssl_, static_cast<int>(socket_.native_handle()))) return false;
    net::ip::make_address(host, ec);
    const bool is_ip = !ec;
    if (!is_ip && !::SSL_set_tlsext_host_name(ssl_, host.c_str())) return false; // SNI carries names only
    if (!verify) {
        ::SSL_set_verify(ssl_, SSL_VERIFY_NONE, nullptr);
        return true;
    }
    ::SSL_set_verify(ssl_, SSL_VERIFY_PEER, nullptr);
    auto* param = ::SSL_get0_param(ssl_);
    return !is_ip ? ::X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size()) == 1
              : ::X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) == 1;
}

void tls_socket::expires_at(std::chrono::steady_clock::time_point t)
{
    auto& d = *deadline_;
    d.expired = false;
    d.due = t;
    // A wait already running that ends no later than `t` is kept: when it ends it finds the
    // deadline moved on and waits for the rest. (A stream's idle deadline moves with every
    // event; re-arming each time would start one wait and cancel another per event.)
    if (d.waiting && timer_.expiry() <= t) return;
    arm(t);
}

void tls_socket::arm(std::chrono::steady_clock::time_point t)
{
    auto state = deadline_;
    const auto generation = ++state->generation;
    state->waiting = true;
    timer_.expires_at(t); // cancels a wait still running: its handler sees an old generation
    timer_.async_wait([state, generation](error_code ec) { on_timer(state, generation, ec); });
}

void tls_socket::on_timer(const std::shared_ptr<deadline_state>& state, std::uint64_t generation, error_code ec)
{
    if (state->generation != generation) return; // re-armed since: a newer wait runs
    state->waiting = false;
    if (ec || !state->owner || state->due == std::chrono::steady_clock::time_point::max()) return;
    if (std::chrono::steady_clock::now() < state->due) { // moved on while this wait ran
        state->owner->arm(state->due);
        return;
    }
    state->expired = true;
    error_code ignored;
    state->owner->socket_.cancel(ignored); // outstanding waits end; wait_error says timeout
}

void tls_socket::expires_never()
{
    // A wait still running ends on its own and finds no deadline.
    deadline_->due = std::chrono::steady_clock::time_point::max();
    deadline_->expired = false;
}

error_code tls_socket::wait_error(const error_code& ec) const
{
    if (ec == net::error::operation_aborted && deadline_->expired) return beast::error::timeout;
    return ec;
}

namespace {

// Maps the result of an OpenSSL call on `ssl` (return value `ret`) to what to do next.
template <typename Outcome, typename Step> Outcome classify(SSL* ssl, int ret, std::size_t bytes)
{
    Outcome o;
    if (ret > 0) {
        o.next = Step::done;
        o.bytes = bytes;
        return o;
    }
    int saved_errno = errno;
    switch (::SSL_get_error(ssl, ret)) {
    case SSL_ERROR_WANT_READ:
        o.next = Step::want_read;
        return o;
    case SSL_ERROR_WANT_WRITE:
        o.next = Step::want_write;
        return o;
    case SSL_ERROR_ZERO_RETURN:
        o.ec = net::error::eof;
        break;
    case SSL_ERROR_SYSCALL: {
        unsigned long e = ::ERR_get_error();
        if (e != 0)
            o.ec = error_code(static_cast<int>(e), net::error::get_ssl_category());
        else if (saved_errno != 0)
            o.ec = error_code(saved_errno, boost::system::system_category());
        else
            o.ec = net::error::eof;
        break;
    }
    default: {
        unsigned long e = ::ERR_get_error();
        o.ec = e ? error_code(static_cast<int>(e), net::error::get_ssl_category())
                 : error_code(net::ssl::error::stream_truncated);
        break;
    }
    }
    o.next = Step::failed;
    return o;
}

// SSL_get_error reads the thread's error queue, which must therefore be empty before each
// SSL call. ERR_clear_error costs ~800 instructions even on an empty queue (it clears every
// slot); ERR_peek_error, which is what SSL_get_error itself consults, costs a fraction,
// and the queue is almost always empty.
void empty_error_queue()
{
    if (::ERR_peek_error() != 0) ::ERR_clear_error();
}

} // namespace

tls_socket::outcome tls_socket::note_failure(outcome o)
{
    if (o.next == step::failed && o.ec.category() == net::error::get_ssl_category()) protocol_failed_ = true;
    return o;
}

tls_socket::outcome tls_socket::try_handshake()
{
    empty_error_queue();
    errno = 0;
    int ret = ::SSL_connect(ssl_);
    return note_failure(classify<outcome, step>(ssl_, ret, 0));
}

std::size_t tls_socket::write_now(const void* data, std::size_t size, error_code& ec)
{
    return io_now(false, const_cast<void*>(data), size, ec);
}

std::size_t tls_socket::read_now(void* data, std::size_t size, error_code& ec)
{
    return io_now(true, data, size, ec);
}

std::size_t tls_socket::io_now(bool reading, void* data, std::size_t size, error_code& ec)
{
    ec = {};
    if (deadline_->expired) {
        ec = beast::error::timeout;
        return 0;
    }
    if (size == 0) return 0;
    auto r = try_io(reading, data, size);
    if (r.next == step::want_read || r.next == step::want_write) {
        if (reading) read_wants_write_ = r.next == step::want_write;
        ec = net::error::would_block;
        return 0;
    }
    ec = r.ec;
    return r.bytes;
}

tls_socket::outcome tls_socket::try_io(bool reading, void* data, std::size_t size)
{
    // A closed socket's descriptor number may already name another connection: OpenSSL,
    // which reads and writes it by number, must not touch it.
    if (!socket_.is_open()) return outcome{step::failed, 0, net::error::bad_descriptor};
    empty_error_queue();
    errno = 0;
    std::size_t n = 0;
    int ret = reading ? ::SSL_read_ex(ssl_, data, size, &n) : ::SSL_write_ex(ssl_, data, size, &n);
    auto o = note_failure(classify<outcome, step>(ssl_, ret, n));
    // About to wait for the peer: give back OpenSSL's 16 KiB record buffer (it allocated
    // it for the read that found nothing). SSL_MODE_RELEASE_BUFFERS alone keeps it while
    // waiting, which is what an idle or slow SSE stream does most of the time.
    if (o.next == step::want_read) ::SSL_free_buffers(ssl_); // a no-op when a partial record is held
    return o;
}

} // namespace gw::gateway
