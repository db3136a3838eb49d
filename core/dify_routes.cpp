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

std::string normalized_id(std::string_view raw)
{
    std::string out;
    out.reserve(raw.size());
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    for (std::size_t i = 0; i < raw.size(); ++i) {
        if (raw[i] == '%' && i + 2 < raw.size() && hex(raw[i + 1]) >= 0 && hex(raw[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hex(raw[i + 1]) * 16 + hex(raw[i + 2])));
            i += 2;
        } else {
            out.push_back(raw[i]);
        }
    }
    return to_lower(out);
}

std::vector<owned_reference> owned_references(std::string_view method, std::string_view path, std::string_view query)
{
    struct pattern
    {
        std::string_view method, path;
        owned_kind kind;
        std::size_t segment; // which segment holds the ID (0 is the empty one before the first '/')
    };
    static constexpr pattern patterns[] = {
        {"POST", "/chat-messages/*/stop", owned_kind::task, 2},
        {"POST", "/completion-messages/*/stop", owned_kind::task, 2},
        {"POST", "/workflows/tasks/*/stop", owned_kind::task, 3},
        {"GET", "/workflows/run/*", owned_kind::workflow_run, 3},
        {"GET", "/files/*/preview", owned_kind::file, 2},
        {"DELETE", "/conversations/*", owned_kind::conversation, 2},
        {"POST", "/conversations/*/name", owned_kind::conversation, 2},
        {"GET", "/conversations/*/variables", owned_kind::conversation, 2},
        {"PUT", "/conversations/*/variables/*", owned_kind::conversation, 2},
    };
    std::vector<owned_reference> out;
    // Most requests name nothing: only paths with one of these parts can.
    const bool may_name = path.find("/stop") != std::string_view::npos || path.starts_with("/workflows/run/") ||
                          path.starts_with("/files/") || path.starts_with("/conversations/") || path == "/messages";
    if (!may_name) return out;
    for (const auto& p : patterns) {
        if (p.method != method || !matches(p.path, path)) continue;
        out.emplace_back(p.kind, normalized_id(split(path, '/')[p.segment]));
        break;
    }
    if (method == "GET" && matches("/messages", path)) {
        for (auto part : split(query, '&')) {
            auto eq = part.find('=');
            if (eq == std::string_view::npos) continue;
            auto key = form_decode(part.substr(0, eq));
            auto value = form_decode(part.substr(eq + 1));
            if (key && *key == "conversation_id" && value && !value->empty())
                out.emplace_back(owned_kind::conversation, to_lower(*value));
        }
    }
    return out;
}

} // namespace gw::core
