// Deterministic "LLM" output and Dify's event sequences for every app mode: the
// streamed frames, the stop behaviour, and the blocking bodies.
#pragma once

#include "gateway/emulator/wire.hpp"

#include <boost/json/object.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace gw::emulator {

// Token counts derived from text: one token per started group of four bytes.
std::int64_t count_tokens(std::string_view text);

struct usage
{
    std::int64_t prompt_tokens = 0;
    std::int64_t completion_tokens = 0;
    std::int64_t total() const { return prompt_tokens + completion_tokens; }
    // Dify's usage object; prices are decimal strings in streams, numbers in blocking replies.
    boost::json::object to_json(bool prices_as_strings) const;
};

// Splits an answer into the deltas of successive `message` events (two words each;
// concatenating them gives the answer back).
std::vector<std::string> split_answer(std::string_view answer);

struct generation_input
{
    std::string mode; // app mode
    std::string task_id;
    std::string message_id;      // chat-like and completion
    std::string conversation_id; // chat-like
    std::string workflow_run_id; // workflow and chatflow
    std::string workflow_id;
    std::int64_t created_at = 0;
    std::string answer; // chat-like/completion: the answer; workflow: outputs.summary
    boost::json::object inputs;
    std::string user_session; // the `user` string
    std::string end_user_id;
    std::string app_id;
    std::string query;
    usage use;

    bool is_workflow_engine() const { return mode == "workflow" || mode == "advanced-chat"; }
};

// Called once when the generation ends: with the text produced and whether it was stopped.
using finish_fn = std::function<void(const std::string& text, bool stopped)>;

// Builds the stream for `in`. `uuid` makes node-execution ids. If the stream is destroyed
// before its end (client gone), `on_finish` still runs with the full text: Dify keeps
// generating server-side when a client disconnects.
std::shared_ptr<event_stream> make_generation_stream(generation_input in, const std::function<std::string()>& uuid, finish_fn on_finish);

// Number of frames a full stream of `in` has (for the blocking reply's simulated duration).
std::size_t generation_event_count(const generation_input& in);

// Blocking replies.
boost::json::object blocking_message_body(const generation_input& in);
boost::json::object blocking_workflow_body(const generation_input& in, std::int64_t finished_at);

} // namespace gw::emulator
