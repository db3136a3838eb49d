// Spans for the nodes of a Dify workflow run, derived from its streamed node_started /
// node_finished events: each node run is a child of the span that streamed it (the
// upstream attempt), opened when the gateway saw node_started and closed at its
// node_finished (title, node type, status, Dify's elapsed time and tokens as attributes).
// A node_finished without its start is dated back by its elapsed time; nodes still open
// when the stream ends are closed then, as errors. Sans-io: times and ids are passed in.
#pragma once

#include "core/span.hpp"
#include "core/stream_facts.hpp"

#include <string>
#include <vector>

namespace gw::core {

class workflow_node_spans
{
public:
    workflow_node_spans(const trace_id& trace, const span_id& parent) : trace_(trace), parent_(parent) {}

    // One node event seen at `now_unix_nano`; `fresh` is the id a span opened now takes.
    // Spans it closes are appended to `done`.
    void on_event(workflow_node_event e, std::int64_t now_unix_nano, const span_id& fresh, std::vector<span>& done);
    // The stream ended: nodes still open are closed as not finished.
    void end(std::int64_t now_unix_nano, std::vector<span>& done);

    static constexpr std::size_t max_open = 256;    // nodes running at once that are followed
    static constexpr std::size_t max_spans = 1'000; // node spans one stream makes at most

private:
    struct open_node
    {
        std::string execution_id;
        span s;
    };
    span started(const workflow_node_event& e, std::int64_t now, const span_id& fresh) const;

    trace_id trace_;
    span_id parent_;
    std::vector<open_node> open_;
    std::size_t spans_made_ = 0;
};

} // namespace gw::core
