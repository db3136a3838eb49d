// Namespace aliases and the completion token used on the data path (errors as values).
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>

namespace gw::gateway {

namespace net = boost::asio;
namespace beast = boost::beast;
using error_code = boost::system::error_code;

inline constexpr auto use_nothrow = net::as_tuple(net::use_awaitable);

// A tenant's connection to the gateway: a plain socket in non-blocking mode (its deadlines
// are the gateway's own: client_deadline). No Beast stream wraps it: Beast's tcp_stream
// would cost each open connection a heap block and each read and write its bookkeeping.
using client_socket = net::ip::tcp::socket;

} // namespace gw::gateway
