// Facts about Dify Service API paths the gateway acts on (reference §2, §3.3): where
// each endpoint reads `user`, and which stop endpoint ends a generation it started.
// Paths are relative to /v1 ("/chat-messages", "/conversations/<id>/name", ...).
#pragma once

#include <string>
#include <string_view>

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

} // namespace gw::core
