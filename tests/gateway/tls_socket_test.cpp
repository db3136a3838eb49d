// tls_socket against the TLS dify-emulator: verification (CA, host name, IP), plain HTTP
// over it with Beast, deadlines, and the end of stream; the upstream pool's leases over it.
#include "gateway/upstream/pool.hpp"
#include "gateway/upstream/tls_socket.hpp"
#include "tests/support/emulator_fixture.hpp"
#include "tests/support/gateway_fixture.hpp"
#include "tests/support/test_certs.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <gtest/gtest.h>

#include <future>
#include <thread>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

namespace gw::gateway {
namespace {

namespace http = beast::http;
using namespace std::chrono_literals;

net::ssl::context client_context(bool trust_test_ca)
{
    net::ssl::context ctx(net::ssl::context::tls_client);
    if (trust_test_ca) {
        const auto& ca = test::pki().ca_cert_pem;
        ctx.add_certificate_authority(net::buffer(ca.data(), ca.size()));
    }
    return ctx;
}

struct connection
{
    tls_socket tls;
    net::ip::tcp::socket& tcp;
    connection(net::io_context& io, net::ssl::context& ctx, std::shared_ptr<tls_session_slot> sessions = nullptr)
        : tls(net::ip::tcp::socket(io), ctx, std::move(sessions)), tcp(tls.socket())
    {
    }
};

net::awaitable<error_code> do_handshake(connection& c)
{
    auto [ec] = co_await c.tls.async_handshake(use_nothrow);
    co_return ec;
}

// Connects to the emulator and handshakes as `host`; the handshake's error.
error_code handshake(
    net::io_context& io,
    connection& c,
    const test::running_emulator& emu,
    const std::string& host,
    bool verify
)
{
    c.tcp.connect(emu.endpoint());
    if (!c.tls.set_peer(host, verify)) return net::error::invalid_argument;
    auto f = net::co_spawn(io, do_handshake(c), net::use_future);
    io.run();
    io.restart();
    return f.get();
}

TEST(TlsSocket, VerifiesTheChainAndTheHostNameOrAddress)
{
    test::running_emulator emu;
    net::io_context io;
    auto trusted = client_context(true);
    auto untrusted = client_context(false);
    {
        connection c(io, trusted);
        EXPECT_FALSE(handshake(io, c, emu, "localhost", true)) << "DNS name in the SAN";
    }
    {
        connection c(io, trusted);
        EXPECT_FALSE(handshake(io, c, emu, "127.0.0.1", true)) << "IP address in the SAN";
    }
    {
        connection c(io, trusted);
        auto ec = handshake(io, c, emu, "dify.example.com", true);
        EXPECT_TRUE(ec) << "a name the certificate does not carry";
        EXPECT_EQ(ec.category(), net::error::get_ssl_category());
    }
    {
        connection c(io, untrusted);
        auto ec = handshake(io, c, emu, "localhost", true);
        EXPECT_TRUE(ec) << "a CA the client does not trust";
    }
    {
        connection c(io, untrusted);
        EXPECT_FALSE(handshake(io, c, emu, "localhost", false)) << "verify_tls: false";
    }
}

// GET /v1/parameters with the chat app's key.
http::request<http::string_body> parameters_request()
{
    http::request<http::string_body> req{http::verb::get, "/v1/parameters", 11};
    req.set(http::field::host, "localhost");
    req.set(http::field::authorization, "Bearer " + test::keys::chat);
    return req;
}

// GET /v1/parameters, then a read nothing answers: {status, body, the read's error}.
net::awaitable<std::tuple<int, std::string, error_code>> request_then_wait(connection& c)
{
    auto req = parameters_request();
    auto [wec, wn] = co_await http::async_write(c.tls, req, use_nothrow);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    auto [rec, rn] = co_await http::async_read(c.tls, buffer, res, use_nothrow);
    if (wec || rec) co_return std::tuple{0, std::string(), wec ? wec : rec};
    // Nothing more comes: the deadline ends the read with a timeout.
    c.tls.expires_after(50ms);
    char byte;
    auto [tec, tn] = co_await c.tls.async_read_some(net::buffer(&byte, 1), use_nothrow);
    co_return std::tuple{static_cast<int>(res.result_int()), res.body(), tec};
}

// Handshakes with a fresh TLS emulator as "localhost" (verified) and runs `step` on the connection.
template <typename T>
T on_verified_connection(net::awaitable<T> (*step)(connection&))
{
    test::running_emulator emu;
    net::io_context io;
    auto ctx = client_context(true);
    connection c(io, ctx);
    EXPECT_FALSE(handshake(io, c, emu, "localhost", true));
    auto f = net::co_spawn(io, step(c), net::use_future);
    io.run();
    return f.get();
}

TEST(TlsSocket, CarriesHttpBothWaysAndTimesOutASilentPeer)
{
    auto [status, body, timeout] = on_verified_connection(request_then_wait);
    EXPECT_EQ(status, 200);
    EXPECT_NE(body.find("user_input_form"), std::string::npos);
    EXPECT_EQ(timeout, beast::error::timeout);
}

// What the reader and the deadline mover share (either may end first).
struct moving_deadline
{
    bool read_ended = false;
    bool ended_early = false; // the read ended before the last move
};

// Moves a silent read's deadline on `moves` times, 50 ms apart, each time 1 s ahead, as an
// SSE relay does with every event.
net::awaitable<void> keep_moving_the_deadline(connection& c, int moves, std::shared_ptr<moving_deadline> state)
{
    net::steady_timer pause(c.tcp.get_executor());
    for (int i = 0; i < moves; ++i) {
        pause.expires_after(50ms);
        co_await pause.async_wait(use_nothrow);
        if (state->read_ended) state->ended_early = true;
        c.tls.expires_after(1s);
    }
}

// A read nothing answers, its deadline moved on while it waits: {the read's error, what
// the mover saw (read once the mover is done too)}.
net::awaitable<std::tuple<error_code, std::shared_ptr<moving_deadline>>> read_with_a_moving_deadline(connection& c)
{
    auto req = parameters_request();
    auto [wec, wn] = co_await http::async_write(c.tls, req, use_nothrow);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    auto [rec, rn] = co_await http::async_read(c.tls, buffer, res, use_nothrow);
    if (wec || rec) co_return std::tuple{wec ? wec : rec, std::make_shared<moving_deadline>()};
    // The first deadline (1 s) passes while the moves (25 x 50 ms) go on; only the last counts.
    c.tls.expires_after(1s);
    auto state = std::make_shared<moving_deadline>();
    net::co_spawn(c.tcp.get_executor(), keep_moving_the_deadline(c, 25, state), [](std::exception_ptr e) {
        EXPECT_FALSE(e) << "the deadline mover failed";
    });
    char byte;
    auto [tec, tn] = co_await c.tls.async_read_some(net::buffer(&byte, 1), use_nothrow);
    state->read_ended = true;
    co_return std::tuple{tec, state};
}

TEST(TlsSocket, ADeadlineMovedOnEndsTheReadOnlyWhenTheLastOnePasses)
{
    auto [ec, seen] = on_verified_connection(read_with_a_moving_deadline);
    EXPECT_EQ(ec, beast::error::timeout);
    EXPECT_FALSE(seen->ended_early) << "an earlier deadline, already moved on, ended the read";
}

// A long deadline replaced by a short one, and a deadline lifted then set again (a pooled
// connection's next request): each read ends at the deadline in force.
net::awaitable<std::tuple<error_code, error_code>> reads_with_changed_deadlines(connection& c)
{
    auto req = parameters_request();
    auto [wec, wn] = co_await http::async_write(c.tls, req, use_nothrow);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    auto [rec, rn] = co_await http::async_read(c.tls, buffer, res, use_nothrow);
    if (wec || rec) co_return std::tuple{wec ? wec : rec, error_code{}};
    char byte;
    c.tls.expires_after(std::chrono::hours(1));
    c.tls.expires_after(50ms); // earlier: the hour's wait must not be the one that counts
    auto [first, n1] = co_await c.tls.async_read_some(net::buffer(&byte, 1), use_nothrow);
    c.tls.expires_after(std::chrono::hours(1));
    c.tls.expires_never();
    c.tls.expires_after(50ms);
    auto [second, n2] = co_await c.tls.async_read_some(net::buffer(&byte, 1), use_nothrow);
    co_return std::tuple{first, second};
}

TEST(TlsSocket, AnEarlierDeadlineReplacesALaterOne)
{
    auto [first, second] = on_verified_connection(reads_with_changed_deadlines);
    EXPECT_EQ(first, beast::error::timeout);
    EXPECT_EQ(second, beast::error::timeout);
}

// A request the emulator answers by closing the connection; the next read's error.
net::awaitable<error_code> request_then_read_close(connection& c)
{
    // The emulator's "close" fault drops the connection without answering.
    auto req = parameters_request();
    req.set("X-Emulator-Fault", "close");
    auto [wec, wn] = co_await http::async_write(c.tls, req, use_nothrow);
    if (wec) co_return wec;
    std::array<char, 64> buf;
    auto [rec, rn] = co_await c.tls.async_read_some(net::buffer(buf), use_nothrow);
    co_return rec;
}

TEST(TlsSocket, APeerThatClosesReadsAsEndOfStream)
{
    EXPECT_EQ(on_verified_connection(request_then_read_close), net::error::eof);
}

// A chat whose reply repeats a 100 KB query, read one byte per read: nearly every read is
// served from what OpenSSL already decrypted, within its initiating call.
net::awaitable<std::tuple<std::size_t, error_code>> request_then_read_bytewise(connection& c)
{
    http::request<http::string_body> req{http::verb::post, "/v1/chat-messages", 11};
    req.set(http::field::host, "localhost");
    req.set(http::field::authorization, "Bearer " + test::keys::chat);
    req.set(http::field::content_type, "application/json");
    req.body() = R"({"inputs": {}, "user": "u", "query": ")" + std::string(100'000, 'w') + R"("})";
    req.keep_alive(false);
    req.prepare_payload();
    auto [wec, wn] = co_await http::async_write(c.tls, req, use_nothrow);
    if (wec) co_return std::tuple{std::size_t{0}, wec};
    std::size_t total = 0;
    for (;;) {
        char byte;
        auto [rec, rn] = co_await c.tls.async_read_some(net::buffer(&byte, 1), use_nothrow);
        if (rec) co_return std::tuple{total, rec};
        total += rn;
    }
}

TEST(TlsSocket, ReadsServedFromBufferedDataDoNotGrowTheStack)
{
    // Completing such reads inline recursed once per read, until the stack overflowed.
    auto [bytes, ec] = on_verified_connection(request_then_read_bytewise);
    EXPECT_EQ(ec, net::error::eof);
    EXPECT_GT(bytes, 100'000u);
}

// GET /v1/parameters read one byte, then the rest: {unread bytes held after the first byte,
// after the whole reply}.
net::awaitable<std::tuple<bool, bool>> request_then_read_a_byte_then_all(connection& c)
{
    auto req = parameters_request();
    auto [wec, wn] = co_await http::async_write(c.tls, req, use_nothrow);
    beast::flat_buffer buffer;
    auto [bec, bn] = co_await c.tls.async_read_some(buffer.prepare(1), use_nothrow);
    buffer.commit(bn);
    const bool held_after_byte = c.tls.holds_unread_bytes();
    http::response<http::string_body> res;
    auto [rec, rn] = co_await http::async_read(c.tls, buffer, res, use_nothrow);
    EXPECT_FALSE(wec || bec || rec);
    EXPECT_EQ(res.result_int(), 200u);
    co_return std::tuple{held_after_byte, c.tls.holds_unread_bytes()};
}

TEST(TlsSocket, BytesReadFromTheSocketButNotHandedOutAreKnown)
{
    // What OpenSSL has taken from the socket is invisible to a peek at the socket (the
    // pool's liveness check asks the TLS layer too): held while the reply is half read,
    // none once it is read whole.
    auto [held_after_byte, held_after_reply] = on_verified_connection(request_then_read_a_byte_then_all);
    EXPECT_TRUE(held_after_byte);
    EXPECT_FALSE(held_after_reply);
}

// GET /v1/parameters, then a read nothing answers, each step with an error left in the
// thread's OpenSSL error queue: {status, the request's error, the waiting read's error}.
net::awaitable<std::tuple<int, error_code, error_code>> request_and_wait_after_stale_errors(connection& c)
{
    auto req = parameters_request();
    ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH); // another OpenSSL user's leftover on this thread
    auto [wec, wn] = co_await http::async_write(c.tls, req, use_nothrow);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH);
    auto [rec, rn] = co_await http::async_read(c.tls, buffer, res, use_nothrow);
    // Nothing more comes: the read finds nothing and waits, until its deadline.
    ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH);
    c.tls.expires_after(50ms);
    char byte;
    auto [tec, tn] = co_await c.tls.async_read_some(net::buffer(&byte, 1), use_nothrow);
    co_return std::tuple{static_cast<int>(res.result_int()), wec ? wec : rec, tec};
}

