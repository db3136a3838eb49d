// Helpers for the emulator integration tests: JSON calls and SSE frame splitting.
#pragma once

#include "tests/support/emulator_fixture.hpp"

#include <boost/json.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <thread>
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

// Polls the emulator's recent requests until `pred` holds for one (bounded: 10 s). The
// emulator runs in another thread and tells of no request as it happens: polling it is
// the only way to see a request the gateway makes on its own (a stop call).
inline std::optional<json::value> wait_for_request(running_emulator& emu, const std::function<bool(const json::value&)>& pred)
{
    for (int i = 0; i < 1000; ++i) {
        auto stats = emu.stats();
        for (const auto& r : stats.at("recent_requests").as_array())
            if (pred(r)) return r;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return std::nullopt;
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
