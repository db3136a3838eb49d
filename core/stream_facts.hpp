// What a gateway needs to learn from a Dify SSE stream it relays: the task to stop if
// the client leaves, the conversation, token usage (message_end / workflow_finished),
// and error events. Fed one parsed event at a time; tolerant of anything malformed.
#pragma once

#include "core/sse_parser.hpp"

#include <boost/container/small_vector.hpp>

#include <cstdint>
#include <memory>
#include <vector>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace gw::core {

// A workflow node's start or end, as a streamed node_started / node_finished event names it.
struct workflow_node_event
{
    bool finished = false;    // node_finished (else node_started)
    std::string execution_id; // data.id: this run of the node
    std::string node_id, node_type, title;
    std::string status, error; // node_finished: succeeded, failed, ...
    std::optional<double> elapsed_seconds;
    std::optional<std::int64_t> total_tokens; // data.execution_metadata.total_tokens
};

struct stream_error
{
    std::string code;
    int status = 0;
    std::string message;
};

// An id as read from a reply or event: inline up to 40 bytes (Dify's ids are 36-byte
// UUIDs), so keeping one allocates nothing; a longer one goes to the heap.
class id_text
{
public:
    void assign(std::string_view s) { bytes_.assign(s.begin(), s.end()); }
    std::string_view view() const { return {bytes_.data(), bytes_.size()}; }
    bool empty() const { return bytes_.empty(); }

private:
    boost::container::small_vector<char, 40> bytes_;
};

class stream_facts
{
public:
    stream_facts();
    ~stream_facts();
    stream_facts(stream_facts&&) noexcept;
    stream_facts& operator=(stream_facts&&) noexcept;

    void observe(const sse_event& e);
    // Also reads the same facts from a blocking JSON reply body, whole or piece by piece
    // (a streaming scan: a reply of any size, nothing kept but the facts).
    void observe_json_body(std::string_view body);
    void feed_json_body(std::string_view piece);
    void end_json_body();

    std::string_view id() const { return id_.view(); } // a blocking body's top-level id (an uploaded file's)
    std::string_view task_id() const { return task_id_.view(); }
    std::string_view conversation_id() const { return conversation_id_.view(); }
    std::string_view workflow_run_id() const { return workflow_run_id_.view(); }
    std::string_view message_id() const { return message_id_.view(); }
    // Human-input form tokens named so far (data.form_token), in order.
    const std::vector<std::string>& form_tokens() const { return form_tokens_; }
    std::optional<std::int64_t> total_tokens() const { return total_tokens_; }
    // metadata.usage's split (chat apps; workflows report only a total).
    std::optional<std::int64_t> prompt_tokens() const { return prompt_tokens_; }
    std::optional<std::int64_t> completion_tokens() const { return completion_tokens_; }
    // Workflow node events are kept (for tracing) only when asked; take_node_events()
    // hands over those seen since the last call.
    void keep_node_events(bool on) { keep_node_events_ = on; }
    std::vector<workflow_node_event> take_node_events() { return std::exchange(node_events_, {}); }
    const std::optional<stream_error>& error() const { return error_; }
    bool finished() const { return finished_; } // a terminal event was seen
    std::size_t events() const { return events_; }
    // Readers this thread keeps for the next reply (tests).
    static std::size_t spare_readers_kept();
    std::size_t malformed() const { return malformed_; }

private:
    struct body_reader;
    // Readers are borrowed from the thread's spares and go back there (their strings and
    // parser keep their capacity: the next reply's scan allocates nothing).
    struct return_reader
    {
        void operator()(body_reader* r) const noexcept;
    };
    using reader_ptr = std::unique_ptr<body_reader, return_reader>;
    static reader_ptr borrow_reader();

    reader_ptr body_; // a blocking reply being scanned
    id_text id_, task_id_, conversation_id_, workflow_run_id_, message_id_;
    std::vector<std::string> form_tokens_;
    std::optional<std::int64_t> total_tokens_, prompt_tokens_, completion_tokens_;
    std::optional<stream_error> error_;
    std::vector<workflow_node_event> node_events_;
    bool keep_node_events_ = false;
    bool finished_ = false;
    std::size_t events_ = 0;
    std::size_t malformed_ = 0;
};

} // namespace gw::core
