#include "gateway/proxy/client_watch.hpp"

#include "gateway/proxy/exchange.hpp"
#include "gateway/upstream/pool.hpp"

namespace gw::gateway {

client_watch::client_watch(exchange& x, upstream_connection& conn)
    : state_(std::make_shared<state>(state{&x, &conn}))
{
    if (x.down_buffer.size() == 0) x.down_buffer.shrink_to_fit(); // an open stream keeps no request-sized buffer
    if (x.down_buffer.size() < max_pipelined) arm(state_);
}

client_watch::~client_watch()
{
    state_->stopped = true;
    error_code ignored;
    state_->x->down.cancel(ignored); // the queued wait completes as cancelled, doing nothing
}

void client_watch::arm(std::shared_ptr<state> s)
{
    auto& socket = s->x->down;
    socket.async_wait(net::socket_base::wait_read, [s = std::move(s)](error_code ec) mutable { on_readable(std::move(s), ec); });
}

void client_watch::on_readable(std::shared_ptr<state> s, error_code ec)
{
    if (s->stopped) return;
    exchange& x = *s->x;
    if (!ec) {
        // The session's socket is non-blocking: this read never waits.
        const std::size_t n = x.down.read_some(x.down_buffer.prepare(512), ec);
        if (!ec) {
            x.down_buffer.commit(n);
            if (x.down_buffer.size() < max_pipelined) arm(std::move(s));
            return;
        }
        if (ec == net::error::would_block || ec == net::error::try_again) {
            arm(std::move(s));
            return;
        }
    }
    // Closed, reset, or the socket cancelled by a send deadline: the client is gone.
    x.client_gone = true;
    // Closing the upstream ends the relay at once; until the task id is known the relay
    // reads on to learn it, so that the task can be stopped.
    if (x.task_known) s->conn->close();
}

} // namespace gw::gateway
