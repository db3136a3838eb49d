// Serving one tenant request: authenticate, select the app, namespace `user`, forward
// to Dify over the worker's pool with the app's key, and relay the response — bodies
// piece by piece, SSE streams event by event (design §5, §6).
#pragma once

#include "gateway/worker.hpp"

#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

namespace gw::gateway {

using tenant_request = boost::beast::http::request<boost::beast::http::string_body>;

// Writes the whole response to `down`. Returns false when the downstream connection
// must not be reused (the client left, or a body could not be completed).
net::awaitable<bool> serve_request(worker& w, beast::tcp_stream& down, tenant_request& req);

// A gateway-made error response in Dify's shape, written to `down`.
net::awaitable<bool> write_gateway_error(beast::tcp_stream& down, const gateway_error& e, const std::string& request_id,
                                         bool keep_alive);

} // namespace gw::gateway
