// Helpers for the emulator integration tests: JSON calls and SSE frame splitting.
#pragma once

#include "tests/support/emulator_fixture.hpp"

#include <boost/json.hpp>

#include <string>
#include <vector>

namespace gw::test {

namespace json = boost::json;

inline http_response post_json(http_client& c, const std::string& path, const std::string& key, const json::value& body,
                               header_list extra = {})
{
    auto h = bearer(key);
    h.insert(h.end(), extra.begin(), extra.end());
    return c.request("POST", path, h, json::serialize(body));
}

inline http_response get(http_client& c, const std::string& path, const std::string& key)
{
    return c.request("GET", path, bearer(key, ""));
}

// Splits an SSE body into frames (each without its terminating blank line).
inline std::vector<std::string> sse_frames(const std::string& body)
{
    std::vector<std::string> out;
    std::size_t pos = 0;
    for (;;) {
        auto end = body.find("\n\n", pos);
        if (end == std::string::npos) break;
        out.push_back(body.substr(pos, end - pos));
        pos = end + 2;
    }
    return out;
}

// The JSON payloads of `data:` frames, in order.
inline std::vector<json::object> sse_events(const std::string& body)
{
    std::vector<json::object> out;
    for (const auto& f : sse_frames(body))
        if (f.rfind("data: ", 0) == 0) out.push_back(json::parse(f.substr(6)).as_object());
    return out;
}

inline std::vector<std::string> event_names(const std::string& body)
{
    std::vector<std::string> out;
    for (const auto& f : sse_frames(body)) {
        if (f == "event: ping")
            out.emplace_back("ping");
        else
            out.emplace_back(json::parse(f.substr(6)).as_object().at("event").as_string());
    }
    return out;
}

inline json::object chat_body(const std::string& query, const std::string& user, const std::string& mode = "blocking",
                              const std::string& conversation_id = "")
{
    return json::object{{"inputs", json::object()}, {"query", query}, {"response_mode", mode},
                        {"conversation_id", conversation_id}, {"user", user}};
}

} // namespace gw::test
