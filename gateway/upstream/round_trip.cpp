#include "gateway/upstream/round_trip.hpp"

#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

namespace gw::gateway {

namespace http = beast::http;

namespace {

template <typename Stream>
net::awaitable<std::tuple<error_code, unsigned, bool>> exchange_on(Stream& s, beast::flat_buffer& buffer, http::request<http::string_body>& req)
{
    http::response<http::string_body> res;
    auto [wec, wn] = co_await http::async_write(s, req, use_nothrow);
    if (wec) co_return std::tuple{wec, 0u, false};
    auto [rec, rn] = co_await http::async_read(s, buffer, res, use_nothrow);
    co_return std::tuple{rec, res.result_int(), !rec && res.keep_alive()};
}

} // namespace

net::awaitable<std::tuple<error_code, unsigned, bool>> round_trip(upstream_connection& conn, http::request<http::string_body>& req)
{
    if (conn.is_tls()) co_return co_await exchange_on(conn.tls(), conn.buffer(), req);
    co_return co_await exchange_on(conn.plain(), conn.buffer(), req);
}

} // namespace gw::gateway
