#include "gateway/emulator/server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <cstdio>
#include <iostream>
#include <utility>

namespace gw::emulator {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

namespace {

constexpr auto use_nothrow = net::as_tuple(net::use_awaitable);
constexpr std::size_t max_request_body = 128 * 1024 * 1024;

std::string status_line(int status)
{
    auto reason = http::obsolete_reason(static_cast<http::status>(status));
    return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
}

std::string common_headers(bool keep_alive)
{
    return std::string("X-Version: ") + std::string(dify_version) + "\r\nX-Env: PRODUCTION\r\nConnection: " +
           (keep_alive ? "keep-alive" : "close") + "\r\n";
}

// The whole wire form of a non-streaming reply.
std::string serialize(const reply& r, bool keep_alive)
{
    std::string out = status_line(r.status);
    if (!r.content_type.empty()) out += "Content-Type: " + r.content_type + "\r\n";
    for (const auto& [k, v] : r.headers) out += k + ": " + v + "\r\n";
    out += common_headers(keep_alive);
    if (r.status != 204 && r.status != 304) out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
    out += "\r\n";
    out += r.body;
    return out;
}

std::string chunk(std::string_view data)
{
    char size[20];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    return std::string(size) + std::string(data) + "\r\n";
}

request to_request(http::request<http::string_body>&& m)
{
    request r;
    r.method = std::string(m.method_string());
    std::string_view target = m.target();
    auto q = target.find('?');
    r.path = std::string(target.substr(0, q));
    if (q != std::string_view::npos) r.query = std::string(target.substr(q + 1));
    for (const auto& f : m) r.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    r.body = std::move(m.body());
    return r;
}

net::awaitable<void> sleep_for(net::steady_timer& timer, std::chrono::milliseconds d)
{
    timer.expires_after(d);
    co_await timer.async_wait(use_nothrow);
}

void reset_connection(beast::tcp_stream& tcp)
{
    beast::error_code ignored;
    tcp.socket().set_option(net::socket_base::linger(true, 0), ignored);
    tcp.socket().close(ignored);
}

// One connection: the stream (plain or TLS) plus what every step needs.
template <class Stream>
class connection
{
public:
    connection(Stream& stream, beast::tcp_stream& tcp, service& svc, server::activity& activity)
        : stream_(stream), tcp_(tcp), svc_(svc), activity_(activity), timer_(tcp.get_executor())
    {
    }

    // Serves requests until the peer leaves, an error occurs or keep-alive ends.
    net::awaitable<void> run()
    {
        beast::flat_buffer buffer;
        for (;;) {
            http::request_parser<http::string_body> parser; // a new parser per message
            parser.header_limit(64 * 1024);
            parser.body_limit(max_request_body);
            tcp_.expires_after(75s);
            auto [ec, n] = co_await http::async_read(stream_, buffer, parser, use_nothrow);
            if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::eof) co_return;
            if (ec) {
                if (ec.category() == http::make_error_code(http::error::bad_target).category()) {
                    int status = ec == http::error::body_limit ? 413 : ec == http::error::header_limit ? 431 : 400;
                    reply r;
                    r.status = status;
                    r.content_type = "text/plain";
                    r.body = std::string(http::obsolete_reason(static_cast<http::status>(status))) + "\n";
                    co_await write(serialize(r, false), 0);
                }
                co_return;
            }
            tcp_.expires_never();
            bool keep_alive = parser.get().keep_alive() && !activity_.draining;
            struct replying // counted until this reply is written, however it ends
            {
                server::activity& a;
                explicit replying(server::activity& act) : a(act) { ++a.replying; }
                ~replying() { a.reply_done(); }
            } counted(activity_);
            auto d = svc_.handle(to_request(parser.release()));
            if (!co_await respond(d, keep_alive) || !keep_alive) co_return;
        }
    }

private:
    // Writes bytes, 8 at a time `trickle_ms` apart when trickling. False when the peer is gone.
    net::awaitable<bool> write(std::string_view data, int trickle_ms)
    {
        if (trickle_ms <= 0) {
            auto [ec, n] = co_await net::async_write(stream_, net::buffer(data), use_nothrow);
            co_return !ec;
        }
        for (std::size_t i = 0; i < data.size(); i += 8) {
            auto [ec, n] = co_await net::async_write(stream_, net::buffer(data.substr(i, 8)), use_nothrow);
            if (ec) co_return false;
            co_await sleep_for(timer_, std::chrono::milliseconds(trickle_ms));
        }
        co_return true;
    }

