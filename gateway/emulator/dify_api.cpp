#include "gateway/emulator/dify_api.hpp"

#include "core/text.hpp"

#include <boost/json.hpp>

#include <ctime>

namespace gw::emulator {

namespace json = boost::json;

bool is_uuid(std::string_view s)
{
    if (s.size() != 36) return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return true;
}

std::string iso_time(std::int64_t t)
{
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    return buf;
}

reply invalid_param(std::string_view message)
{
    return error_reply(400, "invalid_param", message);
}

reply not_found(std::string_view message)
{
    return error_reply(404, "not_found", message);
}

reply not_chat_app()
{
    return error_reply(400, "not_chat_app", "Please check if your app mode matches the right API route.");
}

std::optional<reply> mode_mismatch(const app_def& app, std::string_view kind)
{
    if (kind == "chat" && !app.is_chat()) return not_chat_app();
    if (kind == "completion" && app.mode != "completion")
        return error_reply(400, "app_unavailable", "App unavailable, please check your app configurations.");
    if (kind == "workflow" && app.mode != "workflow")
        return error_reply(400, "not_workflow_app", "Please check if your app mode matches the right API route.");
    return std::nullopt;
}

reply pydantic_error(std::string_view model, std::string_view field, std::string_view text, std::string_view type)
{
    return invalid_param(
        "1 validation error for " + std::string(model) + "\n" + std::string(field) + "\n  " + std::string(text) +
        " [type=" + std::string(type) + "]"
    );
}

reply pydantic_missing(std::string_view model, std::string_view field)
{
    return pydantic_error(model, field, "Field required", "missing");
}

namespace {

std::vector<std::string> segments_of(std::string_view path)
{
    std::vector<std::string> out;
    for (auto s : core::split(path, '/'))
        if (!s.empty()) out.emplace_back(s);
    return out;
}

bool matches(const dify_api::route& r, const std::vector<std::string>& segs, std::vector<std::string>& params)
{
    if (r.segments.size() != segs.size()) return false;
    params.clear();
    for (std::size_t i = 0; i < segs.size(); ++i) {
        if (r.segments[i] == "{}")
            params.push_back(segs[i]);
        else if (r.segments[i] != segs[i])
            return false;
    }
    return true;
}

std::string_view bearer_token(std::string_view header, std::optional<reply>& error)
{
    auto space = header.find(' ');
    if (header.empty() || space == std::string_view::npos) {
        error = error_reply(401, "unauthorized", "Authorization header must be provided and start with 'Bearer'");
        return {};
    }
    if (!core::iequals(header.substr(0, space), "bearer")) {
        error = error_reply(401, "unauthorized", "Authorization scheme must be 'Bearer'");
        return {};
    }
    return core::trim(header.substr(space + 1));
}

} // namespace

std::string_view bearer_key(const request& req)
{
    std::optional<reply> error;
    auto token = bearer_token(req.header("Authorization"), error);
    return error ? std::string_view{} : token;
}

dify_api::dify_api(std::shared_ptr<store> st, api_options opts) : store_(std::move(st)), opts_(opts)
{
    using u = user_place;
    auto add = [this](std::string method, std::string_view path, handler fn, u place, bool required) {
        routes_.push_back(route{std::move(method), segments_of(path), fn, place, required});
    };
    add("POST", "/v1/chat-messages", &dify_api::chat_messages, u::json_body, true);
    add("POST", "/v1/completion-messages", &dify_api::completion_messages, u::json_body, true);
    add("POST", "/v1/workflows/run", &dify_api::workflows_run, u::json_body, true);
    add("POST", "/v1/workflows/{}/run", &dify_api::workflows_run_version, u::json_body, true);
    add("POST", "/v1/chat-messages/{}/stop", &dify_api::stop_chat, u::json_body, true);
    add("POST", "/v1/completion-messages/{}/stop", &dify_api::stop_completion, u::json_body, true);
    add("POST", "/v1/workflows/tasks/{}/stop", &dify_api::stop_workflow, u::json_body, true);
    add("GET", "/v1/workflows/run/{}", &dify_api::workflow_run_detail, u::none, false);
    add("GET", "/v1/workflows/logs", &dify_api::workflow_logs, u::none, false);
    add("GET", "/v1/conversations", &dify_api::conversations_list, u::query, false);
    add("DELETE", "/v1/conversations/{}", &dify_api::conversation_delete, u::json_body, false);
    add("POST", "/v1/conversations/{}/name", &dify_api::conversation_rename, u::json_body, false);
    add("GET", "/v1/conversations/{}/variables", &dify_api::conversation_variables, u::query, false);
    add("PUT", "/v1/conversations/{}/variables/{}", &dify_api::conversation_variable_update, u::json_body, false);
    add("GET", "/v1/messages", &dify_api::messages_list, u::query, false);
    add("POST", "/v1/messages/{}/feedbacks", &dify_api::message_feedback, u::json_body, true);
    add("GET", "/v1/messages/{}/suggested", &dify_api::message_suggested, u::query, true);
    add("GET", "/v1/app/feedbacks", &dify_api::app_feedbacks, u::none, false);
    add("POST", "/v1/files/upload", &dify_api::files_upload, u::form, false);
    add("GET", "/v1/files/{}/preview", &dify_api::file_preview, u::query, false);
    add("POST", "/v1/audio-to-text", &dify_api::audio_to_text, u::form, false);
    add("POST", "/v1/text-to-audio", &dify_api::text_to_audio, u::json_body, false);
    add("GET", "/v1/info", &dify_api::info, u::none, false);
    add("GET", "/v1/parameters", &dify_api::parameters, u::none, false);
    add("GET", "/v1/meta", &dify_api::meta, u::none, false);
    add("GET", "/v1/site", &dify_api::site, u::none, false);
    add("GET", "/v1/end-users/{}", &dify_api::end_user_detail, u::none, false);
}

const app_def* dify_api::app_for(const request& req) const
{
    return store_->app_by_key(bearer_key(req));
}

reply dify_api::handle(const request& req, request_facts& facts)
{
    auto segs = segments_of(req.path);
    // Unauthenticated index routes.
    if (segs.size() == 1 && segs[0] == "v1" && req.method == "GET")
        return json_reply(200, json::object{{"welcome", "Dify OpenAPI"}, {"api_version", "v1"}, {"server_version", dify_version}});
    if (segs.size() == 1 && segs[0] == "health" && req.method == "GET")
        return json_reply(200, json::object{{"pid", 1}, {"status", "ok"}, {"version", dify_version}});

    std::vector<std::string> params;
    const route* found = nullptr;
    bool path_known = false;
    for (const auto& r : routes_) {
        if (!matches(r, segs, params)) continue;
        path_known = true;
        if (r.method == req.method) {
            found = &r;
            break;
        }
    }
    if (!found && path_known)
        return error_reply(405, "method_not_allowed", "The method is not allowed for the requested URL.");
    if (!found) return html_not_found();
    matches(*found, segs, params); // params of the chosen route

    std::optional<reply> auth_error;
    auto token = bearer_token(req.header("Authorization"), auth_error);
    facts.app_key = std::string(token);
    if (auth_error) {
        auth_error->headers.emplace_back("WWW-Authenticate", "Bearer realm=\"api\"");
        return *auth_error;
    }
    const app_def* app = store_->app_by_key(token);
    if (!app) {
        auto r = error_reply(401, "unauthorized", "Access token is invalid");
        r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"api\"");
        return r;
    }
    facts.app_name = app->name;
    if (!app->enable_api) return error_reply(403, "forbidden", "The app's API service has been disabled.");

