#include "core/stream_facts.hpp"

#include <boost/json.hpp>

namespace gw::core {

namespace json = boost::json;

namespace {

std::string string_at(const json::object& o, std::string_view key)
{
    auto* v = o.if_contains(key);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

std::optional<std::int64_t> int_at(const json::value* v)
{
    if (!v) return std::nullopt;
    if (v->is_int64()) return v->get_int64();
    if (v->is_uint64()) return static_cast<std::int64_t>(v->get_uint64());
    if (v->is_double()) return static_cast<std::int64_t>(v->get_double());
    return std::nullopt;
}

const json::value* path(const json::object& o, std::initializer_list<std::string_view> keys)
{
    const json::value* v = nullptr;
    const json::object* cur = &o;
    for (auto k : keys) {
        if (!cur) return nullptr;
        v = cur->if_contains(k);
        if (!v) return nullptr;
        cur = v->is_object() ? &v->get_object() : nullptr;
    }
    return v;
}

} // namespace

void stream_facts::observe(const sse_event& e)
{
    ++events_;
    if (e.data.empty()) return; // ping, comment
    json::error_code ec;
    auto v = json::parse(e.data, ec);
    if (ec || !v.is_object()) {
        ++malformed_;
        return;
    }
    const auto& o = v.get_object();
    auto event = string_at(o, "event");
    if (task_id_.empty()) task_id_ = string_at(o, "task_id");
    if (conversation_id_.empty()) conversation_id_ = string_at(o, "conversation_id");
    if (workflow_run_id_.empty()) workflow_run_id_ = string_at(o, "workflow_run_id");
    if (event == "message_end") {
        if (auto t = int_at(path(o, {"metadata", "usage", "total_tokens"}))) total_tokens_ = t;
        finished_ = true;
    } else if (event == "workflow_finished") {
        // Chatflows report usage in both; message_end's value is the same run's total.
        if (!total_tokens_)
            if (auto t = int_at(path(o, {"data", "total_tokens"}))) total_tokens_ = t;
        finished_ = true;
    } else if (event == "error") {
        stream_error err{string_at(o, "code"), static_cast<int>(int_at(o.if_contains("status")).value_or(0)), string_at(o, "message")};
        error_ = std::move(err);
        finished_ = true;
    }
}

void stream_facts::observe_json_body(std::string_view body)
{
    json::error_code ec;
    auto v = json::parse(body, ec);
    if (ec || !v.is_object()) return;
    const auto& o = v.get_object();
    task_id_ = string_at(o, "task_id");
    conversation_id_ = string_at(o, "conversation_id");
    workflow_run_id_ = string_at(o, "workflow_run_id");
    if (auto t = int_at(path(o, {"metadata", "usage", "total_tokens"})))
        total_tokens_ = t;
    else if (auto w = int_at(path(o, {"data", "total_tokens"})))
        total_tokens_ = w;
    finished_ = true;
}

} // namespace gw::core
