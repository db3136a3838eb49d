// The OpenAI-compatible front's reply side, without I/O: Dify's streamed events of one
// turn, fed one at a time, become OpenAI `chat.completion.chunk` frames as they arrive
// (stream: true) or one `chat.completion` object at the end (stream: false).
//
// Content comes from `message` and `agent_message` deltas (chat, chatflow, agent apps) and
// `text_chunk` (workflow apps; when a workflow streamed no text, the configured output
// variable at `workflow_finished` is the answer). Agent thoughts, workflow node events,
// files and TTS are not content. `message_replace` (moderation) replaces the answer: a
// stream gets the replacement as a last delta, a blocking reply the replacement alone, and
// finish_reason is "content_filter".
// Usage is Dify's (`message_end`, or `workflow_finished`'s total for workflows, whose
// prompt/completion split Dify does not give: both 0), never estimated.
#pragma once

#include "core/openai_chat.hpp"

#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace gw::core::openai {

struct token_usage
{
    std::int64_t prompt = 0, completion = 0, total = 0;
};

class completion_translator
{
public:
    struct options
    {
        std::string id; // "chatcmpl-…"
        std::int64_t created = 0;
        std::string model;
        bool stream = true; // false: no frames are built, completion() is the reply
        bool include_usage = false;
        app_mapping::kind app = app_mapping::kind::chat;
        std::string output; // workflow apps: the output variable that is the answer
    };
    explicit completion_translator(options o);

    // One Dify event: the JSON text of a `data:` frame (pings are not passed in). Returns
    // the frames for the client now ("" = none).
    std::string on_event(std::string_view data);
    // Dify's stream ended (closed after its terminal event, or cut off). Returns the last
    // frames: the final chunk, the usage chunk when asked for, `data: [DONE]`; or the error
    // frame when the turn failed or never finished.
    std::string on_end();
    // The gateway ended the stream itself (Dify silent or gone, a drain): the error frame.
    std::string on_failure(std::string_view code, std::string_view message);

    // stream: false, after on_end(): the chat.completion, or the error.
    boost::json::object completion() const;
    const std::optional<api_error>& error() const { return error_; }

    const std::string& answer() const { return answer_; }
    const std::string& conversation_id() const { return conversation_id_; }
    const std::optional<token_usage>& usage() const { return usage_; }
    bool finished() const { return finished_; } // a terminal event arrived and the turn succeeded

private:
    std::string content_frame(std::string_view text);
    // id, object, created, model and choices: what every chunk and the completion carry.
    boost::json::object envelope(const char* object, boost::json::array choices) const;
    std::string chunk(boost::json::object delta, const char* finish_reason);
    std::string error_frame();
    void take_workflow_end(const boost::json::object& data);

    options o_;
    std::string answer_;
    std::string conversation_id_;
    std::optional<token_usage> usage_;
    std::optional<api_error> error_;
    const char* finish_reason_ = "stop";
    bool role_sent_ = false;
    bool streamed_text_ = false;
    bool finished_ = false;
    bool ended_ = false;
};

} // namespace gw::core::openai
