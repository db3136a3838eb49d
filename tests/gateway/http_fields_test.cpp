// field_value and keeps_alive read a head as Beast's operator[] and keep_alive() do: the
// first field of a name in the order received, Connection's tokens by version.
#include "gateway/http_fields.hpp"

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/empty_body.hpp>

#include <gtest/gtest.h>

#include <string>

namespace gw::gateway {
namespace {

http::request<http::empty_body> parse_head(const std::string& text)
{
    http::request_parser<http::empty_body> p;
    error_code ec;
    p.put(net::buffer(text), ec);
    EXPECT_FALSE(ec) << ec.message() << " in " << text;
    return p.release();
}

TEST(HttpFields, ReadAsBeastReadsThem)
{
    const std::string heads[] = {
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nconnection: Keep-Alive, CLOSE\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection: upgrade\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection: close\r\nConnection: upgrade\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection:\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: foo, keep-alive\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: keep-alivex\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Type: a/b\r\ncontent-type: c/d\r\nX-Request-Id: r1\r\nx-request-id: r2\r\n"
        "User-Agent: u\r\nExpect: 100-continue\r\nAuthorization: Bearer k\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
        "GET / HTTP/1.1\r\nX-REQUEST-ID: upper\r\nCONTENT-TYPE: text/plain\r\n\r\n",
    };
    for (const auto& text : heads) {
        auto req = parse_head(text);
        EXPECT_EQ(keeps_alive(req), req.keep_alive()) << text;
        for (auto id : {http::field::content_type, http::field::connection, http::field::user_agent, http::field::expect,
                        http::field::authorization, http::field::host, http::field::retry_after})
            EXPECT_EQ(field_value(req, id), req[id]) << text;
        for (const char* name : {"X-Request-Id", "x-forwarded-for", "Content-Type", "X-Absent"})
            EXPECT_EQ(field_value(req, std::string_view(name)), req[name]) << text;
    }
    auto dup = parse_head(heads[10]);
    EXPECT_EQ(field_value(dup, http::field::content_type), "a/b") << "the first one received";
    EXPECT_EQ(field_value(dup, std::string_view("x-request-id")), "r1");
}

} // namespace
} // namespace gw::gateway