TEST(TlsSocket, AnErrorLeftInTheThreadsQueueDoesNotFailTheNextReadOrWrite)
{
    // SSL_get_error consults the thread's error queue: a stale entry would turn a read
    // that has to wait into a failure, so the queue is emptied before each call.
    auto [status, ec, wait_ec] = on_verified_connection(request_and_wait_after_stale_errors);
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_EQ(status, 200);
    EXPECT_EQ(wait_ec, beast::error::timeout) << wait_ec.message();
}

// A TLS server on loopback (test PKI, TLS 1.3, no session tickets) that sends one record
// in two halves: the first at once, the second when `send_rest` is set. OpenSSL runs over
// memory BIOs so that the test decides where the record's bytes are cut.
class split_record_server
{
public:
    explicit split_record_server(std::string payload) : payload_(std::move(payload))
    {
        acceptor_.open(net::ip::tcp::v4());
        acceptor_.bind({net::ip::make_address("127.0.0.1"), 0});
        acceptor_.listen();
        thread_ = std::thread([this] { serve(); });
    }
    ~split_record_server()
    {
        send_rest();
        thread_.join();
    }
    net::ip::tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }
    void send_rest()
    {
        if (!rest_sent_) send_rest_.set_value();
        rest_sent_ = true;
    }

private:
    void serve()
    {
        auto peer = acceptor_.accept();
        SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
        SSL_CTX_set_num_tickets(ctx, 0);
        const auto& pki = test::pki();
        BIO* cert_bio = BIO_new_mem_buf(pki.server_cert_pem.data(), static_cast<int>(pki.server_cert_pem.size()));
        BIO* key_bio = BIO_new_mem_buf(pki.server_key_pem.data(), static_cast<int>(pki.server_key_pem.size()));
        X509* cert = PEM_read_bio_X509(cert_bio, nullptr, nullptr, nullptr);
        EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio, nullptr, nullptr, nullptr);
        SSL_CTX_use_certificate(ctx, cert);
        SSL_CTX_use_PrivateKey(ctx, key);
        SSL* ssl = SSL_new(ctx);
        BIO* in = BIO_new(BIO_s_mem());
        BIO* out = BIO_new(BIO_s_mem());
        SSL_set_bio(ssl, in, out); // owned by ssl now
        SSL_set_accept_state(ssl);
        auto flush = [&] {
            std::string bytes;
            char buf[4096];
            for (int n; (n = BIO_read(out, buf, sizeof buf)) > 0;) bytes.append(buf, static_cast<std::size_t>(n));
            return bytes;
        };
        error_code ec;
        for (int r; (r = SSL_do_handshake(ssl)) != 1 && SSL_get_error(ssl, r) == SSL_ERROR_WANT_READ && !ec;) {
            net::write(peer, net::buffer(flush()), ec);
            char buf[4096];
            const std::size_t n = peer.read_some(net::buffer(buf), ec);
            BIO_write(in, buf, static_cast<int>(n));
        }
        net::write(peer, net::buffer(flush()), ec);
        SSL_write(ssl, payload_.data(), static_cast<int>(payload_.size()));
        const std::string record = flush();
        net::write(peer, net::buffer(record.data(), record.size() / 2), ec);
        send_rest_.get_future().wait();
        net::write(peer, net::buffer(record.data() + record.size() / 2, record.size() - record.size() / 2), ec);
        char byte;
        peer.read_some(net::buffer(&byte, 1), ec); // until the client closes
        SSL_free(ssl);
        SSL_CTX_free(ctx);
        X509_free(cert);
        EVP_PKEY_free(key);
        BIO_free(cert_bio);
        BIO_free(key_bio);
    }

    std::string payload_;
    net::io_context io_;
    net::ip::tcp::acceptor acceptor_{io_};
    std::promise<void> send_rest_;
    bool rest_sent_ = false;
    std::thread thread_;
};

