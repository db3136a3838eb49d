// How long a client connection may wait for its next request, kept by one timer per
// connection that is not set again for each request (as nginx keeps its keep-alive
// timer): a wait that begins only notes when it must end, and the timer, when it fires,
// checks whether the connection has waited that long; if it has not (requests came in
// between), the timer waits again for the rest. Setting, cancelling and completing a
// timer for every request cost more than the rest of the wait's bookkeeping together.
//
// Contract: the connection's socket outlives this object; both run on the worker's
// io_context (its thread). When the limit passes during a wait, the socket's pending
// operations are cancelled: its read ends with operation_aborted, as when a drain wakes an
// idle connection. A timer handler still queued when this object is gone touches nothing.
// The cost is memory: the timer's state per connection (~0.25 KiB RSS per held stream).
#pragma once

#include "gateway/net.hpp"

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <memory>

namespace gw::gateway {

class idle_limit
{
public:
    idle_limit(client_socket& stream, net::io_context& context);
    ~idle_limit();
    idle_limit(const idle_limit&) = delete;
    idle_limit& operator=(const idle_limit&) = delete;

    // A wait for the next request begins at `now` and may last `limit`.
    void begin(std::chrono::steady_clock::time_point now, std::chrono::milliseconds limit);
    // The wait ended (a request came, or the read failed).
    void end();
    // Drops the timer's pending wait, for an exchange that may last long (a stream): while
    // it lasts, the connection holds no timer operation. The next begin() sets it again.
    void disarm();

private:
    struct state;
    // Shared with the timer's pending handler, which holds the timer too.
    std::shared_ptr<state> state_;
};

} // namespace gw::gateway
