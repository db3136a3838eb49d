// Abuse limits: every hostile request gets a defined answer at a bounded cost — slow
// headers and trickled bodies (408), connection caps per client address and per worker
// (503), request smuggling and header injection (400), oversized multipart (400) — and
// none of it reaches Dify.
#include "tests/emulator/emulator_test_util.hpp"
#include "tests/support/gateway_fixture.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <thread>

namespace gw::test {
namespace {

namespace net = boost::asio;
namespace http = boost::beast::http;

std::string status_line(const std::string& raw)
{
    return raw.substr(0, raw.find("\r\n"));
}

TEST(GatewayAbuse, SlowHeadersAndTrickledBodiesGet408)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) {
        c.server.client_header_timeout_ms = std::chrono::milliseconds(100);
        c.server.client_idle_timeout_ms = std::chrono::milliseconds(150);
    });
    auto c = gw.client();
    // Headers that never end (slow-loris): 408 once client_header_timeout_ms passes.
    auto raw = c->raw_exchange("POST /v1/chat-messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tenant_keys::alpha +
                               "\r\nX-Slow: ");
    EXPECT_EQ(status_line(raw), "HTTP/1.1 408 Request Timeout");
    EXPECT_NE(raw.find("request_timeout"), std::string::npos);
    // A body announced but only partly sent.
    raw = c->raw_exchange("POST /v1/chat-messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tenant_keys::alpha +
                          "\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"query\": ");
    EXPECT_EQ(status_line(raw), "HTTP/1.1 408 Request Timeout");
    EXPECT_NE(raw.find("The request body took too long to arrive."), std::string::npos);
    EXPECT_EQ(emu.stats().at("requests_total"), 0);
    EXPECT_EQ(get(*c, "/v1/info", tenant_keys::alpha).status, 200) << "still serving";
}

TEST(GatewayAbuse, AConnectionThatKeepsSendingOutlivesItsIdleLimitWhileASilentOneIsClosed)
{
    // The idle limit runs from the start of each wait for a request, not from the first:
    // requests 100 ms apart keep a connection with a 300 ms limit open well past 300 ms,
    // and so does a stream, while a second connection that never sends is closed meanwhile
    // (one sweep per worker keeps every connection's limit).
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) {
        c.server.client_idle_timeout_ms = std::chrono::milliseconds(300);
    });
    net::io_context io;
    net::ip::tcp::socket s(io);
    s.connect(gw.endpoint());
    net::ip::tcp::socket silent(io);
    silent.connect(gw.endpoint());
    const timeval give_up{5, 0}; // a connection the gateway never closes fails the test, not hangs it
    for (auto* socket : {&s, &silent})
        ASSERT_EQ(setsockopt(socket->native_handle(), SOL_SOCKET, SO_RCVTIMEO, &give_up, sizeof give_up), 0);
    const std::string request =
        "GET /v1/info HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tenant_keys::alpha + "\r\n\r\n";
    boost::beast::flat_buffer buffer;
    for (int i = 0; i < 8; ++i) {
        if (i > 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(100)); // the client idles, within the limit
        net::write(s, net::buffer(request));
        http::response<http::string_body> res;
        boost::beast::error_code ec;
        http::read(s, buffer, res, ec);
        ASSERT_FALSE(ec) << "request " << i << " on the same connection: " << ec.message();
        EXPECT_EQ(res.result_int(), 200);
    }
    // A stream on the same connection, and a request after it: the connection is still served.
    const std::string body = json::serialize(chat_body("a b c", "u1", "streaming"));
    const std::string stream_request =
        "POST /v1/chat-messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tenant_keys::alpha +
        "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
        body;
    for (const auto* bytes : {&stream_request, &request}) {
        net::write(s, net::buffer(*bytes));
        http::response<http::string_body> res;
        boost::beast::error_code ec;
        http::read(s, buffer, res, ec);
        ASSERT_FALSE(ec) << ec.message();
        EXPECT_EQ(res.result_int(), 200) << res.body();
    }
    // The silent connection was closed long ago; this one is once it idles past the limit
    // (the read ends at EOF).
    for (auto* socket : {&silent, &s}) {
        char byte;
        boost::beast::error_code ec;
        socket->read_some(net::buffer(&byte, 1), ec);
        EXPECT_EQ(ec, net::error::eof);
    }
}

