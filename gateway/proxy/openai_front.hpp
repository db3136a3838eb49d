// The OpenAI-compatible front (/openai/v1) over the gateway's Dify path: a turn is made
// into an ordinary Dify request (chat-messages, workflows/run or completion-messages) that
// then takes the same path as every other (user namespaced, quotas, ownership, retries),
// and Dify's stream is translated back on the way out (core/openai_stream). This file
// holds what both sides share: the turn an exchange carries, OpenAI's error shape for the
// gateway's own errors and Dify's, the model list and the conversation keys.
#pragma once

#include "core/openai_chat.hpp"
#include "core/openai_stream.hpp"
#include "core/sse_parser.hpp"
#include "gateway/proxy/tenants.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace gw::gateway {

// One turn through the front, carried by its exchange.
struct openai_turn
{
    core::openai::chat_request request;
    core::openai::completion_translator translator;
    core::sse_parser events;        // Dify's whole events, as the SSE relay hands them over
    std::string conversation_scope; // tenant, app and end user: the prefix of its conversation keys
    std::string conversation_id;    // the Dify conversation it continues ("" = a new one)
    std::string remembered_as;      // the conversation map's key it was found under ("" = not from the map)
    bool head_pending = false;      // stream: true, the head not yet written (it waits for Dify's first event)
    bool saw_event = false;         // Dify has sent an event (pings aside)
    bool head_keep_alive = true;    // the client connection goes on after the stream
    // The remembered conversation is gone at Dify (deleted): nothing was answered, and the
    // turn is sent once more as a new conversation.
    bool conversation_gone = false;
    bool restarted = false; // this is that second sending
};

// A `data:` image of a turn on its way to Dify's files/upload, sent before the turn: the
// form the gateway wrote (its type; the exchange's body), and the id Dify gave the file.
struct image_upload
{
    std::string content_type;
    std::string file_id; // "" until Dify answered 201 with one
};
// Where a turn's images are uploaded: the turn's app, POST /files/upload.
app_target files_upload_target(app_target turn);

// The response header that names the Dify conversation of a turn; a request may send it
// to continue a conversation of its choice (one of its tenant's: ownership is checked).
inline constexpr std::string_view conversation_header = "X-Dify-Conversation-Id";
// What the conversation map holds for a history two conversations reached (it continues
// neither); "" is a forgotten entry (Dify no longer has the conversation).
inline constexpr std::string_view ambiguous_conversation = "-";
// A Dify conversation id as the pin header may give it: the canonical UUID form
// (8-4-4-4-12 hex digits), returned in lower case; nullopt for any other spelling (Dify's
// own parsing would accept more, which the ownership check could not follow).
std::optional<std::string> canonical_conversation_id(std::string_view id);

// OpenAI's error for a gateway-made one (401 invalid_api_key, 404 model_not_found, 429
// rate_limit_exceeded or insufficient_quota, ...).
core::openai::api_error openai_error(const gateway_error& e);
// OpenAI's error for Dify's error reply (its JSON {code, message, status}, or anything).
// Dify refusing the gateway's app key (401/403) is the upstream's failure, not the
// client's key: 502 upstream_auth_failed.
core::openai::api_error openai_error_of_dify(int status, std::string_view body);
// GET /openai/v1/models: the apps `t` may use, as OpenAI models.
std::string openai_models_body(const tenant& t, std::int64_t created);
// The mapping core::openai needs from an app's configuration.
core::openai::app_mapping openai_mapping(const config::app_config& a);
// The store key of a conversation's history digest within its scope.
std::string conversation_key(std::string_view scope, std::string_view digest);
// The scope of a turn: tenant, app and end user.
std::string conversation_scope(std::string_view tenant, std::string_view app, std::string_view user);

} // namespace gw::gateway
