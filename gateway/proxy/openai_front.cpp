#include "gateway/proxy/openai_front.hpp"

#include "core/key_hash.hpp"

#include <boost/json.hpp>

#include <cctype>

namespace gw::gateway {

namespace json = boost::json;

core::openai::api_error openai_error(const gateway_error& e)
{
    core::openai::api_error out;
    out.status = e.status;
    out.message = e.message;
    out.code = e.code;
    switch (e.status) {
    case 401:
        out.code = "invalid_api_key";
        break;
    case 429:
        out.type = e.code == "quota_exceeded" ? "insufficient_quota" : "requests";
        out.code = e.code == "quota_exceeded" ? "insufficient_quota" : "rate_limit_exceeded";
        break;
    default:
        if (e.status >= 500) out.type = "server_error";
    }
    return out;
}

core::openai::api_error openai_error_of_dify(int status, std::string_view body)
{
    gateway_error e{status, "upstream_error", "Dify answered " + std::to_string(status) + "."};
    json::error_code ec;
    auto doc = json::parse(body, ec);
    if (!ec && doc.is_object()) {
        if (const auto* c = doc.get_object().if_contains("code"); c && c->is_string())
            e.code = std::string(c->get_string());
        if (const auto* m = doc.get_object().if_contains("message"); m && m->is_string())
            e.message = std::string(m->get_string());
    }
    if (status == 401 || status == 403)
        return {
            502, "server_error", "upstream_auth_failed", "", "Dify refused the gateway's key for this app."};
    auto out = openai_error(e);
    if (status == 429 && e.code != "quota_exceeded") out.code = e.code; // Dify's own rate_limit_error
    return out;
}

std::string openai_models_body(const tenant& t, std::int64_t created)
{
    json::array data;
    for (const auto& app : t.cfg->apps)
        data.push_back(json::object{
            {"id", app}, {"object", "model"}, {"created", created}, {"owned_by", "dify"}});
    return json::serialize(json::object{{"object", "list"}, {"data", std::move(data)}}) + "\n";
}

core::openai::app_mapping openai_mapping(const config::app_config& a)
{
    core::openai::app_mapping m;
    switch (a.openai.type) {
    case config::openai_app_kind::chat:
        m.app = core::openai::app_mapping::kind::chat;
        break;
    case config::openai_app_kind::workflow:
        m.app = core::openai::app_mapping::kind::workflow;
        break;
    case config::openai_app_kind::completion:
        m.app = core::openai::app_mapping::kind::completion;
        break;
    }
    m.instructions_input = a.openai.instructions_input;
    m.text_input = a.openai.text_input;
    m.output = a.openai.output;
    return m;
}

std::optional<std::string> canonical_conversation_id(std::string_view id)
{
    if (id.size() != 36) return std::nullopt;
    std::string out(id);
    for (std::size_t i = 0; i < out.size(); ++i) {
        const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        const char c = out[i];
        if (dash != (c == '-')) return std::nullopt;
        if (!dash && !std::isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
        out[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return out;
}

std::string conversation_scope(std::string_view tenant, std::string_view app, std::string_view user)
{
    std::string scope(tenant);
    scope.push_back('\0');
    scope += app;
    scope.push_back('\0');
    scope += user;
    return scope;
}

app_target files_upload_target(app_target turn)
{
    const std::vector<std::string> path{"files", "upload"};
    turn.wire_path = core::encode_path(path);
    turn.dify_path = "/files/upload";
    turn.match = core::find_route("POST", path);
    return turn;
}

std::string conversation_key(std::string_view scope, std::string_view digest)
{
    std::string material(scope);
    material.push_back('\0');
    material += digest;
    return core::sha256_hex(material);
}

} // namespace gw::gateway
