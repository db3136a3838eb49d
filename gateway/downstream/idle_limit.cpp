#include "gateway/downstream/idle_limit.hpp"

#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/recycling_allocator.hpp>
#include <boost/asio/wait_traits.hpp>

namespace gw::gateway {

using steady = std::chrono::steady_clock;

// The timer on the io_context's own executor type: 48 bytes smaller than with the
// polymorphic executor, in the state and in each of its wait operations.
using connection_timer =
    net::basic_waitable_timer<steady, net::wait_traits<steady>, net::io_context::executor_type>;

struct idle_limit::state
{
    state(client_socket& s, net::io_context& context) : timer(context.get_executor()), stream(&s) {}

    // Starts a timer wait until `deadline` (one still pending is cancelled by it).
    static void arm(const std::shared_ptr<state>& self)
    {
        self->timer.expires_at(self->deadline);
        self->armed_until = self->deadline;
        ++self->pending;
        self->timer.async_wait([self](error_code ec) { fired_at(self, ec); });
    }

    // A timer wait ended: cancelled (a newer wait replaced it, or the connection is done),
    // or expired. Then the connection is cut off if it has waited its whole limit, and
    // otherwise (requests came since) waited for again, unless another wait is pending or
    // no wait for a request is under way (begin arms the timer again).
    static void fired_at(const std::shared_ptr<state>& self, error_code ec)
    {
        --self->pending;
        if (ec || !self->stream || !self->waiting) return;
        if (steady::now() >= self->deadline) {
            error_code ignored;
            self->stream->cancel(ignored);
            return;
        }
        if (self->pending == 0) arm(self);
    }

    connection_timer timer;
    client_socket* stream;            // nullptr once the idle_limit is gone
    steady::time_point deadline{};    // when the current wait must end
    steady::time_point armed_until{}; // the expiry of the newest timer wait (max: none)
    int pending = 0;                  // timer waits whose handler has not run yet
    bool waiting = false;
};

idle_limit::idle_limit(client_socket& stream, net::io_context& context)
    : state_(std::allocate_shared<state>(net::recycling_allocator<state>(), stream, context))
{
}

idle_limit::~idle_limit()
{
    state_->stream = nullptr;
    state_->timer.cancel();
}

void idle_limit::begin(steady::time_point now, std::chrono::milliseconds limit)
{
    auto& s = *state_;
    s.deadline = now + limit;
    s.waiting = true;
    // A pending wait that ends no later than this one's deadline checks it when it fires;
    // one that ends later (the limit shrank: a drain began) is replaced.
    if (s.pending == 0 || s.armed_until > s.deadline) state::arm(state_);
}

void idle_limit::end()
{
    state_->waiting = false;
}

void idle_limit::disarm()
{
    // A handler already queued (cancelled, or expired just before) still runs; it finds no
    // wait under way, and begin() arms a new wait whatever it finds pending.
    state_->timer.cancel();
    state_->armed_until = steady::time_point::max();
}

} // namespace gw::gateway
