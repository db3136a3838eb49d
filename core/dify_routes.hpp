// Facts about Dify Service API paths the gateway acts on (reference §2, §3.3): where
// each endpoint reads `user`, and which stop endpoint ends a generation it started.
// Paths are relative to /v1 ("/chat-messages", "/conversations/<id>/name", ...).
#pragma once

#include "core/ownership_table.hpp"

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gw::core {

enum class user_place
{
    none,      // the endpoint does not read `user`
    json_body, // JSON body field
    query,     // query-string parameter
    form,      // multipart form field
};

user_place user_place_for(std::string_view method, std::string_view path);

// "/chat-messages/<task>/stop" (or the completion / workflow form) for a generation
// started by `method path`; "" when the endpoint does not start a generation.
std::string stop_path_for(std::string_view method, std::string_view path, std::string_view task_id);

// The resources a request names in its path or query that another tenant may own: the
// task of a stop call, a workflow run, a file preview, a conversation. IDs come
// percent-decoded and lower-cased, as Dify matches them (UUIDs).
using owned_reference = std::pair<owned_kind, std::string>;
std::vector<owned_reference> owned_references(std::string_view method, std::string_view path, std::string_view query);

// An ID as Dify compares it: percent-decoded, lower-case.
std::string normalized_id(std::string_view raw);

} // namespace gw::core