    // Sends one reply, applying its fault. False when the connection must not be reused.
    net::awaitable<bool> respond(dispatch& d, bool keep_alive)
    {
        const auto& f = d.fault;
        if (f.close) co_return false;
        if (f.reset_after == 0) {
            reset_connection(tcp_);
            co_return false;
        }
        if (f.stall_ms > 0 && !f.after) co_await sleep_for(timer_, std::chrono::milliseconds(f.stall_ms));
        if (d.rep.delay.count() > 0) co_await sleep_for(timer_, d.rep.delay);
        if (!d.rep.stream) co_return co_await write(serialize(d.rep, keep_alive), f.trickle_ms);
        co_return co_await relay_stream(d, keep_alive);
    }

    // Waits the token delay, sending pings whenever `ping_interval` passed without a frame;
    // returns early when the stream is stopped.
    net::awaitable<bool> wait_between_frames(event_stream& s, int trickle_ms)
    {
        auto delay = svc_.options().token_delay;
        auto ping = svc_.options().ping_interval;
        auto deadline = std::chrono::steady_clock::now() + delay;
        while (!s.stop_requested()) {
            auto now = std::chrono::steady_clock::now();
            if (now >= deadline) break;
            auto next_ping = last_frame_ + ping;
            timer_.expires_at(std::min(deadline, next_ping));
            s.on_wake = [this] { timer_.cancel(); };
            co_await timer_.async_wait(use_nothrow);
            s.on_wake = nullptr;
            now = std::chrono::steady_clock::now();
            if (now >= next_ping && now < deadline && !s.stop_requested()) {
                if (!co_await write(chunk(sse_ping_frame), trickle_ms)) co_return false;
                last_frame_ = now;
            }
        }
        co_return true;
    }

    net::awaitable<bool> relay_stream(dispatch& d, bool keep_alive)
    {
        const auto& f = d.fault;
        auto& s = *d.rep.stream;
        std::string head = status_line(200) + "Content-Type: " + d.rep.content_type + "\r\n" + common_headers(keep_alive) +
                           "Transfer-Encoding: chunked\r\n\r\n";
        if (!co_await write(head, f.trickle_ms)) co_return false;
        last_frame_ = std::chrono::steady_clock::now();
        if (s.initial_ping() && !co_await write(chunk(sse_ping_frame), f.trickle_ms)) co_return false;
        int sent = 0;
        const int at = f.after.value_or(1);
        for (;;) {
            if (s.finished()) break;
            if (svc_.options().token_delay.count() > 0 && sent > 0 && !co_await wait_between_frames(s, f.trickle_ms))
                co_return false;
            if (f.stall_ms > 0 && f.after && sent == *f.after) co_await sleep_for(timer_, std::chrono::milliseconds(f.stall_ms));
            if (f.malformed_sse && sent == at && !co_await write(chunk("data: {\"event\": \"message\", \"answer\": broken\n\n"), f.trickle_ms))
                co_return false;
            if (f.error_event && sent == at) {
                std::string error = "data: {\"event\":\"error\",\"message_id\":\"\",\"code\":\"completion_request_error\","
                                    "\"status\":400,\"message\":\"[emulator] injected model error\"}\n\n";
                if (!co_await write(chunk(error), f.trickle_ms)) co_return false;
                break;
            }
            auto frame = s.next();
            if (!frame) break;
            if (!co_await write(chunk(*frame), f.trickle_ms)) co_return false;
            last_frame_ = std::chrono::steady_clock::now();
            ++sent;
            if (f.reset_after && sent == *f.reset_after) {
                reset_connection(tcp_);
                co_return false;
            }
        }
        co_return co_await write("0\r\n\r\n", f.trickle_ms);
    }

