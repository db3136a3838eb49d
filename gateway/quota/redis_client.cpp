#include "gateway/quota/redis_client.hpp"

#include "core/text.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <hiredis/read.h>
#include <hiredis/hiredis.h>

#include <cerrno>
#include <sys/socket.h>

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
        case redis_errc::protocol: return "malformed redis reply";
        case redis_errc::pool_exhausted: return "no redis connection available in time";
        }
        return "redis error";
    }
};

std::string format(const redis_client::command& cmd)
{
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : cmd) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    char* out = nullptr;
    long long n = redisFormatCommandArgv(&out, static_cast<int>(argv.size()), argv.data(), lens.data());
    std::string s = n > 0 ? std::string(out, static_cast<std::size_t>(n)) : std::string();
    redisFreeCommand(out);
    return s;
}

} // namespace

error_code make_error_code(redis_errc e)
{
    static const redis_category_t category;
    return {static_cast<int>(e), category};
}

// One Redis connection and its reply parser.
struct redis_client::connection
{
    explicit connection(net::any_io_executor ex) : stream(ex) {}
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    // Writes the pipeline and reads `count` replies.
    net::awaitable<std::tuple<error_code, std::vector<redis_value>>> round_trip(const std::string& wire, std::size_t count)
    {
        std::vector<redis_value> replies;
        auto [wec, wn] = co_await net::async_write(stream, net::buffer(wire), use_nothrow);
        if (wec) co_return std::tuple{wec, replies};
        while (replies.size() < count) {
            if (auto reply = reader.next()) {
                replies.push_back(std::move(*reply));
                continue;
            }
            if (reader.failed()) co_return std::tuple{error_code(redis_errc::protocol), replies};
            char buf[4096];
            auto [rec, rn] = co_await stream.async_read_some(net::buffer(buf), use_nothrow);
            if (rec) co_return std::tuple{rec, replies};
            reader.feed(buf, rn);
        }
        co_return std::tuple{error_code{}, replies};
    }

    // Whether an idle pooled connection can carry a command: Redis has not closed it (a
    // restart, a failover, an idle timeout on the server) and sent nothing unasked. One
    // non-blocking peek; a connection that fails it is dropped before any command is
    // written to it, so no command is ever sent twice because of it.
    bool usable()
    {
        char byte;
        auto n = ::recv(stream.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0) return false;                                  // closed by Redis
        if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK; // nothing pending: alive
        return false; // unsolicited bytes: out of step with its replies
    }

    beast::tcp_stream stream;
    resp_reader reader;
};

redis_client::redis_client(net::any_io_executor ex, redis_target target, std::chrono::milliseconds timeout, int max_connections)
    : ex_(ex), target_(std::move(target)), timeout_(timeout), max_connections_(max_connections)
{
}

redis_client::~redis_client() = default;

net::awaitable<std::tuple<error_code, std::unique_ptr<redis_client::connection>>> redis_client::acquire()
{
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    for (;;) {
        if (!idle_.empty()) {
            auto c = std::move(idle_.back());
            idle_.pop_back();
            if (!c->usable()) { // e.g. Redis restarted since: a new connection instead
                --open_;
                continue;
            }
            co_return std::tuple{error_code{}, std::move(c)};
        }
        if (open_ < max_connections_) {
            if (std::chrono::steady_clock::now() < retry_at_)
                co_return std::tuple{error_code(redis_errc::backing_off), std::unique_ptr<connection>{}};
            ++open_;
            auto c = std::make_unique<connection>(ex_);
            tcp::resolver resolver(ex_);
            auto [rec, eps] = co_await resolver.async_resolve(target_.host, std::to_string(target_.port), use_nothrow);
            error_code ec = rec;
            if (!ec) {
                c->stream.expires_after(timeout_);
                std::tie(ec, std::ignore) = co_await c->stream.async_connect(eps, use_nothrow);
            }
            std::vector<command> setup;
            if (!target_.password.empty()) {
                if (target_.username.empty())
                    setup.push_back({"AUTH", target_.password});
                else
                    setup.push_back({"AUTH", target_.username, target_.password}); // an ACL user
            }
            if (target_.db != 0) setup.push_back({"SELECT", std::to_string(target_.db)});
            if (!ec && !setup.empty()) {
                std::string wire;
                for (const auto& cmd : setup) wire += format(cmd);
                auto [sec, replies] = co_await c->round_trip(wire, setup.size());
                ec = sec;
                for (const auto& r : replies)
                    if (!ec && r.is_error()) ec = redis_errc::protocol;
            }
            if (ec) {
                --open_;
                backoff_ = std::min(std::chrono::milliseconds(1000), std::max(std::chrono::milliseconds(50), backoff_ * 2));
                retry_at_ = std::chrono::steady_clock::now() + backoff_;
                co_return std::tuple{ec, std::unique_ptr<connection>{}};
            }
            c->stream.expires_never();
            error_code ignored;
            c->stream.socket().set_option(tcp::no_delay(true), ignored);
            backoff_ = std::chrono::milliseconds(0);
            ++connects_;
            co_return std::tuple{error_code{}, std::move(c)};
        }
        net::steady_timer waiter(ex_);
        waiter.expires_at(deadline);
        waiters_.push_back(&waiter);
        auto [wec] = co_await waiter.async_wait(use_nothrow);
        waiters_.remove(&waiter);
        if (!wec) co_return std::tuple{error_code(redis_errc::pool_exhausted), std::unique_ptr<connection>{}};
    }
}

void redis_client::release(std::unique_ptr<connection> c)
{
    if (c)
        idle_.push_back(std::move(c));
    else
        --open_;
    if (!waiters_.empty()) {
        waiters_.front()->cancel();
        waiters_.pop_front();
    }
}

net::awaitable<std::tuple<error_code, std::vector<redis_value>>> redis_client::exec(std::vector<command> commands)
{
    auto [aec, conn] = co_await acquire();
    if (aec) co_return std::tuple{aec, std::vector<redis_value>{}};
    std::string wire;
    for (const auto& cmd : commands) wire += format(cmd);
    conn->stream.expires_after(timeout_);
    auto [ec, replies] = co_await conn->round_trip(wire, commands.size());
    if (ec) {
        // A timed-out or broken connection may still have replies in flight: drop it.
        conn.reset();
        release(nullptr);
        co_return std::tuple{ec, std::move(replies)};
    }
    conn->stream.expires_never();
    release(std::move(conn));
    co_return std::tuple{error_code{}, std::move(replies)};
}

} // namespace gw::gateway
