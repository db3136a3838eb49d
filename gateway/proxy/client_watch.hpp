// Internal to gateway/: the watch on the client's connection while an SSE stream is
// relayed. The client closing or resetting its connection is seen at once: the exchange is
// marked client_gone and, once the task id is known, the upstream connection is closed,
// which ends the relay even while Dify is silent (until then the relay reads on to learn
// the task id, so that the task can be stopped). Bytes the client sends meanwhile (a
// pipelined request) are kept in the exchange's down_buffer for the session, up to 64 KiB.
//
// A readiness callback on the client's socket, not a coroutine: an open stream keeps no
// frame for it, only the one queued wait. Executor: the exchange's (the worker's) thread.
// Lifetime: the watch ends with this object; a wait still queued then completes as
// cancelled, finds the shared state stopped and touches nothing (the exchange and the
// connection may be gone by then).
#pragma once

#include "gateway/net.hpp"

#include <memory>

namespace gw::gateway {

struct exchange;
class upstream_connection;

class client_watch
{
public:
    client_watch(exchange& x, upstream_connection& conn);
    ~client_watch();
    client_watch(const client_watch&) = delete;
    client_watch& operator=(const client_watch&) = delete;

    // Most bytes kept from the client while its stream is relayed.
    static constexpr std::size_t max_pipelined = 64 * 1024;

private:
    struct state
    {
        exchange* x;
        upstream_connection* conn;
        bool stopped = false;
    };
    static void arm(std::shared_ptr<state> s);
    static void on_readable(std::shared_ptr<state> s, error_code ec);

    std::shared_ptr<state> state_;
};

} // namespace gw::gateway