    Stream& stream_;
    beast::tcp_stream& tcp_;
    service& svc_;
    server::activity& activity_;
    net::steady_timer timer_;
    std::chrono::steady_clock::time_point last_frame_{};
};

// A new connection's setup as a distant server's: nothing is read for `delay`.
net::awaitable<void> setup_delay(tcp::socket& socket, std::chrono::milliseconds delay)
{
    if (delay.count() <= 0) co_return;
    net::steady_timer timer(socket.get_executor());
    co_await sleep_for(timer, delay);
}

net::awaitable<void> plain_session(tcp::socket socket, service* svc, std::shared_ptr<server::activity> activity,
                                   std::chrono::milliseconds delay)
{
    co_await setup_delay(socket, delay);
    beast::tcp_stream stream(std::move(socket));
    connection<beast::tcp_stream> conn(stream, stream, *svc, *activity);
    co_await conn.run();
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

net::awaitable<void> tls_session(tcp::socket socket, service* svc, std::shared_ptr<ssl::context> ctx,
                                 std::shared_ptr<server::activity> activity, std::chrono::milliseconds delay)
{
    co_await setup_delay(socket, delay); // the client's hello waits: the handshake ends `delay` later
    ssl::stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *ctx);
    auto& tcp = beast::get_lowest_layer(stream);
    tcp.expires_after(10s);
    auto [ec] = co_await stream.async_handshake(ssl::stream_base::server, use_nothrow);
    if (ec) co_return;
    svc->tls_handshake(::SSL_get_version(stream.native_handle()), ::SSL_session_reused(stream.native_handle()) == 1);
    connection<ssl::stream<beast::tcp_stream>> conn(stream, tcp, *svc, *activity);
    co_await conn.run();
    if (!tcp.socket().is_open()) co_return;
    tcp.expires_after(2s);
    co_await stream.async_shutdown(use_nothrow);
}

// A session that ends by an unexpected error is reported; the emulator goes on serving.
void session_ended(std::exception_ptr e)
{
    if (!e) return;
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& ex) {
        std::cerr << "dify-emulator: a session ended by an unexpected error: " << ex.what() << "\n";
    } catch (...) {
        std::cerr << "dify-emulator: a session ended by an unexpected error\n";
    }
}

net::awaitable<void> accept_loop(tcp::acceptor& acceptor, service* svc, std::shared_ptr<ssl::context> tls,
                                 std::shared_ptr<server::activity> activity, std::chrono::milliseconds connect_delay)
{
    net::steady_timer backoff(acceptor.get_executor());
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(use_nothrow);
        if (ec == net::error::operation_aborted || !acceptor.is_open()) co_return;
        if (ec) {
            std::cerr << "dify-emulator: accept failed: " << ec.message() << "\n";
            co_await sleep_for(backoff, 100ms); // e.g. EMFILE: do not spin
            continue;
        }
        beast::error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        svc->connection_accepted();
        auto ex = acceptor.get_executor();
        if (tls)
            net::co_spawn(ex, tls_session(std::move(socket), svc, tls, activity, connect_delay), session_ended);
        else
            net::co_spawn(ex, plain_session(std::move(socket), svc, activity, connect_delay), session_ended);
    }
}

} // namespace

server::server(net::io_context& io, service& svc, server_options opts) : io_(io), svc_(svc), opts_(std::move(opts)), acceptor_(io)
{
    tcp::endpoint ep(net::ip::make_address(opts_.host), opts_.port);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen(net::socket_base::max_listen_connections);
}

void server::start()
{
    net::co_spawn(io_, accept_loop(acceptor_, &svc_, opts_.tls, activity_, opts_.connect_delay), [](std::exception_ptr e) {
        if (e) std::cerr << "dify-emulator: accept loop ended with an exception\n";
    });
}

void server::stop()
{
    beast::error_code ignored;
    acceptor_.close(ignored);
}

void server::drain(std::chrono::milliseconds limit, std::function<void()> quiet)
{
    stop();
    activity_->draining = true;
    activity_->on_quiet = std::move(quiet);
    drain_limit_ = std::make_unique<net::steady_timer>(io_, limit);
    drain_limit_->async_wait([a = activity_](beast::error_code ec) {
        if (ec || !a->on_quiet) return;
        std::cerr << "dify-emulator: drain limit reached with " << a->replying << " replies under way\n";
        std::exchange(a->on_quiet, nullptr)();
    });
    if (activity_->replying == 0) std::exchange(activity_->on_quiet, nullptr)();
}

void server::activity::reply_done()
{
    --replying;
    if (draining && replying == 0 && on_quiet) std::exchange(on_quiet, nullptr)();
}

std::shared_ptr<ssl::context> make_server_tls(const std::string& cert_file, const std::string& key_file)
{
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    try {
        ctx->use_certificate_chain_file(cert_file);
        ctx->use_private_key_file(key_file, ssl::context::pem);
    } catch (const std::exception& e) {
        throw std::runtime_error("cannot load TLS certificate/key (" + cert_file + ", " + key_file + "): " + e.what());
    }
    return ctx;
}

} // namespace gw::emulator
