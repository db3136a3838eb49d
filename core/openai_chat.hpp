// The OpenAI-compatible front's request side, without I/O: an OpenAI chat completion
// request read and checked (OpenAI's error shape for what is wrong), the conversation
// digests that let a client which resends its whole history each turn continue one Dify
// conversation, and the Dify request body a turn becomes.
//
// Mapping: the newest message must be the user's; its text is Dify's `query` (chat-type
// apps) or the configured input variable (workflow and completion apps), its images become
// Dify `files` (the caller decides which URLs it accepts).
// System and developer messages go into a configured input variable, or are dropped.
// Sampling parameters (temperature, max_tokens, tools, ...) are the Dify app's to decide:
// accepted and ignored, as the app's model settings apply.
#pragma once

#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gw::core::openai {

// An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
struct api_error
{
    int status = 400;
    std::string type = "invalid_request_error";
    std::string code;  // "" = null
    std::string param; // "" = null
    std::string message;
};
std::string error_body(const api_error& e);

struct message
{
    std::string role;                // system, developer, user, assistant, tool
    std::string text;                // text parts joined with "\n"
    std::vector<std::string> images; // image_url URLs, in order
};

struct chat_request
{
    std::string model; // the app's name
    bool stream = false;
    bool include_usage = false;    // stream_options.include_usage
    std::string user;              // "" when the client sent none
    std::vector<message> messages; // the last one is the user's
    const message& newest() const { return messages.back(); }
    // System and developer messages' text, joined with "\n" ("" = none).
    std::string instructions() const;
};

// Reads an OpenAI chat completion request body; an api_error (400) names what is wrong.
std::optional<chat_request> parse_chat_request(std::string_view body, api_error& err);

// The digest of a conversation's turns so far (system messages excluded: they steer, they
// are not turns): `turns` messages from the start. Equal histories, however their content
// was written (a string, or an array of text parts), have equal digests.
std::string history_digest(const std::vector<message>& messages, std::size_t turns);
// The digest the next turn's history will have: every message of `r` plus the answer.
std::string digest_after_answer(const chat_request& r, std::string_view answer);
// The number of messages before the newest (its history, for history_digest).
inline std::size_t history_length(const chat_request& r)
{
    return r.messages.size() - 1;
}

// How an app takes a turn.
struct app_mapping
{
    enum class kind { chat, workflow, completion };
    kind app = kind::chat;          // chat covers chat, agent and chatflow apps
    std::string instructions_input; // the inputs variable for system messages ("" = dropped)
    std::string text_input;         // workflow / completion: the variable that takes the text
    std::string output;             // workflow: the output variable that is the answer
};

// Dify's request body for one turn (response_mode streaming; a blocking OpenAI call is
// assembled from the stream, since agent apps only stream). `conversation_id` "" starts a
// new conversation; `context` (prior turns, when the history is unknown) is put before the
// query. `files` are Dify file objects.
boost::json::object dify_body(
    const chat_request& r,
    const app_mapping& m,
    std::string_view dify_user,
    std::string_view conversation_id,
    std::string_view context,
    boost::json::array files
);

// The prior turns as text for a new conversation, when the history is one the gateway has
// never seen: "user: ...\nassistant: ...", newest last ("" = none).
std::string prior_turns_as_context(const chat_request& r);

} // namespace gw::core::openai
