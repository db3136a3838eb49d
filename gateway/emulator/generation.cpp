#include "gateway/emulator/generation.hpp"

#include <boost/json.hpp>

#include <cstdio>

namespace gw::emulator {

namespace json = boost::json;

std::int64_t count_tokens(std::string_view text)
{
    return static_cast<std::int64_t>((text.size() + 3) / 4);
}

namespace {

// Decimal string without exponent, trimmed of trailing zeros ("0.0000063").
std::string decimal_string(double v)
{
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.10f", v);
    std::string s = buf;
    while (!s.empty() && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
}

json::value price(double v, bool as_string)
{
    return as_string ? json::value(decimal_string(v)) : json::value(v);
}

} // namespace

json::object usage::to_json(bool s) const
{
    constexpr double prompt_unit = 0.15, completion_unit = 0.6, unit = 1e-6;
    double prompt_price = static_cast<double>(prompt_tokens) * prompt_unit * unit;
    double completion_price = static_cast<double>(completion_tokens) * completion_unit * unit;
    json::object u;
    u["prompt_tokens"] = prompt_tokens;
    u["prompt_unit_price"] = price(prompt_unit, s);
    u["prompt_price_unit"] = price(unit, s);
    u["prompt_price"] = price(prompt_price, s);
    u["completion_tokens"] = completion_tokens;
    u["completion_unit_price"] = price(completion_unit, s);
    u["completion_price_unit"] = price(unit, s);
    u["completion_price"] = price(completion_price, s);
    u["total_tokens"] = total();
    u["total_price"] = price(prompt_price + completion_price, s);
    u["currency"] = "USD";
    u["latency"] = 0.5;
    u["time_to_first_token"] = 0.1;
    u["time_to_generate"] = 0.4;
    return u;
}

std::vector<std::string> split_answer(std::string_view answer)
{
    std::vector<std::string> out;
    std::string current;
    int words = 0;
    for (std::size_t i = 0; i < answer.size(); ++i) {
        bool word_start = answer[i] != ' ' && (i == 0 || answer[i - 1] == ' ');
        if (word_start && words == 2) {
            out.push_back(std::move(current));
            current.clear();
            words = 0;
        }
        if (word_start) ++words;
        current.push_back(answer[i]);
    }
    if (!current.empty()) out.push_back(std::move(current));
    return out;
}

namespace {

bool chat_like(const std::string& mode)
{
    return mode == "chat" || mode == "agent-chat" || mode == "advanced-chat";
}

// The envelope keys Dify's converters put before each event's own fields.
json::object envelope(const generation_input& in, std::string_view event)
{
    json::object o;
    o["event"] = event;
    if (in.mode == "workflow") {
        o["workflow_run_id"] = in.workflow_run_id;
    } else {
        if (chat_like(in.mode)) o["conversation_id"] = in.conversation_id;
        o["message_id"] = in.message_id;
        o["created_at"] = in.created_at;
    }
    o["task_id"] = in.task_id;
    if (in.mode == "advanced-chat" && (event.starts_with("workflow") || event.starts_with("node")))
        o["workflow_run_id"] = in.workflow_run_id;
    return o;
}

struct node
{
    std::string exec_id, node_id, node_type, title;
    int index;
    std::string predecessor;
};

json::object node_data(const generation_input& in, const node& n, bool finished, const json::object& outputs)
{
    json::object d;
    d["id"] = n.exec_id;
    d["node_id"] = n.node_id;
    d["node_type"] = n.node_type;
    d["title"] = n.title;
    d["index"] = n.index;
    d["predecessor_node_id"] = n.predecessor.empty() ? json::value(nullptr) : json::value(n.predecessor);
    if (!finished) {
        d["inputs"] = nullptr;
        d["inputs_truncated"] = false;
        d["created_at"] = in.created_at;
        d["extras"] = json::object();
        d["iteration_id"] = nullptr;
        d["loop_id"] = nullptr;
        d["agent_strategy"] = nullptr;
        return d;
    }
    d["inputs"] = json::object();
    d["inputs_truncated"] = false;
    d["process_data"] = json::object();
    d["process_data_truncated"] = false;
    d["outputs"] = outputs;
    d["outputs_truncated"] = false;
    d["status"] = "succeeded";
    d["error"] = nullptr;
    d["elapsed_time"] = 0.01;
    json::object meta;
    if (n.node_type == "llm") {
        meta["total_tokens"] = in.use.total();
        meta["total_price"] = "0.0000117";
        meta["currency"] = "USD";
    }
    d["execution_metadata"] = meta;
    d["created_at"] = in.created_at;
    d["finished_at"] = in.created_at;
    d["files"] = json::array();
    d["iteration_id"] = nullptr;
    d["loop_id"] = nullptr;
    return d;
}

json::object node_event(const generation_input& in, const node& n, bool finished, const json::object& outputs = {})
{
    auto o = envelope(in, finished ? "node_finished" : "node_started");
    o["data"] = node_data(in, n, finished, outputs);
    return o;
}

json::object workflow_started(const generation_input& in)
{
    auto o = envelope(in, "workflow_started");
    json::object inputs = in.inputs;
    if (in.mode == "advanced-chat") {
        inputs["sys.query"] = in.query;
        inputs["sys.conversation_id"] = in.conversation_id;
        inputs["sys.dialogue_count"] = 1;
    }
    inputs["sys.files"] = json::array();
    inputs["sys.user_id"] = in.user_session;
    inputs["sys.app_id"] = in.app_id;
    inputs["sys.workflow_id"] = in.workflow_id;
    inputs["sys.workflow_run_id"] = in.workflow_run_id;
    json::object d;
    d["id"] = in.workflow_run_id;
    d["workflow_id"] = in.workflow_id;
    d["inputs"] = inputs;
    d["created_at"] = in.created_at;
    d["reason"] = "initial";
    o["data"] = d;
    return o;
}

json::object workflow_finished(const generation_input& in, const json::object& outputs, bool stopped, int steps)
{
    auto o = envelope(in, "workflow_finished");
    json::object d;
    d["id"] = in.workflow_run_id;
    d["workflow_id"] = in.workflow_id;
    d["status"] = stopped ? "stopped" : "succeeded";
    d["outputs"] = outputs;
    d["error"] = stopped ? json::value("Workflow execution stopped by user.") : json::value(nullptr);
    d["elapsed_time"] = 0.5;
    d["total_tokens"] = in.use.total();
    d["total_steps"] = steps;
    d["created_by"] = json::object{{"id", in.end_user_id}, {"user", in.user_session}};
    d["created_at"] = in.created_at;
    d["finished_at"] = in.created_at;
    d["exceptions_count"] = 0;
    d["files"] = json::array();
    o["data"] = d;
    return o;
}

json::object message_end(const generation_input& in)
{
    auto o = envelope(in, "message_end");
    o["id"] = in.message_id;
    json::object meta;
    meta["annotation_reply"] = nullptr;
    meta["retriever_resources"] = json::array();
    meta["usage"] = in.use.to_json(true);
    o["metadata"] = meta;
    o["files"] = nullptr;
    return o;
}

json::object delta_event(const generation_input& in, const std::string& piece)
{
    if (in.mode == "workflow") {
        auto o = envelope(in, "text_chunk");
        o["data"] = json::object{{"text", piece}, {"from_variable_selector", json::array{"1747000000002", "text"}}};
        return o;
    }
    auto o = envelope(in, in.mode == "agent-chat" ? "agent_message" : "message");
    o["id"] = in.message_id;
    o["answer"] = piece;
    if (in.mode != "agent-chat") o["from_variable_selector"] = nullptr;
    return o;
}

json::object agent_thought(const generation_input& in, const std::string& thought_id, const std::string& thought)
{
    auto o = envelope(in, "agent_thought");
    o["id"] = thought_id;
    o["position"] = 1;
    o["thought"] = thought;
    o["observation"] = "";
    o["tool"] = "";
    o["tool_labels"] = json::object();
    o["tool_input"] = "";
    o["message_files"] = json::array();
    return o;
}

// Frames before the first delta, the deltas, and the frames after them up to the
// terminal events; terminal events depend on how much was produced and on a stop.
class generation_stream final : public event_stream
{
public:
    generation_stream(generation_input in, const std::function<std::string()>& uuid, finish_fn on_finish)
        : in_(std::move(in)), pieces_(split_answer(in_.answer)), on_finish_(std::move(on_finish))
    {
        if (in_.mode == "agent-chat") {
            thought_id_ = uuid();
            prefix_.push_back(agent_thought(in_, thought_id_, ""));
        }
        if (in_.is_workflow_engine()) {
            start_ = {uuid(), "1747000000001", "start", "Start", 1, ""};
            llm_ = {uuid(), "1747000000002", "llm", "LLM", 2, start_.node_id};
            last_ = {uuid(), "1747000000003", in_.mode == "workflow" ? "end" : "answer", in_.mode == "workflow" ? "End" : "Answer", 3, llm_.node_id};
            prefix_.push_back(workflow_started(in_));
            prefix_.push_back(node_event(in_, start_, false));
            prefix_.push_back(node_event(in_, start_, true, in_.inputs));
            prefix_.push_back(node_event(in_, llm_, false));
        }
    }

