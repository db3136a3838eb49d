#include "core/openai_stream.hpp"

#include <boost/json.hpp>

namespace gw::core::openai {

namespace json = boost::json;

namespace {

std::string frame(const json::value& v)
{
    return "data: " + json::serialize(v) + "\n\n";
}

std::int64_t integer(const json::object& o, std::string_view key)
{
    const auto* v = o.if_contains(key);
    if (!v) return 0;
    if (v->is_int64()) return v->get_int64();
    if (v->is_uint64()) return static_cast<std::int64_t>(v->get_uint64());
    if (v->is_double()) return static_cast<std::int64_t>(v->get_double());
    return 0;
}

std::string_view text_of(const json::object& o, std::string_view key)
{
    const auto* v = o.if_contains(key);
    return v && v->is_string() ? std::string_view(v->get_string()) : std::string_view();
}

const json::object* object_of(const json::object& o, std::string_view key)
{
    const auto* v = o.if_contains(key);
    return v ? v->if_object() : nullptr;
}

// Dify's error event (or a failed run) as the OpenAI error a client's SDK understands:
// Dify's 4xx are the request's fault, anything else the server's.
api_error from_dify(std::string_view code, int status, std::string_view message)
{
    api_error e;
    e.status = status >= 400 && status < 500 ? 400 : 500;
    e.type = e.status == 400 ? "invalid_request_error" : "server_error";
    e.code = std::string(code);
    e.message = std::string(message);
    return e;
}

json::value usage_json(const token_usage& u)
{
    return json::object{
        {"prompt_tokens", u.prompt}, {"completion_tokens", u.completion}, {"total_tokens", u.total}};
}

} // namespace

completion_translator::completion_translator(options o) : o_(std::move(o)) {}

json::object completion_translator::envelope(const char* object, json::array choices) const
{
    return json::object{
        {"id", o_.id}, {"object", object}, {"created", o_.created}, {"model", o_.model}, {"choices", std::move(choices)}};
}

std::string completion_translator::chunk(json::object delta, const char* finish_reason)
{
    json::object choice{
        {"index", 0},
        {"delta", std::move(delta)},
        {"finish_reason", finish_reason ? json::value(finish_reason) : json::value(nullptr)}};
    auto c = envelope("chat.completion.chunk", json::array{std::move(choice)});
    if (o_.include_usage) c["usage"] = nullptr; // every chunk but the usage chunk, as OpenAI does
    return frame(c);
}

std::string completion_translator::content_frame(std::string_view text)
{
    if (!o_.stream || text.empty()) return {};
    json::object delta{{"content", text}};
    if (!role_sent_) {
        delta["role"] = "assistant";
        role_sent_ = true;
    }
    return chunk(std::move(delta), nullptr);
}

std::string completion_translator::error_frame()
{
    if (!o_.stream) return {};
    auto body = error_body(*error_);
    body.pop_back(); // error_body ends with a newline
    return "data: " + body + "\n\n";
}

void completion_translator::take_workflow_end(const json::object& data)
{
    if (text_of(data, "status") != "succeeded") {
        auto why = text_of(data, "error");
        error_ = from_dify(
            "workflow_failed", 500, "The workflow run failed: " + std::string(why.empty() ? "no detail" : why)
        );
        return;
    }
    usage_ = token_usage{0, 0, integer(data, "total_tokens")};
    finished_ = true;
    if (streamed_text_) return;
    const auto* outputs = object_of(data, "outputs");
    if (!outputs) return;
    if (!o_.output.empty()) {
        const auto* v = outputs->if_contains(o_.output);
        answer_ = !v ? "" : v->is_string() ? std::string(v->get_string()) : json::serialize(*v);
    } else if (outputs->size() == 1 && outputs->begin()->value().is_string()) {
        answer_ = std::string(outputs->begin()->value().get_string());
    } else if (!outputs->empty()) {
        answer_ = json::serialize(*outputs);
    }
}

std::string completion_translator::on_event(std::string_view data)
{
    if (ended_) return {};
    json::error_code ec;
    auto doc = json::parse(data, ec);
    if (ec || !doc.is_object()) return {}; // not an event (malformed): nothing to relay
    const auto& e = doc.get_object();
    const auto event = text_of(e, "event");
    if (auto conversation = text_of(e, "conversation_id"); !conversation.empty() && conversation_id_.empty())
        conversation_id_ = std::string(conversation);

    if (event == "message" || event == "agent_message") {
        auto delta = text_of(e, "answer");
        answer_ += delta;
        return content_frame(delta);
    }
    if (event == "text_chunk" && o_.app == app_mapping::kind::workflow) {
        const auto* d = object_of(e, "data");
        auto delta = d ? text_of(*d, "text") : std::string_view();
        answer_ += delta;
        streamed_text_ = streamed_text_ || !delta.empty();
        return content_frame(delta);
    }
    if (event == "message_replace") {
        // A stream's client keeps what it was sent, then the replacement; a blocking one gets
        // the replacement alone. answer() is what the client has (the next turn resends it).
        const auto replacement = text_of(e, "answer");
        finish_reason_ = "content_filter";
        if (!o_.stream) {
            answer_ = std::string(replacement);
            return {};
        }
        answer_ += replacement;
        return content_frame(replacement);
    }
    if (event == "message_end" && o_.app != app_mapping::kind::workflow) {
        if (const auto* meta = object_of(e, "metadata"))
            if (const auto* u = object_of(*meta, "usage"))
                usage_ = token_usage{
                    integer(*u, "prompt_tokens"), integer(*u, "completion_tokens"),
                    integer(*u, "total_tokens")};
        finished_ = true;
        return {};
    }
    if (event == "workflow_finished" && o_.app == app_mapping::kind::workflow) {
        if (const auto* d = object_of(e, "data")) take_workflow_end(*d);
        if (error_) {
            ended_ = true;
            return error_frame();
        }
        return streamed_text_ ? std::string() : content_frame(answer_);
    }
    if (event == "error") {
        error_ = from_dify(text_of(e, "code"), static_cast<int>(integer(e, "status")), text_of(e, "message"));
        finished_ = false;
        ended_ = true;
        return error_frame();
    }
    return {}; // agent thoughts, node and workflow progress, files, TTS, pings: not content
}

std::string completion_translator::on_end()
{
    if (ended_) return {};
    ended_ = true;
    if (!finished_) {
        error_ = api_error{
            500, "server_error", "upstream_incomplete", "",
            "Dify's stream ended before the answer was complete."};
        return error_frame();
    }
    if (!o_.stream) return {};
    std::string out;
    json::object last_delta;
    if (!role_sent_) { // an empty answer still names its role
        last_delta["role"] = "assistant";
        last_delta["content"] = "";
        role_sent_ = true;
    }
    out += chunk(std::move(last_delta), finish_reason_);
    if (o_.include_usage) {
        auto c = envelope("chat.completion.chunk", json::array{});
        c["usage"] = usage_ ? usage_json(*usage_) : json::value(nullptr);
        out += frame(c);
    }
    out += "data: [DONE]\n\n";
    return out;
}

std::string completion_translator::on_failure(std::string_view code, std::string_view message)
{
    if (ended_) return {};
    if (finished_) return on_end(); // the answer was complete (message_end) before Dify broke off
    ended_ = true;
    finished_ = false;
    error_ = api_error{500, "server_error", std::string(code), "", std::string(message)};
    return error_frame();
}

json::object completion_translator::completion() const
{
    json::object message{{"role", "assistant"}, {"content", answer_}};
    json::object choice{{"index", 0}, {"message", std::move(message)}, {"finish_reason", finish_reason_}};
    auto c = envelope("chat.completion", json::array{std::move(choice)});
    c["usage"] = usage_ ? usage_json(*usage_) : json::value(nullptr);
    return c;
}

} // namespace gw::core::openai
