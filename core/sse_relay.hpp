// What the relay of one text/event-stream does with each piece Dify sends, as a sans-io
// state machine; the driver (a coroutine owning both sockets) reads, writes and performs
// the steps it gets back.
//
// - Only whole events go to the client, each as soon as it is complete: bytes after the
//   last complete event are held until their event ends. An event larger than
//   `max_event_bytes` ends the stream with an error event (never half an event).
// - The facts of the stream (task id, conversation, usage...) are read as events pass.
// - The client leaving (its connection closed, or a write to it failed) does not end the
//   relay until the task id is known, so that the driver can stop the task at Dify: it
//   reads on for up to `max_read_after_client_left` bytes and one `idle` period.
// - Dify breaking off or going silent ends the stream with an error event; the task is
//   stopped (Dify may still be running it).
//
// A piece passed to feed() must stay valid only until written() (the `fresh` bytes of a
// write step lie in it): the unfinished event after them is copied at once, so the driver
// may read the next piece into the same memory. Not thread-safe.
#pragma once

#include "core/retry.hpp"
#include "core/sse_parser.hpp"
#include "core/stream_facts.hpp"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace gw::core {

struct sse_relay_limits
{
    std::size_t max_event_bytes = 1 << 20;
    std::size_t max_read_after_client_left = 64 * 1024;
    nanos idle{std::chrono::seconds(60)}; // longest silence of Dify; once the client left, the whole wait for the task id
};

enum class sse_step
{
    read,            // read the next piece from Dify
    write,           // write `held` then `fresh` to the client as one chunk, then call written()
    close,           // end here: the client is gone (nothing more is written)
    end_with_error,  // write an error event and the end of the stream
    finish,          // write `held` (if any), then the end of the stream
};

struct sse_action
{
    sse_step step = sse_step::read;
    std::string_view held{};   // bytes held from earlier pieces (write, finish)
    std::string_view fresh{};  // bytes of the piece just fed (write)
    bool stop_task = false;    // call Dify's stop endpoint for facts().task_id(), if known
    std::string_view error_code{}, error_message{}; // end_with_error
    int error_status = 0;
};

enum class upstream_end
{
    broken,        // the connection failed
    idle,          // Dify was silent for `idle`
    shutting_down, // the gateway's drain ended the stream
};

class sse_relay
{
public:
    explicit sse_relay(sse_relay_limits limits);

    // A piece read from Dify.
    sse_action feed(std::string_view piece);
    // The write step finished (`ok` false: the client is gone).
    sse_action written(bool ok);
    // The client closed its connection. True when the driver should close the upstream
    // connection now (the task id is known: the relay can end at once).
    bool client_left();
    // Reading from Dify failed.
    sse_action upstream_failed(upstream_end why);
    // Dify's body ended.
    sse_action upstream_ended();

    // When the next read from Dify must have completed, given the time now.
    nanos read_deadline(nanos now);
    const stream_facts& facts() const { return facts_; }
    // Workflow node events, kept for tracing once asked (stream_facts::keep_node_events).
    void keep_node_events() { facts_.keep_node_events(true); }
    std::vector<workflow_node_event> take_node_events() { return facts_.take_node_events(); }
    bool task_known() const { return !facts_.task_id().empty(); }
    bool client_gone() const { return client_gone_; }

private:
    sse_action after_tail_grew();
    sse_action too_large_event();

    sse_relay_limits limits_;
    sse_parser parser_;
    stream_facts facts_;
    std::string tail_;            // the unfinished event, held back
    std::string next_tail_;       // the unfinished event after a write step's events: the tail once written
    bool client_gone_ = false;
    bool oversized_ = false; // an event too large follows the write step's events
    std::size_t read_after_left_ = 0;
    std::optional<nanos> give_up_at_; // once the client left: the end of the wait for the task id
};

} // namespace gw::core