// Half a record has come: {read_now's error then, the wait's error within 100 ms, the
// payload read once the rest has come}.
net::awaitable<std::tuple<error_code, error_code, std::string>> read_a_split_record(connection& c, split_record_server& server)
{
    c.tls.expires_after(10s);
    auto [first] = co_await c.tls.async_wait_readable(use_nothrow); // the first half came
    std::array<char, 256> buf;
    error_code half;
    for (std::size_t n = 0; !first && !half && n == 0;) n = c.tls.read_now(buf.data(), buf.size(), half);
    // OpenSSL holds part of a record: nothing to read until the rest comes.
    c.tls.expires_after(100ms);
    auto [waited] = co_await c.tls.async_wait_readable(use_nothrow);
    server.send_rest();
    c.tls.expires_after(10s);
    std::string payload;
    while (payload.size() < 11) {
        error_code ec;
        const std::size_t n = c.tls.read_now(buf.data(), buf.size(), ec);
        payload.append(buf.data(), n);
        if (ec == net::error::would_block) std::tie(ec) = co_await c.tls.async_wait_readable(use_nothrow);
        if (ec) break;
    }
    co_return std::tuple{half, waited, payload};
}

TEST(TlsSocket, AWaitForReadableBytesOutlastsARecordCutInTwo)
{
    // A record larger than a TCP segment arrives in parts: the wait after the first part
    // must wait for the socket (here: until its deadline), not complete at once because
    // OpenSSL holds the part. Completing at once made an SSE relay spin on the worker and
    // keep moving its idle deadline.
    split_record_server server("hello world");
    net::io_context io;
    auto ctx = client_context(true);
    connection c(io, ctx);
    c.tcp.connect(server.endpoint());
    ASSERT_TRUE(c.tls.set_peer("localhost", true));
    auto hs = net::co_spawn(io, do_handshake(c), net::use_future);
    io.run();
    io.restart();
    ASSERT_FALSE(hs.get());
    auto f = net::co_spawn(io, read_a_split_record(c, server), net::use_future);
    while (f.wait_for(0s) != std::future_status::ready) io.run_one(); // not until the last deadline's timer ends
    auto [half, waited, payload] = f.get();
    EXPECT_EQ(half, net::error::would_block);
    EXPECT_EQ(waited, beast::error::timeout);
    EXPECT_EQ(payload, "hello world");
    c.tcp.close();
}

