// The upstream side of one tenant request (forward.cpp): builds Dify's request (the
// app's key, `user` namespaced), checks that the resources it names are the tenant's,
// then sends it with retries and relays the reply to the client.
#pragma once

#include "gateway/proxy/exchange.hpp"

namespace gw::gateway {

// Answers the exchange (Dify's reply relayed, or the gateway's error). Returns whether
// the client connection may be reused.
net::awaitable<bool> forward_request(exchange& x);

} // namespace gw::gateway
