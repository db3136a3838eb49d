// Resource endpoints: conversations, messages, feedback, files, audio and app info.
// Lists are scoped to (app, end user) exactly as Dify scopes them.
#include "core/text.hpp"
#include "gateway/emulator/dify_api.hpp"

#include <boost/json.hpp>

#include <algorithm>

namespace gw::emulator {

namespace json = boost::json;

namespace {

// Parses a `limit` query parameter (1..max, default 20); nullopt when out of range.
std::optional<int> limit_param(const request& req, int max)
{
    auto v = req.query_param("limit");
    if (!v || v->empty()) return 20;
    char* end = nullptr;
    long n = std::strtol(v->c_str(), &end, 10);
    if (*end != '\0' || n < 1 || n > max) return std::nullopt;
    return static_cast<int>(n);
}

json::value conversation_json(const conversation_rec& c)
{
    return json::object{{"id", c.id}, {"name", c.name}, {"inputs", c.inputs}, {"status", "normal"},
                        {"introduction", ""}, {"created_at", c.created_at}, {"updated_at", c.updated_at}};
}

json::value message_json(const message_rec& m)
{
    json::array files;
    for (const auto& id : m.file_ids)
        files.push_back(json::object{{"id", id}, {"type", "document"}, {"url", "/files/" + id + "/file-preview"},
                                     {"belongs_to", "user"}});
    return json::object{
        {"id", m.id},
        {"conversation_id", m.conversation_id},
        {"parent_message_id", nullptr},
        {"inputs", m.inputs},
        {"query", m.query},
        {"answer", m.answer},
        {"feedback", m.rating ? json::value(json::object{{"rating", *m.rating}}) : json::value(nullptr)},
        {"retriever_resources", json::array()},
        {"created_at", m.created_at},
        {"agent_thoughts", json::array()},
        {"message_files", files},
        {"status", m.status},
        {"error", nullptr},
        {"extra_contents", json::array()},
    };
}

std::string extension_of(std::string_view name)
{
    auto dot = name.rfind('.');
    return dot == std::string_view::npos ? std::string() : core::to_lower(name.substr(dot + 1));
}

// Upload size limit in bytes by extension class.
std::size_t upload_limit(const std::string& ext)
{
    static const std::vector<std::string> image{"jpg", "jpeg", "png", "webp", "gif", "svg"};
    static const std::vector<std::string> video{"mp4", "mov", "mpeg", "webm"};
    static const std::vector<std::string> audio{"mp3", "m4a", "wav", "amr", "mpga"};
    auto in = [&](const std::vector<std::string>& v) { return std::find(v.begin(), v.end(), ext) != v.end(); };
    std::size_t mb = in(image) ? 10 : in(video) ? 100 : in(audio) ? 50 : 15;
    return mb * 1024 * 1024;
}

const core::multipart_part* file_part(const core::multipart_result& form, int& count)
{
    const core::multipart_part* found = nullptr;
    count = 0;
    for (const auto& p : form.parts) {
        if (p.name == "file" && p.filename) {
            ++count;
            if (!found) found = &p;
        }
    }
    return found;
}

} // namespace

reply dify_api::conversations_list(call& c)
{
    if (!c.app.is_chat()) return not_chat_app();
    auto limit = limit_param(c.req, 100);
    if (!limit) return invalid_param("limit must be between 1 and 100");
    auto sort_by = c.req.query_param("sort_by").value_or("-updated_at");
    if (sort_by != "created_at" && sort_by != "-created_at" && sort_by != "updated_at" && sort_by != "-updated_at")
        return invalid_param("sort_by must be one of created_at, -created_at, updated_at, -updated_at");
    auto list = store_->conversations_of(c.app, *c.user);
    bool by_created = sort_by.find("created_at") != std::string::npos;
    bool desc = sort_by.front() == '-';
    std::stable_sort(list.begin(), list.end(), [&](auto* a, auto* b) {
        auto ka = by_created ? a->created_at : a->updated_at;
        auto kb = by_created ? b->created_at : b->updated_at;
        return desc ? ka > kb : ka < kb;
    });
    std::size_t start = 0;
    if (auto last = c.req.query_param("last_id"); last && !last->empty()) {
        auto it = std::find_if(list.begin(), list.end(), [&](auto* x) { return x->id == *last; });
        if (it == list.end()) return not_found("Last Conversation Not Exists.");
        start = static_cast<std::size_t>(it - list.begin()) + 1;
    }
    json::array data;
    for (std::size_t i = start; i < list.size() && data.size() < static_cast<std::size_t>(*limit); ++i)
        data.push_back(conversation_json(*list[i]));
    bool has_more = start + data.size() < list.size();
    return json_reply(200, json::object{{"limit", *limit}, {"has_more", has_more}, {"data", data}});
}

reply dify_api::conversation_delete(call& c)
{
    if (!c.app.is_chat()) return not_chat_app();
    if (!store_->delete_conversation(c.app, *c.user, c.params[0])) return not_found("Conversation Not Exists.");
    reply r;
    r.status = 204; // Dify >= 1.13.1: empty body
    r.content_type.clear();
    return r;
}

reply dify_api::conversation_rename(call& c)
{
    if (!c.app.is_chat()) return not_chat_app();
    auto* conv = store_->find_conversation(c.app, *c.user, c.params[0]);
    bool auto_generate = false;
    if (auto* a = c.body.if_contains("auto_generate"); a && a->is_bool()) auto_generate = a->get_bool();
    std::string name;
    if (auto* n = c.body.if_contains("name"); n && n->is_string()) name = std::string(n->get_string());
    if (!auto_generate && core::trim(name).empty()) return invalid_param("name is required when auto_generate is false");
    if (!conv || conv->hidden) return not_found("Conversation Not Exists.");
    if (auto_generate) name = conv->messages.empty() ? "New conversation" : "About: " + conv->messages.front().query.substr(0, 30);
    conv->name = name;
    conv->updated_at = store_->now();
    return json_reply(200, conversation_json(*conv));
}

reply dify_api::conversation_variables(call& c)
{
    if (!c.app.is_chat()) return not_chat_app();
    auto* conv = store_->find_conversation(c.app, *c.user, c.params[0]);
    if (!conv || conv->hidden) return not_found("Conversation Not Exists.");
    auto limit = limit_param(c.req, 100);
    if (!limit) return invalid_param("limit must be between 1 and 100");
    auto name_filter = c.req.query_param("variable_name");
    json::array data;
    for (const auto& v : conv->variables) {
        if (name_filter && !name_filter->empty() && v.name != *name_filter) continue;
        data.push_back(json::object{{"id", v.id}, {"name", v.name}, {"value_type", v.value_type}, {"value", v.value},
                                    {"description", v.description}, {"created_at", v.created_at}, {"updated_at", v.updated_at}});
    }
    return json_reply(200, json::object{{"limit", *limit}, {"has_more", false}, {"data", data}});
}

reply dify_api::conversation_variable_update(call& c)
{
    if (!c.app.is_chat()) return not_chat_app();
    auto* conv = store_->find_conversation(c.app, *c.user, c.params[0]);
    if (!conv || conv->hidden) return not_found("Conversation Not Exists.");
    auto it = std::find_if(conv->variables.begin(), conv->variables.end(), [&](auto& v) { return v.id == c.params[1]; });
    if (it == conv->variables.end()) return not_found("Conversation Variable Not Exists.");
    auto* value = c.body.if_contains("value");
    if (!value) return pydantic_missing("ConversationVariableUpdatePayload", "value");
    if (!value->is_string())
        return error_reply(400, "bad_request", "Type mismatch: variable '" + it->name + "' expects string");
    it->value = std::string(value->get_string());
    it->updated_at = store_->now();
    return json_reply(200, json::object{{"id", it->id}, {"name", it->name}, {"value_type", it->value_type}, {"value", it->value},
                                        {"description", it->description}, {"created_at", it->created_at},
                                        {"updated_at", it->updated_at}});
}

reply dify_api::messages_list(call& c)
{
    if (!c.app.is_chat()) return not_chat_app();
    auto limit = limit_param(c.req, 100);
    if (!limit) return invalid_param("limit must be between 1 and 100");
    auto conv_id = c.req.query_param("conversation_id").value_or("");
    if (conv_id.empty()) return json_reply(200, json::object{{"limit", *limit}, {"has_more", false}, {"data", json::array()}});
    auto* conv = store_->find_conversation(c.app, *c.user, conv_id);
    if (!conv || conv->hidden) return not_found("Conversation Not Exists.");
    // Newest page first, each page in chronological order; first_id pages to older ones.
    std::size_t end = conv->messages.size();
    if (auto first = c.req.query_param("first_id"); first && !first->empty()) {
        auto it = std::find_if(conv->messages.begin(), conv->messages.end(), [&](auto& m) { return m.id == *first; });
        if (it == conv->messages.end()) return not_found("First Message Not Exists.");
        end = static_cast<std::size_t>(it - conv->messages.begin());
    }
    std::size_t begin = end > static_cast<std::size_t>(*limit) ? end - *limit : 0;
    json::array data;
    for (std::size_t i = begin; i < end; ++i) data.push_back(message_json(conv->messages[i]));
    return json_reply(200, json::object{{"limit", *limit}, {"has_more", begin > 0}, {"data", data}});
}

reply dify_api::message_feedback(call& c)
{
    auto* m = store_->find_message(c.app, *c.user, c.params[0]);
    if (!m) return not_found("Message Not Exists.");
    auto* rating = c.body.if_contains("rating");
    if (rating && !rating->is_null() &&
        (!rating->is_string() || (rating->get_string() != "like" && rating->get_string() != "dislike")))
        return pydantic_error("MessageFeedbackPayload", "rating", "Input should be 'like' or 'dislike'", "literal_error");
    if (!rating || rating->is_null()) {
        if (!m->rating) return invalid_param("rating cannot be None when feedback not exists");
        m->rating.reset();
        m->feedback_content.clear();
    } else {
        m->rating = std::string(rating->get_string());
        if (auto* content = c.body.if_contains("content"); content && content->is_string())
            m->feedback_content = std::string(content->get_string());
    }
    return json_reply(200, json::object{{"result", "success"}});
}

reply dify_api::message_suggested(call& c)
{
    if (!c.app.is_chat()) return not_chat_app();
    auto* m = store_->find_message(c.app, *c.user, c.params[0]);
    if (!m) return not_found("Message Not Exists.");
    if (!c.app.suggested_questions) return error_reply(400, "bad_request", "Suggested Questions Is Disabled.");
    json::array qs{"Can you tell me more about \"" + m->query + "\"?", "What should I do next?", "Can you give an example?"};
    return json_reply(200, json::object{{"result", "success"}, {"data", qs}});
}

reply dify_api::app_feedbacks(call& c)
{
    auto limit = limit_param(c.req, 101);
    if (!limit) return invalid_param("limit must be between 1 and 101");
    json::array data;
    for (auto* conv : store_->conversations_of_app(c.app)) {
        for (const auto& m : conv->messages) {
            if (!m.rating || data.size() >= static_cast<std::size_t>(*limit)) continue;
            data.push_back(json::object{{"id", m.id + "-feedback"}, {"app_id", c.app.id}, {"conversation_id", m.conversation_id},
                                        {"message_id", m.id}, {"rating", *m.rating}, {"content", m.feedback_content},
                                        {"from_source", "api"}, {"from_end_user_id", conv->end_user_id},
                                        {"from_account_id", nullptr}, {"created_at", iso_time(m.created_at)},
                                        {"updated_at", iso_time(m.created_at)}});
        }
    }
    return json_reply(200, json::object{{"data", data}});
}

reply dify_api::files_upload(call& c)
{
    int count = 0;
    const auto* part = file_part(c.form, count);
    if (!part) return error_reply(400, "no_file_uploaded", "Please upload your file.");
    if (count > 1) return error_reply(400, "too_many_files", "Only one file is allowed.");
    if (part->filename->empty()) return error_reply(400, "filename_not_exists_error", "The specified filename does not exist.");
    if (!part->content_type) return error_reply(415, "unsupported_file_type", "File type not allowed.");
    const auto& name = *part->filename;
    if (name.find('/') != std::string::npos || name.find('\\') != std::string::npos)
        return invalid_param("Filename contains invalid characters");
    auto ext = extension_of(name);
    if (part->data.size() > upload_limit(ext)) return error_reply(413, "file_too_large", "File size exceeded. {message}");
    file_rec f;
    f.id = store_->new_uuid();
    f.app_id = c.app.id;
    f.name = name.substr(0, 200);
    f.extension = ext;
    f.mime_type = *part->content_type;
    f.data = std::string(part->data);
    f.created_by = c.user->id;
    f.created_at = store_->now();
    auto& rec = store_->add_file(std::move(f));
    auto sign = "/files/" + rec.id + "/file-preview?timestamp=" + std::to_string(rec.created_at) + "&nonce=" +
                rec.id.substr(0, 8) + "&sign=emulator";
    auto r = json_reply(
        201, json::object{{"id", rec.id}, {"name", rec.name}, {"size", rec.data.size()}, {"extension", rec.extension},
                          {"mime_type", rec.mime_type}, {"created_by", rec.created_by}, {"created_at", rec.created_at},
                          {"preview_url", nullptr}, {"source_url", sign}, {"original_url", nullptr}, {"user_id", nullptr},
                          {"tenant_id", "00000000-0000-4000-8000-000000000001"}, {"conversation_id", nullptr},
                          {"file_key", "upload_files/" + rec.id}}
    );
    return r;
}

reply dify_api::file_preview(call& c)
{
    auto* f = store_->find_file(c.params[0]);
    if (!f) return error_reply(404, "file_not_found", "File not found.");
    if (f->app_id != c.app.id) return error_reply(403, "file_access_denied", "Access to the requested file is denied.");
    if (!f->referenced) return error_reply(404, "file_not_found", "File not found.");
    reply r;
    r.body = f->data;
    r.content_type = f->mime_type;
    r.headers.emplace_back("Cache-Control", "public, max-age=3600");
    if (c.req.query_param("as_attachment").value_or("false") == "true") {
        r.content_type = "application/octet-stream";
        r.headers.emplace_back("Content-Disposition", "attachment; filename*=UTF-8''" + f->name);
    }
    if (f->mime_type.starts_with("audio/") || f->mime_type.starts_with("video/")) r.headers.emplace_back("Accept-Ranges", "bytes");
    return r;
}

reply dify_api::audio_to_text(call& c)
{
    int count = 0;
    const auto* part = file_part(c.form, count);
    if (!part)
        return error_reply(
            400, "bad_request_key_error",
            "The browser (or proxy) sent a request that this server could not understand."
        );
    if (!c.app.speech_to_text) return invalid_param("Speech to text is not enabled");
    if (part->data.empty()) return error_reply(400, "no_audio_uploaded", "Please upload your audio.");
    static const std::vector<std::string> allowed{"audio/mp3", "audio/m4a", "audio/wav", "audio/amr", "audio/mpga"};
    if (!part->content_type || std::find(allowed.begin(), allowed.end(), core::media_type(*part->content_type)) == allowed.end())
        return error_reply(415, "unsupported_audio_type", "Audio type not allowed.");
    if (part->data.size() > 30 * 1024 * 1024) return error_reply(413, "audio_too_large", "Audio size larger than 30 mb");
    return json_reply(
        200, json::object{{"text", "Transcript of " + *part->filename + " (" + std::to_string(part->data.size()) + " bytes)."}}
    );
}

reply dify_api::text_to_audio(call& c)
{
    if (!c.app.text_to_speech) return invalid_param("TTS is not enabled");
    std::string text;
    if (auto* t = c.body.if_contains("text"); t && t->is_string()) text = std::string(t->get_string());
    if (auto* id = c.body.if_contains("message_id"); id && id->is_string() && !id->get_string().empty()) {
        auto* m = store_->find_message_any_user(c.app, id->get_string());
        if (!m) return json_reply(200, nullptr);
        text = m->answer;
    }
    if (text.empty()) return invalid_param("Text is required");
    // A deterministic MPEG-1 Layer III-looking body: ID3 header, then one frame per 32 bytes of text.
    reply r;
    r.content_type = "audio/mpeg";
    r.body.assign("ID3\x04\x00\x00\x00\x00\x00\x00", 10);
    for (std::size_t i = 0; i < text.size(); i += 32) {
        r.body.append("\xFF\xFB\x90\x64", 4);
        r.body.append(text.substr(i, 32));
        r.body.append(std::string(32 - std::min<std::size_t>(32, text.size() - i), '\0'));
    }
    return r;
}

reply dify_api::info(call& c)
{
    return json_reply(200, json::object{{"name", c.app.name}, {"description", c.app.description}, {"tags", json::array()},
                                        {"mode", c.app.mode}, {"author_name", "dify-emulator"}});
}

reply dify_api::parameters(call& c)
{
    json::array form;
    for (const auto& v : c.app.inputs) {
        json::object item{{"variable", v.variable}, {"label", v.variable}, {"required", v.required}, {"default", ""}};
        if (v.max_length > 0) item["max_length"] = v.max_length;
        if (!v.options.empty()) {
            json::array opts;
            for (const auto& o : v.options) opts.push_back(json::value(o));
            item["options"] = opts;
        }
        form.push_back(json::object{{v.type, item}});
    }
    auto enabled = [](bool on) { return json::object{{"enabled", on}}; };
    json::object file_upload{{"enabled", c.app.file_upload},
                             {"allowed_file_types", json::array{"document", "image"}},
                             {"allowed_file_upload_methods", json::array{"local_file", "remote_url"}},
                             {"number_limits", 3}};
    return json_reply(200, json::object{
                               {"opening_statement", "Hello from " + c.app.name + "."},
                               {"suggested_questions", json::array()},
                               {"suggested_questions_after_answer", enabled(c.app.suggested_questions)},
                               {"speech_to_text", enabled(c.app.speech_to_text)},
                               {"text_to_speech", enabled(c.app.text_to_speech)},
                               {"retriever_resource", enabled(false)},
                               {"annotation_reply", enabled(false)},
                               {"more_like_this", enabled(false)},
                               {"user_input_form", form},
                               {"sensitive_word_avoidance", enabled(false)},
                               {"file_upload", file_upload},
                               {"system_parameters", json::object{{"image_file_size_limit", 10}, {"video_file_size_limit", 100},
                                                                  {"audio_file_size_limit", 50}, {"file_size_limit", 15},
                                                                  {"workflow_file_upload_limit", 10}}},
                           });
}

reply dify_api::meta(call&)
{
    return json_reply(200, json::object{{"tool_icons", json::object()}});
}

reply dify_api::site(call& c)
{
    return json_reply(200, json::object{
                               {"title", c.app.name}, {"chat_color_theme", nullptr}, {"chat_color_theme_inverted", false},
                               {"icon_type", "emoji"}, {"icon", "🤖"}, {"icon_background", "#FFEAD5"}, {"icon_url", nullptr},
                               {"description", c.app.description}, {"copyright", nullptr}, {"privacy_policy", nullptr},
                               {"custom_disclaimer", ""}, {"default_language", "en-US"}, {"show_workflow_steps", true},
                               {"use_icon_as_answer_icon", false},
                           });
}

reply dify_api::end_user_detail(call& c)
{
    for (const auto* u : store_->end_users_of(c.app)) {
        if (u->id != c.params[0]) continue;
        return json_reply(200, json::object{{"id", u->id}, {"tenant_id", "00000000-0000-4000-8000-000000000001"},
                                            {"app_id", u->app_id}, {"type", "service-api"}, {"external_user_id", nullptr},
                                            {"name", nullptr}, {"is_anonymous", u->session_id == "DEFAULT-USER"},
                                            {"session_id", u->session_id}, {"created_at", iso_time(u->created_at)},
                                            {"updated_at", iso_time(u->created_at)}});
    }
    return error_reply(404, "end_user_not_found", "End user not found.");
}

} // namespace gw::emulator
