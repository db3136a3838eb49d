#include "core/openai_chat.hpp"

#include "core/key_hash.hpp"

#include <boost/json.hpp>

namespace gw::core::openai {

namespace json = boost::json;

std::string error_body(const api_error& e)
{
    json::object inner{
        {"message", e.message},
        {"type", e.type},
        {"param", e.param.empty() ? json::value(nullptr) : json::value(e.param)},
        {"code", e.code.empty() ? json::value(nullptr) : json::value(e.code)}};
    return json::serialize(json::object{{"error", std::move(inner)}}) + "\n";
}

std::string chat_request::instructions() const
{
    std::string out;
    for (const auto& m : messages) {
        if (m.role != "system" && m.role != "developer") continue;
        if (!out.empty()) out += '\n';
        out += m.text;
    }
    return out;
}

namespace {

api_error invalid(std::string param, std::string message)
{
    return {400, "invalid_request_error", "", std::move(param), std::move(message)};
}

// A message's content: a string, an array of parts (text, image_url), or null (an
// assistant message that only called tools).
bool read_content(const json::value& content, message& out, const std::string& param, api_error& err)
{
    if (content.is_null()) return true;
    if (content.is_string()) {
        out.text = std::string(content.get_string());
        return true;
    }
    if (!content.is_array()) {
        err = invalid(param, "content must be a string or an array of content parts.");
        return false;
    }
    for (std::size_t i = 0; i < content.get_array().size(); ++i) {
        const auto& part = content.get_array()[i];
        const auto where = param + "[" + std::to_string(i) + "]";
        const auto* obj = part.if_object();
        const auto* type = obj ? obj->if_contains("type") : nullptr;
        if (!type || !type->is_string()) {
            err = invalid(where, "Each content part needs a type.");
            return false;
        }
        if (type->get_string() == "text") {
            const auto* text = obj->if_contains("text");
            if (!text || !text->is_string()) {
                err = invalid(where + ".text", "A text part needs a string text.");
                return false;
            }
            if (!out.text.empty()) out.text += '\n';
            out.text += text->get_string();
        } else if (type->get_string() == "image_url") {
            const auto* image = obj->if_contains("image_url");
            const auto* url = image && image->is_object() ? image->get_object().if_contains("url") : nullptr;
            if (!url || !url->is_string() || url->get_string().empty()) {
                err = invalid(where + ".image_url.url", "An image part needs a URL.");
                return false;
            }
            out.images.emplace_back(url->get_string());
        } else {
            err = invalid(
                where + ".type", "Content parts of type '" + std::string(type->get_string()) +
                                     "' are not supported here (text and image_url are)."
            );
            return false;
        }
    }
    return true;
}

bool read_messages(const json::value* v, std::vector<message>& out, api_error& err)
{
    if (!v || !v->is_array() || v->get_array().empty()) {
        err = invalid("messages", "messages must be a non-empty array.");
        return false;
    }
    for (std::size_t i = 0; i < v->get_array().size(); ++i) {
        const auto param = "messages[" + std::to_string(i) + "]";
        const auto* obj = v->get_array()[i].if_object();
        const auto* role = obj ? obj->if_contains("role") : nullptr;
        if (!role || !role->is_string()) {
            err = invalid(param + ".role", "Each message needs a role.");
            return false;
        }
        message m;
        m.role = std::string(role->get_string());
        if (m.role != "system" && m.role != "developer" && m.role != "user" && m.role != "assistant" &&
            m.role != "tool") {
            err = invalid(param + ".role", "Unknown role '" + m.role + "'.");
            return false;
        }
        const auto* content = obj->if_contains("content");
        if (!read_content(content ? *content : json::value(nullptr), m, param + ".content", err))
            return false;
        out.push_back(std::move(m));
    }
    if (out.back().role != "user") {
        err = invalid("messages", "The last message must be the user's: it is the turn Dify answers.");
        return false;
    }
    if (out.back().text.empty() && out.back().images.empty()) {
        err = invalid("messages", "The last user message is empty.");
        return false;
    }
    return true;
}

} // namespace

std::optional<chat_request> parse_chat_request(std::string_view body, api_error& err)
{
    json::error_code ec;
    auto doc = json::parse(body, ec);
    if (ec || !doc.is_object()) {
        err = invalid("", "The request body must be a JSON object.");
        return std::nullopt;
    }
    const auto& o = doc.get_object();
    chat_request r;
    const auto* model = o.if_contains("model");
    if (!model || !model->is_string() || model->get_string().empty()) {
        err = invalid("model", "model must name an app (GET /models lists them).");
        return std::nullopt;
    }
    r.model = std::string(model->get_string());
    if (const auto* stream = o.if_contains("stream"); stream && !stream->is_null()) {
        if (!stream->is_bool()) {
            err = invalid("stream", "stream must be true or false.");
            return std::nullopt;
        }
        r.stream = stream->get_bool();
    }
    if (const auto* opts = o.if_contains("stream_options"); opts && opts->is_object())
        if (const auto* usage = opts->get_object().if_contains("include_usage"); usage && usage->is_bool())
            r.include_usage = usage->get_bool();
    if (const auto* user = o.if_contains("user"); user && !user->is_null()) {
        if (!user->is_string()) {
            err = invalid("user", "user must be a string.");
            return std::nullopt;
        }
        r.user = std::string(user->get_string());
    }
    if (const auto* n = o.if_contains("n");
        n && !n->is_null() && !(n->is_number() && n->to_number<double>() == 1)) {
        err = invalid("n", "Only one choice (n = 1) is supported.");
        return std::nullopt;
    }
    if (!read_messages(o.if_contains("messages"), r.messages, err)) return std::nullopt;
    return r;
}

namespace {

void append_turn(
    json::array& out, std::string_view role, std::string_view text, const std::vector<std::string>& images
)
{
    json::array imgs;
    for (const auto& i : images)
        imgs.emplace_back(i);
    out.emplace_back(json::array{json::string(role), json::string(text), std::move(imgs)});
}

} // namespace

std::string history_digest(const std::vector<message>& messages, std::size_t turns)
{
    json::array canonical;
    for (std::size_t i = 0; i < turns && i < messages.size(); ++i) {
        const auto& m = messages[i];
        if (m.role == "system" || m.role == "developer") continue;
        append_turn(canonical, m.role, m.text, m.images);
    }
    return sha256_hex(json::serialize(canonical));
}

std::string digest_after_answer(const chat_request& r, std::string_view answer)
{
    json::array canonical;
    for (const auto& m : r.messages)
        if (m.role != "system" && m.role != "developer") append_turn(canonical, m.role, m.text, m.images);
    append_turn(canonical, "assistant", answer, {});
    return sha256_hex(json::serialize(canonical));
}

std::string prior_turns_as_context(const chat_request& r)
{
    std::string out;
    for (std::size_t i = 0; i + 1 < r.messages.size(); ++i) {
        const auto& m = r.messages[i];
        if (m.role != "user" && m.role != "assistant") continue;
        out += m.role;
        out += ": ";
        out += m.text;
        out += '\n';
    }
    return out;
}

boost::json::object dify_body(
    const chat_request& r,
    const app_mapping& m,
    std::string_view dify_user,
    std::string_view conversation_id,
    std::string_view context,
    boost::json::array files
)
{
    json::object inputs;
    if (!m.instructions_input.empty())
        if (auto text = r.instructions(); !text.empty()) inputs[m.instructions_input] = text;
    std::string text = context.empty() ? r.newest().text : std::string(context) + "user: " + r.newest().text;
    json::object body{{"user", dify_user}, {"response_mode", "streaming"}};
    if (m.app == app_mapping::kind::chat) {
        body["query"] = std::move(text);
        if (!conversation_id.empty()) body["conversation_id"] = conversation_id;
    } else {
        inputs[m.text_input.empty() ? "query" : m.text_input] = std::move(text);
        if (m.app == app_mapping::kind::completion) body["query"] = "";
    }
    body["inputs"] = std::move(inputs);
    if (!files.empty()) body["files"] = std::move(files);
    return body;
}

} // namespace gw::core::openai
