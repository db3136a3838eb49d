// Namespace aliases and the completion token used on the data path (errors as values).
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>

namespace gw::gateway {

namespace net = boost::asio;
namespace beast = boost::beast;
using error_code = boost::system::error_code;

inline constexpr auto use_nothrow = net::as_tuple(net::use_awaitable);

} // namespace gw::gateway