TEST(TlsSocket, LaterConnectionsResumeTheSessionTheServerIssued)
{
    test::running_emulator emu;
    net::io_context io;
    auto ctx = client_context(true);
    enable_session_resumption(ctx);
    auto sessions = std::make_shared<tls_session_slot>();
    {
        connection first(io, ctx, sessions);
        ASSERT_FALSE(handshake(io, first, emu, "localhost", true));
        EXPECT_FALSE(first.tls.resumed());
        // TLS 1.3 tickets come after the handshake, with the first records read.
        auto f = net::co_spawn(io, request_then_wait(first), net::use_future);
        io.run();
        io.restart();
        EXPECT_EQ(std::get<0>(f.get()), 200);
    }
    ASSERT_NE(sessions->get(), nullptr) << "the server's ticket was kept";
    connection second(io, ctx, sessions);
    ASSERT_FALSE(handshake(io, second, emu, "localhost", true));
    EXPECT_TRUE(second.tls.resumed());
}

// An upstream's settings for a pool over `emu` (TLS, verified with the test CA).
config::upstream_config emulator_upstream(const test::running_emulator& emu)
{
    config::upstream_config cfg;
    cfg.url = "https://localhost:" + std::to_string(emu.endpoint().port());
    cfg.host = "localhost";
    cfg.port = emu.endpoint().port();
    cfg.ca_file = test::test_ca_file();
    return cfg;
}

