#include "core/dify_routes.hpp"

#include "core/text.hpp"

#include <vector>

namespace gw::core {

namespace {

struct route
{
    std::string_view method;
    std::string_view pattern; // "*" matches one segment
    user_place place;
};

// Reference §2's table.
constexpr route routes[] = {
    {"POST", "/chat-messages", user_place::json_body},
    {"POST", "/completion-messages", user_place::json_body},
    {"POST", "/workflows/run", user_place::json_body},
    {"POST", "/workflows/*/run", user_place::json_body},
    {"POST", "/chat-messages/*/stop", user_place::json_body},
    {"POST", "/completion-messages/*/stop", user_place::json_body},
    {"POST", "/workflows/tasks/*/stop", user_place::json_body},
    {"POST", "/messages/*/feedbacks", user_place::json_body},
    {"GET", "/messages/*/suggested", user_place::query},
    {"GET", "/conversations", user_place::query},
    {"GET", "/messages", user_place::query},
    {"GET", "/conversations/*/variables", user_place::query},
    {"DELETE", "/conversations/*", user_place::json_body},
    {"POST", "/conversations/*/name", user_place::json_body},
    {"PUT", "/conversations/*/variables/*", user_place::json_body},
    {"POST", "/text-to-audio", user_place::json_body},
    {"POST", "/files/upload", user_place::form},
    {"POST", "/audio-to-text", user_place::form},
    {"GET", "/files/*/preview", user_place::query},
};

bool matches(std::string_view pattern, std::string_view path)
{
    auto p = split(pattern, '/');
    auto s = split(path, '/');
    if (!s.empty() && s.back().empty()) s.pop_back(); // tolerate one trailing slash
    if (p.size() != s.size()) return false;
    for (std::size_t i = 0; i < p.size(); ++i) {
        bool ok = p[i] == "*" ? !s[i].empty() : p[i] == s[i];
        if (!ok) return false;
    }
    return true;
}

} // namespace

user_place user_place_for(std::string_view method, std::string_view path)
{
    for (const auto& r : routes)
        if (r.method == method && matches(r.pattern, path)) return r.place;
    return user_place::none;
}

std::string stop_path_for(std::string_view method, std::string_view path, std::string_view task_id)
{
    if (method != "POST" || task_id.empty()) return {};
    if (matches("/chat-messages", path)) return "/chat-messages/" + std::string(task_id) + "/stop";
    if (matches("/completion-messages", path)) return "/completion-messages/" + std::string(task_id) + "/stop";
    if (matches("/workflows/run", path) || matches("/workflows/*/run", path))
        return "/workflows/tasks/" + std::string(task_id) + "/stop";
    return {};
}

} // namespace gw::core
