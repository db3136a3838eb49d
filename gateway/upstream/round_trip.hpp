// One small request and its whole response on a borrowed upstream connection (plain or
// TLS): the gateway's own calls (Dify's stop endpoint, span exports), not tenant traffic.
#pragma once

#include "gateway/upstream/pool.hpp"

#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/message.hpp>

#include <tuple>

namespace gw::gateway {

// {error, response status, whether the connection may be reused}. The connection's
// deadline (expires_at) bounds it.
net::awaitable<std::tuple<error_code, unsigned, bool>>
round_trip(upstream_connection& conn, beast::http::request<beast::http::string_body>& req);

} // namespace gw::gateway
