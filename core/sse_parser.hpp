// Incremental text/event-stream parsing (WHATWG rules) for a relay: bytes go in as they
// arrive, in pieces of any size; the parser reports where each complete event ends in
// the byte stream so the relay can forward whole events only, and the event's fields.
// Handles LF, CRLF and CR line ends (also split across pieces), comments, bare
// `event: ping` frames, and bounds what it buffers for one event.
//
// Bytes are scanned once and not copied when they need not be: an event whose lines all
// lie in the piece being fed is reported with views into that piece. Only what a piece
// leaves unfinished (part of a line, the fields of an event not ended yet) is copied, so a
// parser waiting between events holds no buffer.
#pragma once

#include <cstddef>
#include <type_traits>
#include <string>
#include <string_view>

namespace gw::core {

// An event's fields, valid only during the on_event call that reports it.
struct sse_event
{
    std::string_view event; // the `event:` field ("" = message)
    std::string_view data;  // `data:` lines joined with '\n'
    std::string_view id;
};

// What feed() calls for each event: a view of a callable (never copied or allocated, so
// a caller's lambda may capture what it likes); the callable outlives the feed() call.
class sse_event_sink
{
public:
    template <typename F>
        requires(!std::is_same_v<std::remove_cvref_t<F>, sse_event_sink> && std::is_invocable_v<F&, const sse_event&, std::size_t>)
    sse_event_sink(F&& f) // NOLINT: converts from any callable, like std::function
        : callable_(static_cast<const void*>(&f)), call_([](const void* c, const sse_event& e, std::size_t end) {
              (*static_cast<std::remove_reference_t<F>*>(const_cast<void*>(c)))(e, end);
          })
    {
    }
    void operator()(const sse_event& e, std::size_t end) const { call_(callable_, e, end); }

private:
    const void* callable_;
    void (*call_)(const void*, const sse_event&, std::size_t);
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
    void feed(std::string_view bytes, sse_event_sink on_event);

    // Bytes fed since the last completed event (the unfinished tail).
    std::size_t pending_bytes() const { return pending_; }
    bool truncated() const { return truncated_; }

private:
    // A field of the event being read: a view into the piece being fed, or (once the
    // piece is left) its own copy.
    struct field
    {
        std::string_view view;
        std::string owned;
        bool is_owned = false;
        void set(std::string_view v, bool keep);
        void append_line(std::string_view v); // data: '\n' between lines
        void keep();                          // copy a view before its piece goes
        void clear();
        std::string_view current() const { return is_owned ? std::string_view(owned) : view; }
    };

    void line_done(std::string_view line, bool from_piece, std::size_t end,
                   sse_event_sink on_event);

    std::size_t max_event_bytes_;
    std::string line_; // part of a line a piece ended in
    field event_, data_, id_;
    std::size_t data_length_ = 0; // data as the old representation counted it: each line + '\n'
    bool has_fields_ = false;
    bool last_was_cr_ = false;
    bool truncated_ = false;
    std::size_t pending_ = 0;
};

} // namespace gw::core