TEST(GatewayAbuse, ConnectionsPerClientAddressAreCapped)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) { c.server.max_connections_per_client = 3; });
    net::io_context io;
    std::vector<net::ip::tcp::socket> held;
    for (int i = 0; i < 3; ++i) {
        held.emplace_back(io);
        held.back().connect(gw.endpoint());
    }
    auto c = gw.client();
    auto raw = c->raw_exchange("GET /v1/info HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tenant_keys::alpha + "\r\n\r\n");
    EXPECT_EQ(status_line(raw), "HTTP/1.1 503 Service Unavailable");
    EXPECT_NE(raw.find("\"code\":\"too_many_connections\""), std::string::npos);
    EXPECT_NE(raw.find("Too many connections from this address."), std::string::npos);
    // Once one of them closes, its place is free again (the gateway notices the close).
    held.pop_back();
    int status = 0;
    for (int attempt = 0; attempt < 500 && status != 200; ++attempt) status = get(*c, "/v1/info", tenant_keys::alpha).status;
    EXPECT_EQ(status, 200);
}

TEST(GatewayAbuse, ConnectionsPerWorkerAreCapped)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) {
        c.server.threads = 1;
        c.server.max_connections_per_worker = 2;
        c.server.max_connections_per_client = 0;
    });
    net::io_context io;
    std::vector<net::ip::tcp::socket> held;
    for (int i = 0; i < 2; ++i) {
        held.emplace_back(io);
        held.back().connect(gw.endpoint());
    }
    auto raw = gw.client()->raw_exchange("GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(status_line(raw), "HTTP/1.1 503 Service Unavailable");
    EXPECT_NE(raw.find("The gateway is at its connection limit."), std::string::npos);
}

TEST(GatewayAbuse, SmugglingAndHeaderInjectionAre400AndNeverForwarded)
{
    running_emulator emu;
    running_gateway gw(emu);
    auto c = gw.client();
    const std::string head = "POST /v1/chat-messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tenant_keys::alpha +
                             "\r\nContent-Type: application/json\r\n";
    const std::string body = R"({"query":"hi","inputs":{},"user":"u"})";
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"Content-Length and Transfer-Encoding together",
         head + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
        {"two different Content-Lengths",
         head + "Content-Length: " + std::to_string(body.size()) + "\r\nContent-Length: 3\r\n\r\n" + body},
        {"a bare CR inside a header value", head + "X-Note: a\rb\r\nContent-Length: 0\r\n\r\n"},
        {"a negative Content-Length", head + "Content-Length: -1\r\n\r\n"},
        {"an absurd Content-Length", head + "Content-Length: 99999999999999999999999\r\n\r\n"},
        {"a chunk size that overflows", head + "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nx\r\n0\r\n\r\n"},
        // A second copy of a header read once is refused however either copy is spelled.
        {"a second Content-Type in other case", head + "content-TYPE: text/plain\r\nContent-Length: 0\r\n\r\n"},
        {"a second Host in other case", head + "HOST: y\r\nContent-Length: 0\r\n\r\n"},
        {"a second Authorization in other case", head + "AUTHORIZATION: Bearer x\r\nContent-Length: 0\r\n\r\n"},
        {"two X-Request-Ids in other cases", head + "x-request-id: a\r\nX-REQUEST-ID: b\r\nContent-Length: 0\r\n\r\n"},
        {"two Expects in other cases", head + "expect: 100-continue\r\nEXPECT: 100-continue\r\nContent-Length: 0\r\n\r\n"},
    };
    for (const auto& [what, bytes] : cases) {
        auto raw = c->raw_exchange(bytes);
        auto line = status_line(raw);
        EXPECT_TRUE(line == "HTTP/1.1 400 Bad Request" || line == "HTTP/1.1 413 Payload Too Large") << what << ": " << line;
    }
    EXPECT_EQ(emu.stats().at("requests_total"), 0) << "nothing reached Dify";
    // A folded line (obs-fold) is unfolded by the parser (RFC 9112 §5.2): one line goes on.
    auto raw = c->raw_exchange(head + "X-Note: a\r\n b\r\nConnection: close\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\n\r\n" + body);
    EXPECT_EQ(status_line(raw), "HTTP/1.1 200 OK");
}

TEST(GatewayAbuse, MultipartWithTooManyPartsIs400)
{
    running_emulator emu;
    running_gateway gw(emu);
    auto c = gw.client();
    std::vector<std::tuple<std::string, std::string, std::string, std::string>> parts{{"file", "a.txt", "text/plain", "x"}};
    for (int i = 0; i < 1200; ++i) parts.emplace_back("f" + std::to_string(i), "", "", "v");
    auto r = c->request("POST", "/v1/files/upload", bearer(tenant_keys::alpha, "multipart/form-data; boundary=XX"),
                        multipart_body("XX", parts));
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.json().at("code"), "bad_request");
    EXPECT_EQ(emu.stats().at("requests_total"), 0);
}

} // namespace
} // namespace gw::test