    call c{req, *app, std::move(params), {}, {}, nullptr};
    std::optional<std::string> user;
    switch (found->place) {
    case user_place::none: break;
    case user_place::json_body: {
        if (!core::is_json_media_type(req.header("Content-Type"))) // Flask's request.is_json
            return error_reply(
                415, "unsupported_media_type",
                "Did not attempt to load JSON data because the request Content-Type was not 'application/json'."
            );
        json::error_code ec;
        auto doc = json::parse(req.body, ec);
        if (ec || !doc.is_object())
            return error_reply(400, "bad_request", "Invalid JSON payload received or JSON payload is empty.");
        c.body = std::move(doc.get_object());
        if (auto* v = c.body.if_contains("user"); v && v->is_string() && !v->get_string().empty())
            user = std::string(v->get_string());
        facts.user_source = "body";
        break;
    }
    case user_place::query:
        user = req.query_param("user");
        if (user && user->empty()) user.reset();
        facts.user_source = "query";
        break;
    case user_place::form: {
        auto boundary = core::header_param(req.header("Content-Type"), "boundary");
        const auto type = core::media_type(req.header("Content-Type"));
        if (type == "multipart/form-data" && boundary)
            c.form = core::parse_multipart(req.body, *boundary);
        else
            c.form.error = "not multipart/form-data";
        for (const auto& p : c.form.parts)
            if (p.name == "user" && !p.filename && !p.data.empty() && !user) user = std::string(p.data); // Werkzeug: the first
        if (type == "application/x-www-form-urlencoded") { // Werkzeug reads these forms too (no files in them)
            for (auto pair : core::split(req.body, '&')) {
                auto eq = pair.find('=');
                auto key = core::form_decode(pair.substr(0, eq));
                if (!key || *key != "user" || eq == std::string_view::npos || user) continue;
                if (auto value = core::form_decode(pair.substr(eq + 1)); value && !value->empty()) user = *value;
            }
        }
        facts.user_source = "form";
        break;
    }
    }
    if (found->place != user_place::none) {
        if (!user) facts.user_source.clear();
        if (!user && found->user_required) return invalid_param("Arg user must be provided.");
        facts.user = user.value_or("");
        c.user = &store_->end_user(*app, user.value_or("DEFAULT-USER"));
    }
    return (this->*(found->fn))(c);
}

} // namespace gw::emulator
