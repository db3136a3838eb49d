#include "gateway/quota/redis_connection.hpp"

#include "gateway/ops/spawn.hpp"
#include "gateway/upstream/tls_socket.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include <charconv>
#include <cstring>

#include <openssl/err.h>
#include <spdlog/spdlog.h>

namespace gw::gateway {

using tcp = net::ip::tcp;

namespace {

struct redis_category_t : boost::system::error_category
{
    const char* name() const noexcept override { return "redis"; }
    std::string message(int ev) const override
    {
        switch (static_cast<redis_errc>(ev)) {
        case redis_errc::backing_off: return "redis unreachable (backing off before reconnecting)";
        case redis_errc::protocol: return "malformed or unexpected redis reply";
        case redis_errc::setup_refused: return "redis refused AUTH or SELECT";
        case redis_errc::closed: return "redis connection closed";
        case redis_errc::unresponsive: return "redis connection unresponsive";
        case redis_errc::redirected: return "redis cluster redirected the command too many times";
        case redis_errc::stalled: return "redis not answering (calls waiting past their deadline)";
        case redis_errc::partial: return "redis failed part of a pipeline (on one of several nodes)";
        case redis_errc::no_master: return "no redis sentinel names the master";
        case redis_errc::failing_over: return "redis master being failed over (waiting for the new one)";
        }
        return "redis error";
    }
};

} // namespace

error_code make_error_code(redis_errc e)
{
    static const redis_category_t category;
    return {static_cast<int>(e), category};
}

namespace {

// Writes "<type><n>\r\n" (an array's element count, a bulk string's length) at `p`, which
// has room for it; returns the end.
char* put_resp_length(char* p, char type, std::size_t n)
{
    *p++ = type;
    p = std::to_chars(p, p + 20, n).ptr; // 20 digits: any 64-bit count
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

} // namespace

// RESP's array of bulk strings, written here; hiredis reads the replies (resp_reader).
// Its formatters cost about 600 instructions per argument (sprintf, or sds's own
// formatting, for each length), and a generating request's commands have some 36.
void append_redis_command(std::string& out, const std::vector<std::string>& args)
{
    constexpr std::size_t frame = 1 + 20 + 2 + 2; // a length line and the closing CRLF
    std::size_t room = frame;
    for (const auto& a : args) room += frame + a.size();
    const std::size_t at = out.size();
    out.resize(at + room);
    char* p = put_resp_length(out.data() + at, '*', args.size());
    for (const auto& a : args) {
        p = put_resp_length(p, '$', a.size());
        std::memcpy(p, a.data(), a.size());
        p += a.size();
        *p++ = '\r';
        *p++ = '\n';
    }
    out.resize(static_cast<std::size_t>(p - out.data()));
}

std::string format_redis_command(const std::vector<std::string>& args)
{
    std::string out;
    append_redis_command(out, args);
    return out;
}

namespace {

// Clears a call's wake-up when the waiting frame ends, however it ends (also when it is
// destroyed without resuming at shutdown): the call may outlive it in the pipeline.
struct wake_up_registration
{
    redis_call& call;
    ~wake_up_registration() { call.on_done = nullptr; }
};

} // namespace

net::awaitable<error_code> wait_for(redis_call& call, redis_connection::clock::time_point deadline)
{
    if (call.done) co_return call.ec;
    net::steady_timer timer(co_await net::this_coro::executor);
    timer.expires_at(deadline);
    wake_up_registration registration{call};
    call.on_done = [&timer] { timer.cancel(); };
    co_await timer.async_wait(use_nothrow);
    if (!call.done) co_return beast::error::timeout; // gave up: its replies are dropped when they come
    co_return call.ec;
}

bool redis_connection::stalled(clock::time_point now, clock::duration limit) const
{
    auto oldest = pipeline_.oldest_submitted();
    // Not "nothing read since the oldest was sent": replies to calls sent before it may
    // have come after, and then the test would never fire.
    return !failed_ && oldest != clock::time_point::max() && now - oldest > limit && now - last_read_ > limit;
}

redis_connection::redis_connection(net::any_io_executor ex, redis_endpoint endpoint)
    : ex_(ex), endpoint_(std::move(endpoint)), tcp_(ex), wake_writer_(ex)
{
}

redis_connection::~redis_connection() = default;

std::shared_ptr<redis_connection> redis_connection::open(net::any_io_executor ex, redis_endpoint endpoint)
{
    auto self = std::make_shared<redis_connection>(ex, std::move(endpoint));
    // The session set-up goes first, ahead of every caller's command.
    std::string setup;
    std::size_t replies = 0;
    const auto& s = self->endpoint_.session;
    if (!s.password.empty()) {
        setup += s.username.empty() ? format_redis_command({"AUTH", s.password})
                                    : format_redis_command({"AUTH", s.username, s.password}); // an ACL user
        ++replies;
    }
    if (s.db != 0) {
        setup += format_redis_command({"SELECT", std::to_string(s.db)});
        ++replies;
    }
    if (replies > 0) {
        self->setup_ = self->submit(setup, replies);
        self->setup_bytes_ = setup.size();
    }
    net::co_spawn(ex, run(self), log_failure("redis connection"));
    return self;
}

std::shared_ptr<redis_call> redis_connection::submit(std::string_view wire, std::size_t replies)
{
    auto call = std::make_shared<redis_call>();
    call->expected = replies;
    return queue(std::move(call), wire);
}

std::shared_ptr<redis_call> redis_connection::subscribe(std::string_view wire, std::function<void(const redis_value&)> on_message)
{
    auto call = std::make_shared<redis_call>();
    call->expected = 1;
    call->on_message = std::move(on_message);
    call = queue(std::move(call), wire);
    if (!call->done) subscribed_ = true;
    return call;
}

std::shared_ptr<redis_call> redis_connection::queue(std::shared_ptr<redis_call> call, std::string_view wire)
{
    call->submitted = clock::now();
    if (failed_ || subscribed_) { // after a subscription, its replies would go to it
        call->ec = failed_ ? error_ : make_error_code(redis_errc::protocol);
        call->done = true;
        return call;
    }
    pipeline_.submit(call, wire);
    output_queued();
    return call;
}

void redis_connection::send_subscribed(std::string_view wire)
{
    if (failed_ || !subscribed_) return;
    pipeline_.append_output(wire);
    output_queued();
}

void redis_connection::output_queued()
{
    if (writer_idle_ && !tls_) write_now(); // no wake-up of the writer to wait for
    if (pipeline_.has_output()) wake_writer_.cancel(); // the writer sends it (now, or once connected)
}

net::ip::tcp::socket& redis_connection::socket()
{
    return tls_ ? tls_->socket() : tcp_.socket();
}

void redis_connection::write_now()
{
    error_code ec;
    auto out = pipeline_.output();
    auto n = socket().write_some(net::buffer(out.data(), out.size()), ec); // the socket is non-blocking
    if (ec == net::error::would_block || ec == net::error::try_again) return;
    if (ec) {
        fail(ec); // every call waiting on this connection, this one included, ends with ec
        return;
    }
    pipeline_.drop_output(n);
}

void redis_connection::close(error_code why)
{
    fail(why);
}

void redis_connection::fail(error_code ec)
{
    if (failed_) return;
    failed_ = true;
    error_ = ec;
    failed_at_ = clock::now();
    error_code ignored;
    socket().shutdown(tcp::socket::shutdown_both, ignored);
    socket().close(ignored);
    wake_writer_.cancel();
    pipeline_.fail_all(ec);
}

net::awaitable<error_code> redis_connection::connect()
{
    tcp::resolver resolver(ex_);
    auto [rec, endpoints] = co_await resolver.async_resolve(endpoint_.host, std::to_string(endpoint_.port), use_nothrow);
    if (rec) co_return rec;
    if (failed_) co_return error_; // closed meanwhile
    tcp_.expires_after(endpoint_.connect_timeout);
    auto [cec, ep] = co_await tcp_.async_connect(endpoints, use_nothrow);
    tcp_.expires_never();
    if (cec) co_return cec;
    if (failed_) co_return error_;
    error_code ignored;
    tcp_.socket().set_option(tcp::no_delay(true), ignored);
    tcp_.socket().non_blocking(true, ignored); // write_now() never blocks the worker
    if (endpoint_.tls) {
        tls_ = std::make_unique<tls_socket>(tcp_.release_socket(), *endpoint_.tls);
        if (!tls_->set_peer(endpoint_.tls_name.empty() ? endpoint_.host : endpoint_.tls_name, endpoint_.verify))
            co_return error_code(static_cast<int>(::ERR_get_error()), net::error::get_ssl_category());
        tls_->expires_after(endpoint_.connect_timeout);
        auto [hec] = co_await tls_->async_handshake(use_nothrow);
        tls_->expires_never();
        if (hec) co_return hec;
        if (failed_) co_return error_;
    }
    co_return error_code{};
}

// Connects, then writes whatever callers queued, for as long as the connection lives.
net::awaitable<void> redis_connection::run(std::shared_ptr<redis_connection> self)
{
    if (auto ec = co_await self->connect()) {
        if (!self->failed_)
            spdlog::debug("redis {}:{}: connect failed: {}", self->endpoint_.host, self->endpoint_.port, ec.message());
        self->fail(ec);
        co_return;
    }
    if (self->failed_) co_return; // closed while connecting
    self->last_read_ = clock::now();
    net::co_spawn(self->ex_, read_replies(self), log_failure("redis reply reader"));
    if (self->setup_) { // AUTH/SELECT alone first: nothing runs unauthenticated or in the wrong db
        auto out = self->pipeline_.take_output();
        auto setup = std::move(self->setup_);
        auto ec = co_await self->write(std::string_view(out).substr(0, self->setup_bytes_));
        if (!ec) ec = co_await wait_for(*setup, clock::now() + self->endpoint_.connect_timeout);
        for (const auto& r : setup->replies) {
            if (ec || !r.is_error()) continue;
            spdlog::warn("redis {}:{}: session set-up refused: {}", self->endpoint_.host, self->endpoint_.port, r.str);
            ec = redis_errc::setup_refused;
        }
        if (!ec) ec = co_await self->write(std::string_view(out).substr(self->setup_bytes_));
        if (ec) {
            self->fail(ec);
            co_return;
        }
    }
    while (!self->failed_) {
        if (!self->pipeline_.has_output()) {
            self->wake_writer_.expires_at(clock::time_point::max());
            self->writer_idle_ = true;
            co_await self->wake_writer_.async_wait(use_nothrow); // submit() or fail() cancels it
            self->writer_idle_ = false;
            continue;
        }
        auto out = self->pipeline_.take_output();
        if (auto ec = co_await self->write(out)) self->fail(ec);
    }
}

net::awaitable<error_code> redis_connection::write(std::string_view bytes)
{
    if (bytes.empty()) co_return error_code{};
    error_code ec;
    if (tls_)
        std::tie(ec, std::ignore) = co_await net::async_write(*tls_, net::buffer(bytes), use_nothrow);
    else
        std::tie(ec, std::ignore) = co_await net::async_write(tcp_.socket(), net::buffer(bytes), use_nothrow); // callers' deadlines are their own (wait_for)
    co_return ec;
}

net::awaitable<void> redis_connection::read_replies(std::shared_ptr<redis_connection> self)
{
    while (!self->failed_) {
        error_code ec;
        std::size_t n = 0;
        auto buffer = net::buffer(self->buffer_);
        if (self->tls_)
            std::tie(ec, n) = co_await self->tls_->async_read_some(buffer, use_nothrow);
        else
            std::tie(ec, n) = co_await self->tcp_.socket().async_read_some(buffer, use_nothrow);
        if (self->failed_) co_return;
        if (ec) {
            self->fail(ec);
            co_return;
        }
        self->last_read_ = clock::now();
        if (!self->pipeline_.feed(self->buffer_.data(), n)) {
            self->fail(redis_errc::protocol);
            co_return;
        }
        self->ready_ = true; // Redis answered: a connection that works (reconnects need no backoff)
    }
}

} // namespace gw::gateway