    ~generation_stream() override
    {
        if (!finished_) finish(in_.answer, false); // Dify keeps running after a disconnect
    }

    bool finished() const override { return terminal_built_ && terminal_pos_ >= terminal_.size(); }

    bool initial_ping() const override { return in_.is_workflow_engine(); }

    std::optional<std::string> next() override
    {
        if (stop_requested() && !terminal_built_) build_terminal(true);
        if (!terminal_built_) {
            if (prefix_pos_ < prefix_.size()) return sse_data_frame(prefix_[prefix_pos_++]);
            if (piece_pos_ < pieces_.size()) {
                produced_ += pieces_[piece_pos_];
                return sse_data_frame(delta_event(in_, pieces_[piece_pos_++]));
            }
            build_terminal(false);
        }
        if (terminal_pos_ < terminal_.size()) return sse_data_frame(terminal_[terminal_pos_++]);
        return std::nullopt;
    }

private:
    void build_terminal(bool stopped)
    {
        terminal_built_ = true;
        const auto& text = produced_;
        json::object outputs;
        if (in_.mode == "workflow")
            outputs["summary"] = text;
        else
            outputs["answer"] = text;
        if (in_.mode == "agent-chat") terminal_.push_back(agent_thought(in_, thought_id_, text));
        if (in_.is_workflow_engine() && !stopped) {
            terminal_.push_back(node_event(in_, llm_, true, json::object{{"text", text}, {"finish_reason", "stop"}}));
            terminal_.push_back(node_event(in_, last_, false));
            terminal_.push_back(node_event(in_, last_, true, outputs));
        }
        if (in_.mode != "workflow") terminal_.push_back(message_end(in_)); // 1.13.1+: before workflow_finished
        if (in_.is_workflow_engine()) terminal_.push_back(workflow_finished(in_, stopped ? json::object() : outputs, stopped, stopped ? 2 : 3));
        finish(text, stopped);
    }

