// Incremental text/event-stream parsing (WHATWG rules) for a relay: bytes go in as they
// arrive, in pieces of any size; the parser reports where each complete event ends in
// the byte stream so the relay can forward whole events only, and the event's fields.
// Handles LF, CRLF and CR line ends (also split across pieces), comments, bare
// `event: ping` frames, and bounds what it buffers for one event.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace gw::core {

struct sse_event
{
    std::string event; // the `event:` field ("" = message)
    std::string data;  // `data:` lines joined with '\n'
    std::string id;
};

class sse_parser
{
public:
    // `max_event_bytes` bounds the data kept for one event; larger events are still
    // framed but their data is truncated (and `truncated` set in on_event's callback).
    explicit sse_parser(std::size_t max_event_bytes = 1 << 20) : max_event_bytes_(max_event_bytes) {}

    // Consumes `bytes`; for each event completed inside them calls on_event(event,
    // end_offset) where end_offset is the position just after the event's blank line,
    // relative to the start of `bytes`.
    void feed(std::string_view bytes, const std::function<void(const sse_event&, std::size_t)>& on_event);

    // Bytes fed since the last completed event (the unfinished tail).
    std::size_t pending_bytes() const { return pending_; }
    bool truncated() const { return truncated_; }

private:
    void line_done(std::size_t end, const std::function<void(const sse_event&, std::size_t)>& on_event);

    std::size_t max_event_bytes_;
    std::string line_;
    sse_event current_;
    bool has_fields_ = false;
    bool last_was_cr_ = false;
    bool truncated_ = false;
    std::size_t pending_ = 0;
};

} // namespace gw::core
