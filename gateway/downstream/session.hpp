// One client connection: the keep-alive loop that reads each request's header (within
// server.client_header_timeout_ms; idle at most server.client_idle_timeout_ms between
// requests) and hands it to serve_request. Runs on the worker that accepted it, registered
// with that worker for its whole life (the drain waits for it and wakes it while idle).
#pragma once

#include "gateway/worker.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <memory>
#include <string>
#include <string_view>

namespace gw::gateway {

// `peer` is the client's address; `client_slot` holds its place under the per-client cap
// until the connection ends.
net::awaitable<void> session(client_socket stream, worker* w, std::string peer, std::shared_ptr<void> client_slot);

// Answers a connection over the caps with a short 503 (one non-blocking send: it fits in
// the socket buffer) and closes it; logs at most once a second.
void turn_away(boost::asio::ip::tcp::socket socket, std::string_view why);

} // namespace gw::gateway
