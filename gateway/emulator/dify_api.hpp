// Dify's Service API (/v1) as a sans-io request handler: routing (HTML 404 for unknown
// paths, JSON 405), key auth, reading `user` from the one place each
// endpoint reads it, and every endpoint's behaviour and errors.
#pragma once

#include "core/multipart.hpp"
#include "gateway/emulator/generation.hpp"
#include "gateway/emulator/store.hpp"
#include "gateway/emulator/wire.hpp"

#include <boost/json/value.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace gw::emulator {

// What the API learned about a request, for introspection (/_emulator/stats).
struct request_facts
{
    std::string app_key;     // the bearer token as sent
    std::string app_name;    // when the key is valid
    std::string user;        // the `user` value Dify read
    std::string user_source; // "body", "query", "form" or "" (not read / absent)
};

struct api_options
{
    std::chrono::milliseconds token_delay{0}; // between streamed events; blocking waits the sum
};

struct generate_request; // api_generate.cpp

class dify_api
{
public:
    dify_api(std::shared_ptr<store> st, api_options opts);

    reply handle(const request& req, request_facts& facts);

    // The app a bearer header selects (nullptr when invalid); used for injected faults.
    const app_def* app_for(const request& req) const;
    store& data() { return *store_; }

    // Where an endpoint reads `user`.
    enum class user_place { none, json_body, query, form };

    // One request after routing, auth and user resolution.
    struct call
    {
        const request& req;
        const app_def& app;
        std::vector<std::string> params;   // path captures, in order
        boost::json::object body;          // json_body endpoints
        core::multipart_result form;       // form endpoints
        const end_user_rec* user = nullptr; // set when the endpoint reads `user`
    };
    using handler = reply (dify_api::*)(call&);

    struct route
    {
        std::string method;
        std::vector<std::string> segments; // "{}" matches one segment
        handler fn;
        user_place place;
        bool user_required;
    };

private:
    // Generation endpoints (api_generate.cpp).
    reply chat_messages(call& c);
    reply completion_messages(call& c);
    reply workflows_run(call& c);
    reply workflows_run_version(call& c);
    reply stop_chat(call& c);
    reply stop_completion(call& c);
    reply stop_workflow(call& c);
    reply workflow_run_detail(call& c);
    reply workflow_logs(call& c);

    // Resources (api_resources.cpp).
    reply conversations_list(call& c);
    reply conversation_delete(call& c);
    reply conversation_rename(call& c);
    reply conversation_variables(call& c);
    reply conversation_variable_update(call& c);
    reply messages_list(call& c);
    reply message_feedback(call& c);
    reply message_suggested(call& c);
    reply app_feedbacks(call& c);
    reply files_upload(call& c);
    reply file_preview(call& c);
    reply audio_to_text(call& c);
    reply text_to_audio(call& c);
    reply info(call& c);
    reply parameters(call& c);
    reply meta(call& c);
    reply site(call& c);
    reply end_user_detail(call& c);

    reply generate(call& c, const std::string& kind);
    generation_input start_generation(call& c, generate_request& g);
    std::shared_ptr<event_stream> stream_generation(call& c, const std::string& kind, const generation_input& in);
    reply stop_task(call& c, const std::string& kind);

    std::shared_ptr<store> store_;
    api_options opts_;
    std::vector<route> routes_;
};

// The key of an `Authorization: Bearer <key>` header; "" when absent or malformed.
std::string_view bearer_key(const request& req);

// Helpers shared by the handler files.
bool is_uuid(std::string_view s);
std::string iso_time(std::int64_t unix_seconds);
reply invalid_param(std::string_view message);
reply not_found(std::string_view message);
reply not_chat_app();
// The error Dify gives when the app's mode does not fit a route of `kind`
// ("chat": chat-like apps, "completion", "workflow"); nullopt when it fits.
std::optional<reply> mode_mismatch(const app_def& app, std::string_view kind);
reply pydantic_missing(std::string_view model, std::string_view field);
reply pydantic_error(std::string_view model, std::string_view field, std::string_view text, std::string_view type);

} // namespace gw::emulator