net::awaitable<void> borrow_then_fail(upstream_pool& pool)
{
    auto [ec, lease] = co_await pool.acquire(std::chrono::steady_clock::now() + 5s);
    if (!ec) throw std::runtime_error("an error between acquire and give_back");
}

net::awaitable<bool> borrow(upstream_pool& pool)
{
    auto [ec, lease] = co_await pool.acquire(std::chrono::steady_clock::now() + 2s);
    co_return !ec;
}

// A pool of one connection: a lease ended by an exception gives its connection back (the
// pool's capacity is not lost), so the next caller gets one at once.
TEST(UpstreamPool, ALeaseEndedByAnExceptionGivesItsConnectionBack)
{
    test::running_emulator emu;
    net::io_context io;
    auto cfg = emulator_upstream(emu);
    cfg.max_connections = 1;
    auto pool = std::make_shared<upstream_pool>(io.get_executor(), cfg, make_upstream_tls(cfg));
    auto failed = net::co_spawn(io, borrow_then_fail(*pool), net::use_future);
    while (failed.wait_for(0s) != std::future_status::ready) io.run_one();
    EXPECT_THROW(failed.get(), std::runtime_error);
    EXPECT_EQ(pool->open(), 0) << "the connection was closed and its place freed";
    auto next = net::co_spawn(io, borrow(*pool), net::use_future);
    while (next.wait_for(0s) != std::future_status::ready) io.run_one();
    EXPECT_TRUE(next.get()) << "not a timeout waiting for a connection that leaked";
    pool->stop();
}

