#include "core/workflow_spans.hpp"

#include <algorithm>

namespace gw::core {

span workflow_node_spans::started(const workflow_node_event& e, std::int64_t now, const span_id& fresh) const
{
    span s;
    s.trace = trace_;
    s.id = fresh;
    s.parent = parent_;
    s.name = bounded_text(!e.title.empty() ? e.title : !e.node_type.empty() ? e.node_type : std::string("workflow node"));
    s.kind = span_kind::internal;
    s.start_unix_nano = now;
    s.set("dify.workflow.node.id", e.node_id);
    s.set("dify.workflow.node.type", e.node_type);
    s.set("dify.workflow.node.title", e.title);
    s.set("dify.workflow.node.execution_id", e.execution_id);
    return s;
}

void workflow_node_spans::on_event(
    workflow_node_event e, std::int64_t now, const span_id& fresh, std::vector<span>& done
)
{
    if (spans_made_ == max_spans) return; // a run this long is cut short in the trace, not in memory
    auto it = std::find_if(open_.begin(), open_.end(), [&](const open_node& n) { return n.execution_id == e.execution_id; });
    if (!e.finished) {
        if (it == open_.end() && open_.size() < max_open) open_.push_back({e.execution_id, started(e, now, fresh)});
        return;
    }
    span s;
    if (it != open_.end()) {
        s = std::move(it->s);
        open_.erase(it);
    } else { // its start was not seen: dated back by Dify's elapsed time
        const double elapsed = std::clamp(e.elapsed_seconds.value_or(0.0), 0.0, 1e6); // Dify's figure, bounded
        s = started(e, now - static_cast<std::int64_t>(elapsed * 1e9), fresh);
    }
    s.end_unix_nano = now;
    if (!e.status.empty()) s.set("dify.workflow.node.status", e.status);
    if (e.elapsed_seconds) s.set("dify.workflow.node.elapsed_time", *e.elapsed_seconds);
    if (e.total_tokens) s.set("gen_ai.usage.total_tokens", *e.total_tokens);
    if (e.status == "failed" || e.status == "exception") { // success leaves the status unset
        s.status = span_status::error;
        s.status_message = bounded_text(e.error);
    }
    ++spans_made_;
    done.push_back(std::move(s));
}

void workflow_node_spans::end(std::int64_t now, std::vector<span>& done)
{
    for (auto& n : open_) {
        n.s.end_unix_nano = now;
        n.s.status = span_status::error;
        n.s.status_message = "the stream ended before the node finished";
        done.push_back(std::move(n.s));
    }
    open_.clear();
}

} // namespace gw::core
