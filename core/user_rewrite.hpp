// Tenant isolation of Dify end users: every `user` value becomes
// "<tenant>:<user>", and "<tenant>:default" where the client sent none, in the JSON body,
// the query string or the multipart form — wherever Dify reads it for that endpoint.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gw::core {

inline constexpr std::string_view default_user = "default";

// "<tenant>:<user>", or "<tenant>:default" for an absent or empty user.
std::string namespaced_user(std::string_view tenant, std::string_view user);

// What a generate request refers to that another tenant may own: the conversation it
// continues (top-level `conversation_id`) and every file (`upload_file_id`, at any depth:
// in `files` and in file inputs).
struct json_references
{
    std::string conversation_id;
    std::string message_id; // top-level (text-to-audio reads a message's answer)
    std::vector<std::string> upload_file_ids;
};

// A JSON object body with `user` namespaced: the body as it came, byte for byte, except
// that the last top-level `user` value (the one Python's json, Dify's reader, keeps) is
// replaced by the namespaced one and any earlier ones by null, or one is added first in
// the object when it has none. A `user` that is not a string is taken as its compact JSON
// text. nullopt when the body is not a JSON object as Boost.JSON reads one (malformed,
// invalid UTF-8 or UTF-16 escapes, NaN, a byte-order mark, nesting deeper than 64), or
// when a reference Dify reads is not a string: the last conversation_id or message_id
// neither a string nor null, an object's last upload_file_id a number or a boolean (Dify's
// str() would make an id of a number that was never checked). The gateway then refuses
// the request. What it accepts, Python's
// json reads the same way (it accepts more: NaN, lone surrogates, a UTF-8 BOM in bytes).
// `refs`, when given, receives what the body refers to: the last top-level
// `conversation_id` and `message_id` (when strings), and every string `upload_file_id`
// member at any depth (a repeated one too, though Dify reads only the last).
// `namespaced`, when given, receives the new `user` value.
std::optional<std::string> rewrite_json_user(std::string_view body, std::string_view tenant, std::string* namespaced = nullptr,
                                             json_references* refs = nullptr);


// The query string with every `user` parameter namespaced (one added when absent).
std::string rewrite_query_user(std::string_view query, std::string_view tenant);
// The same for any parameter `name`; parameters named in `dropped` are removed. With
// `add_if_absent` false, a query without `name` is returned unchanged.
std::string rewrite_query_param(std::string_view query, std::string_view name, std::string_view tenant,
                                std::initializer_list<std::string_view> dropped = {}, bool add_if_absent = true);

// application/x-www-form-urlencoded encoding of one component.
std::string form_encode(std::string_view s);

// A body described as pieces: ranges of the original body and inserted text, so that a
// large multipart upload is rewritten without copying the file.
struct body_splice
{
    struct piece
    {
        std::size_t offset = 0; // into the original body, when `text` is empty
        std::size_t length = 0;
        std::string text;       // inserted bytes (used when non-empty)
    };
    std::vector<piece> pieces;

    std::size_t size() const;
    std::string flatten(std::string_view original) const; // for tests and small bodies
};

// The multipart body with the `user` field namespaced (or added first), and a
// Content-Type guessed from the filename added to file parts that lack one (Dify answers
// 415 to those; Python requests sends them). nullopt when the body does not parse, or when
// a `user` field carries a Content-Type (Werkzeug would decode it with that charset).
std::optional<body_splice> rewrite_multipart_user(std::string_view body, std::string_view boundary, std::string_view tenant);

// A MIME type for a filename's extension; application/octet-stream when unknown.
std::string guess_mime_type(std::string_view filename);

} // namespace gw::core