net::awaitable<upstream_pool::lease> lease_one(upstream_pool& pool)
{
    auto [ec, lease] = co_await pool.acquire(std::chrono::steady_clock::now() + 10s);
    if (ec) throw std::runtime_error("acquire: " + ec.message());
    co_return std::move(lease);
}

// A pool with preconnect over an emulator (each new connection held `connect_delay` before
// its handshake, as a distant Dify's), driven by the test thread's io_context.
struct preconnecting_pool
{
    test::running_emulator emu;
    net::io_context io;
    std::shared_ptr<upstream_pool> pool;

    preconnecting_pool(int max_connections, double ratio, std::chrono::milliseconds connect_delay,
                       int max_connecting = config::upstream_config{}.max_connecting)
        : emu({}, true, emulator::builtin_apps(), 0, connect_delay)
    {
        auto cfg = emulator_upstream(emu);
        cfg.max_connections = max_connections;
        cfg.preconnect_ratio = ratio;
        cfg.max_connecting = max_connecting;
        pool = std::make_shared<upstream_pool>(io.get_executor(), cfg, make_upstream_tls(cfg));
    }
    std::future<upstream_pool::lease> start_lease() { return net::co_spawn(io, lease_one(*pool), net::use_future); }
    upstream_pool::lease wait_for(std::future<upstream_pool::lease>& f)
    {
        while (f.wait_for(0s) != std::future_status::ready) io.run_one_for(10ms);
        return f.get();
    }
    upstream_pool::lease lease()
    {
        auto f = start_lease();
        return wait_for(f);
    }
    // Stops and drops the pool (as a reload does) and runs until the tasks it started let
    // it go (bounded: 10 s); false if they never do.
    bool stop_and_release()
    {
        std::weak_ptr<upstream_pool> watch = pool;
        pool->stop();
        pool.reset();
        for (int i = 0; i < 1000 && !watch.expired(); ++i) io.run_one_for(10ms);
        return watch.expired();
    }

    // Starts n leases at once and runs until every one is ready; the most connections that
    // were under way at once.
    int run_burst(int n, std::vector<std::future<upstream_pool::lease>>& pending)
    {
        for (int i = 0; i < n; ++i) pending.push_back(start_lease());
        int most = 0;
        auto all_ready = [&] {
            return std::all_of(pending.begin(), pending.end(), [](auto& f) { return f.wait_for(0s) == std::future_status::ready; });
        };
        while (!all_ready()) {
            io.run_one_for(10ms);
            most = std::max(most, pool->connecting());
        }
        return most;
    }
};

// A burst of requests opens at most max_connecting connections at once (each handshake holds
// OpenSSL's buffers); the others wait, and each gets a connection of its own as they finish.
TEST(UpstreamPool, ABurstOpensAtMostMaxConnectingConnectionsAtOnce)
{
    preconnecting_pool p(8, 1.0, 50ms, 2);
    std::vector<std::future<upstream_pool::lease>> pending;
    const int most = p.run_burst(6, pending);
    EXPECT_EQ(most, 2) << "never more than max_connecting under way";
    std::vector<upstream_pool::lease> leases;
    for (auto& f : pending) leases.push_back(f.get()); // each a connection (an error would throw)
    EXPECT_EQ(p.pool->connect_attempts, 6u);
    EXPECT_EQ(p.pool->connecting_limit_waits, 4u) << "each request held back is counted once, however often it waited";
    EXPECT_EQ(p.pool->open(), 6);
    EXPECT_EQ(p.pool->connecting(), 0);
    for (auto& l : leases) l.give_back(false);
    EXPECT_TRUE(p.stop_and_release());
}

// With the default max_connecting, a burst of new streams to a Dify whose connection set-up
// is slow opens all its connections at once: the rate of new connections is not held to a
// few set-ups at a time (32 per 200 ms would be 160 a second per worker).
TEST(UpstreamPool, ABurstWithinTheDefaultMaxConnectingOpensEveryConnectionAtOnce)
{
    preconnecting_pool p(200, 1.0, 200ms);
    std::vector<std::future<upstream_pool::lease>> pending;
    const int most = p.run_burst(100, pending);
    EXPECT_EQ(most, 100) << "every set-up under way at once";
    EXPECT_EQ(p.pool->connecting_limit_waits, 0u);
    std::vector<upstream_pool::lease> leases;
    for (auto& f : pending) leases.push_back(f.get());
    for (auto& l : leases) l.give_back(false);
    EXPECT_TRUE(p.stop_and_release());
}

