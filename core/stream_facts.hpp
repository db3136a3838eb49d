// What a gateway needs to learn from a Dify SSE stream it relays: the task to stop if
// the client leaves, the conversation, token usage (message_end / workflow_finished),
// and error events. Fed one parsed event at a time; tolerant of anything malformed.
#pragma once

#include "core/sse_parser.hpp"

#include <cstdint>
#include <optional>
#include <string>

namespace gw::core {

struct stream_error
{
    std::string code;
    int status = 0;
    std::string message;
};

class stream_facts
{
public:
    void observe(const sse_event& e);
    // Also reads the same facts from a blocking JSON reply body.
    void observe_json_body(std::string_view body);

    const std::string& id() const { return id_; } // a blocking body's top-level id (an uploaded file's)
    const std::string& task_id() const { return task_id_; }
    const std::string& conversation_id() const { return conversation_id_; }
    const std::string& workflow_run_id() const { return workflow_run_id_; }
    std::optional<std::int64_t> total_tokens() const { return total_tokens_; }
    const std::optional<stream_error>& error() const { return error_; }
    bool finished() const { return finished_; } // a terminal event was seen
    std::size_t events() const { return events_; }
    std::size_t malformed() const { return malformed_; }

private:
    std::string id_, task_id_, conversation_id_, workflow_run_id_;
    std::optional<std::int64_t> total_tokens_;
    std::optional<stream_error> error_;
    bool finished_ = false;
    std::size_t events_ = 0;
    std::size_t malformed_ = 0;
};

} // namespace gw::core
