#include "core/sse_relay.hpp"

#include <algorithm>

namespace gw::core {

namespace {

sse_action closing(bool stop_task)
{
    sse_action a;
    a.step = sse_step::close;
    a.stop_task = stop_task;
    return a;
}

sse_action error_event(std::string_view code, int status, std::string_view message)
{
    sse_action a;
    a.step = sse_step::end_with_error;
    a.stop_task = true; // Dify may still be running the task
    a.error_code = code;
    a.error_status = status;
    a.error_message = message;
    return a;
}

} // namespace

sse_relay::sse_relay(sse_relay_limits limits) : limits_(limits) {}

sse_action sse_relay::feed(std::string_view piece)
{
    std::size_t complete = 0; // where the piece's last complete event (within the limit) ends
    bool first = true;        // the first event completed began in the held tail
    bool too_large = false;   // an event past the limit: neither it nor what follows is taken
    parser_.feed(piece, [&](const sse_event& e, std::size_t end) {
        if (too_large) return;
        const std::size_t size = end - complete + (first ? tail_.size() : 0);
        first = false;
        if (size > limits_.max_event_bytes) {
            too_large = true;
            return;
        }
        facts_.observe(e);
        complete = end;
    });
    if (client_gone_) { // nobody to write to: only the task id is still wanted
        read_after_left_ += piece.size();
        if (task_known() || read_after_left_ > limits_.max_read_after_client_left) return closing(true);
        return {};
    }
    if (too_large && complete == 0) return too_large_event();
    if (complete > 0) {
        // `held` still views tail_ until written(); after an event too large, nothing is kept.
        oversized_ = too_large;
        next_tail_.assign(too_large ? std::string_view() : piece.substr(complete));
        sse_action a;
        a.step = sse_step::write;
        a.held = tail_;
        a.fresh = piece.substr(0, complete);
        return a;
    }
    tail_.append(piece);
    return after_tail_grew();
}

sse_action sse_relay::written(bool ok)
{
    tail_.swap(next_tail_);
    next_tail_.clear();
    if (!ok) {
        client_gone_ = true;
        if (task_known()) return closing(true);
        return {}; // read on until the task id, as when the client's close is seen
    }
    if (oversized_) return too_large_event(); // the events before it went out whole
    return after_tail_grew();
}

sse_action sse_relay::after_tail_grew()
{
    if (tail_.size() <= limits_.max_event_bytes) return {};
    return too_large_event();
}

sse_action sse_relay::too_large_event()
{
    if (client_gone_) return closing(true);
    return error_event("event_too_large", 502, "An upstream event was larger than the gateway relays.");
}

bool sse_relay::client_left()
{
    client_gone_ = true;
    return task_known();
}

sse_action sse_relay::upstream_failed(upstream_end why)
{
    if (client_gone_) return closing(true); // the client's leave closed the upstream, or it broke meanwhile
    switch (why) {
    case upstream_end::shutting_down: return error_event("unavailable", 503, "The gateway is shutting down.");
    case upstream_end::idle: return error_event("upstream_stream_broken", 502, "The upstream stream was idle for too long.");
    case upstream_end::broken: break;
    }
    return error_event("upstream_stream_broken", 502, "The upstream stream broke.");
}

sse_action sse_relay::upstream_ended()
{
    if (client_gone_) return closing(false); // the task ended by itself
    sse_action a;
    a.step = sse_step::finish;
    a.held = tail_; // Dify ended without a final blank line: the bytes are passed on
    return a;
}

nanos sse_relay::read_deadline(nanos now)
{
    // Once the client left, Dify gets one idle period in all to name the task (it may keep
    // a stream open on pings, each of which would otherwise reset the wait).
    if (client_gone_ && !give_up_at_) give_up_at_ = now + limits_.idle;
    return give_up_at_ ? std::min(*give_up_at_, now + limits_.idle) : now + limits_.idle;
}

} // namespace gw::core