// A request that finds no idle connection while one is being opened ahead waits for it (its
// handshake started earlier) instead of opening another.
TEST(UpstreamPool, ARequestTakesAConnectionAlreadyBeingOpenedAhead)
{
    preconnecting_pool p(4, 2.0, 200ms);
    auto a = p.lease();
    ASSERT_EQ(p.pool->open(), 2) << "one leased, one being opened ahead";
    auto b = p.lease();
    EXPECT_TRUE(b.reused()) << "the connection opened ahead, not one of its own";
    EXPECT_EQ(p.pool->connect_attempts, 1u) << "only the first request waited for a connection it started";
    EXPECT_GE(p.pool->preconnects_total(), 1u) << "(its claim asked for more: they may be ready too)";
    a.give_back(false);
    b.give_back(false);
    EXPECT_TRUE(p.stop_and_release());
}

// A slot freed by a closed connection goes to the request waiting for a slot, not to one
// waiting for a connection being opened ahead (that one is still coming).
TEST(UpstreamPool, AFreedSlotGoesToTheRequestWaitingForOneNotToAClaimant)
{
    preconnecting_pool p(3, 2.0, 200ms);
    auto a = p.lease();             // one opened ahead now
    auto fb = p.start_lease();      // claims it; the pool opens another: full
    auto fc = p.start_lease();      // claims that one
    auto fs = p.start_lease();      // nothing left to claim: waits for a slot
    for (int i = 0; i < 10; ++i) p.io.poll();
    ASSERT_EQ(p.pool->open(), 3);
    ASSERT_EQ(p.pool->connect_attempts, 1u);
    a.give_back(false); // closed: a slot is free
    auto s = p.wait_for(fs);
    EXPECT_FALSE(s.reused()) << "it connected in the freed slot";
    EXPECT_EQ(p.pool->connect_attempts, 2u);
    auto b = p.wait_for(fb), c = p.wait_for(fc);
    EXPECT_TRUE(b.reused() && c.reused()) << "the claimants got the connections opened ahead";
    b.give_back(false);
    c.give_back(false);
    s.give_back(false);
    EXPECT_TRUE(p.stop_and_release());
}

// A reload drops a pool whose connections are still being opened ahead of demand: the pool
// lives until they end (under ASan, using it after it was freed is reported).
TEST(UpstreamPool, APoolDroppedWhileItOpensConnectionsAheadLivesUntilTheyEnd)
{
    preconnecting_pool p(4, 2.0, 200ms);
    auto lease = p.lease();
    EXPECT_EQ(p.pool->open(), 2) << "one leased, one being opened ahead";
    lease.give_back(false);
    std::weak_ptr<upstream_pool> watch = p.pool;
    p.pool->stop();
    p.pool.reset();
    EXPECT_FALSE(watch.expired()) << "the connection being opened ahead holds the pool";
    for (int i = 0; i < 1000 && !watch.expired(); ++i) p.io.run_one_for(10ms);
    EXPECT_TRUE(watch.expired()) << "and lets it go once it ended";
}

// While a request waits for a free slot, a slot freed is the request's: no connection is
// opened ahead of demand with it.
TEST(UpstreamPool, ASlotFreedWhileARequestWaitsIsTheRequests)
{
    preconnecting_pool p(2, 2.0, 0ms);
    auto a = p.lease();
    auto b = p.lease(); // the one opened ahead, or one of its own
    ASSERT_EQ(p.pool->open(), 2);
    auto f3 = p.start_lease();
    for (int i = 0; i < 10; ++i) p.io.poll(); // the third request waits: the pool is full
    ASSERT_NE(f3.wait_for(0s), std::future_status::ready);
    const auto preconnects = p.pool->preconnects_total(), waits = p.pool->connect_attempts;
    a.give_back(false); // closed: its slot is free
    auto c = p.wait_for(f3);
    EXPECT_FALSE(c.reused()) << "the waiting request connected in the freed slot";
    EXPECT_EQ(p.pool->connect_attempts, waits + 1);
    EXPECT_EQ(p.pool->preconnects_total(), preconnects) << "no connection was opened ahead with the waiter's slot";
    EXPECT_LE(p.pool->open(), 2);
    b.give_back(false);
    c.give_back(false);
    EXPECT_TRUE(p.stop_and_release());
}