    void finish(const std::string& text, bool stopped)
    {
        finished_ = true;
        if (on_finish_) on_finish_(text, stopped);
    }

    generation_input in_;
    std::vector<std::string> pieces_;
    finish_fn on_finish_;
    std::vector<json::object> prefix_;
    std::vector<json::object> terminal_;
    std::size_t prefix_pos_ = 0, piece_pos_ = 0, terminal_pos_ = 0;
    std::string produced_;
    std::string thought_id_;
    node start_, llm_, last_;
    bool terminal_built_ = false;
    bool finished_ = false;
};

} // namespace

std::shared_ptr<event_stream> make_generation_stream(generation_input in, const std::function<std::string()>& uuid, finish_fn on_finish)
{
    return std::make_shared<generation_stream>(std::move(in), uuid, std::move(on_finish));
}

std::size_t generation_event_count(const generation_input& in)
{
    std::size_t before = in.mode == "agent-chat" ? 1 : in.is_workflow_engine() ? 4 : 0;
    std::size_t after = in.mode == "agent-chat" ? 2 : in.mode == "workflow" ? 4 : in.mode == "advanced-chat" ? 5 : 1;
    return before + split_answer(in.answer).size() + after;
}

json::object blocking_message_body(const generation_input& in)
{
    json::object o;
    o["event"] = "message";
    o["task_id"] = in.task_id;
    o["id"] = in.message_id;
    o["message_id"] = in.message_id;
    if (chat_like(in.mode)) o["conversation_id"] = in.conversation_id;
    o["mode"] = in.mode;
    o["answer"] = in.answer;
    json::object meta;
    meta["annotation_reply"] = nullptr;
    meta["retriever_resources"] = json::array();
    meta["usage"] = in.use.to_json(false);
    o["metadata"] = meta;
    o["created_at"] = in.created_at;
    return o;
}

json::object blocking_workflow_body(const generation_input& in, std::int64_t finished_at)
{
    json::object d;
    d["id"] = in.workflow_run_id;
    d["workflow_id"] = in.workflow_id;
    d["status"] = "succeeded";
    d["outputs"] = json::object{{"summary", in.answer}};
    d["error"] = nullptr;
    d["elapsed_time"] = 0.5;
    d["total_tokens"] = in.use.total();
    d["total_steps"] = 3;
    d["created_at"] = in.created_at;
    d["finished_at"] = finished_at;
    json::object o;
    o["task_id"] = in.task_id;
    o["workflow_run_id"] = in.workflow_run_id;
    o["data"] = d;
    return o;
}

} // namespace gw::emulator