// A resolver scripted by a test: the first `answers` lookups find `address` at once; the
// others fail after `delay` (a resolver that is down, and slow to say so).
struct scripted_resolver
{
    net::ip::tcp::endpoint address;
    int answers = 1;
    std::chrono::milliseconds delay{0};
    int calls = 0;
    int ended = 0;
};

net::awaitable<std::tuple<error_code, std::vector<net::ip::tcp::endpoint>>> scripted_lookup(scripted_resolver* r, net::any_io_executor ex)
{
    if (++r->calls <= r->answers) {
        ++r->ended;
        co_return std::tuple{error_code{}, std::vector<net::ip::tcp::endpoint>{r->address}};
    }
    net::steady_timer slow(ex, r->delay);
    co_await slow.async_wait(use_nothrow);
    ++r->ended;
    co_return std::tuple{error_code(net::error::host_not_found), std::vector<net::ip::tcp::endpoint>{}};
}

void use_resolver(upstream_pool& pool, scripted_resolver& r, std::chrono::nanoseconds ttl)
{
    pool.set_address_lookup([&r](net::any_io_executor ex, std::string, std::string) { return scripted_lookup(&r, ex); }, ttl);
}

// Once addresses are known, a resolver that is slow or down holds up no new connection: the
// addresses found before serve while one lookup runs in the background, and stay when it fails.
TEST(UpstreamPool, AResolverThatFailsAfterTheFirstLookupLeavesNewConnectionsToTheAddressesFoundBefore)
{
    preconnecting_pool p(8, 1.0, 0ms);
    scripted_resolver r{{net::ip::make_address("127.0.0.1"), p.emu.endpoint().port()}, 1, 300ms};
    use_resolver(*p.pool, r, 0ns); // every address is stale at once: each new connection wants a lookup
    auto first = p.lease();
    auto second = p.lease(); // a new connection (the first is held) while the failing lookup runs
    auto third = p.lease();
    EXPECT_EQ(r.calls, 2) << "one lookup at a time, shared";
    EXPECT_EQ(r.ended, 1) << "the second and third did not wait for it";
    EXPECT_EQ(p.pool->address_lookups_total(), 2u);
    while (r.ended < 2) p.io.run_one_for(10ms);
    auto fourth = p.lease(); // the lookup failed: the old address, and no new lookup within a second
    EXPECT_EQ(r.calls, 2);
    EXPECT_EQ(p.pool->open(), 4);
    for (auto* l : {&first, &second, &third, &fourth}) l->give_back(false);
    EXPECT_TRUE(p.stop_and_release());
}

net::awaitable<error_code> acquire_error(upstream_pool& pool)
{
    auto [ec, lease] = co_await pool.acquire(std::chrono::steady_clock::now() + 10s);
    co_return ec;
}

// With no address yet, requests wait for the one lookup, but no longer than their connect
// timeout: a hung resolver fails them in time instead of holding them.
TEST(UpstreamPool, AFirstLookupThatHangsEndsTheRequestsWaitingForItAtTheirConnectTimeout)
{
    test::running_emulator emu;
    net::io_context io;
    auto cfg = emulator_upstream(emu);
    cfg.connect_timeout_ms = 100ms;
    auto pool = std::make_shared<upstream_pool>(io.get_executor(), cfg, make_upstream_tls(cfg));
    scripted_resolver r{{}, 0, 1000ms};
    use_resolver(*pool, r, 30s);
    auto a = net::co_spawn(io, acquire_error(*pool), net::use_future);
    auto b = net::co_spawn(io, acquire_error(*pool), net::use_future);
    while (a.wait_for(0s) != std::future_status::ready || b.wait_for(0s) != std::future_status::ready) io.run_one_for(10ms);
    EXPECT_EQ(a.get(), beast::error::timeout);
    EXPECT_EQ(b.get(), beast::error::timeout);
    EXPECT_EQ(r.calls, 1) << "both waited for the same lookup";
    EXPECT_EQ(r.ended, 0) << "and neither for its end";
    std::weak_ptr<upstream_pool> watch = pool;
    pool->stop();
    pool.reset();
    while (!watch.expired()) io.run_one_for(10ms); // the lookup holds the pool until it ends
    EXPECT_EQ(r.ended, 1);
}

} // namespace
} // namespace gw::gateway
