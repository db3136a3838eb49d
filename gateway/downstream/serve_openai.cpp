#include "gateway/downstream/serve_openai.hpp"

#include "core/openai_images.hpp"
#include "core/user_rewrite.hpp"
#include "gateway/proxy/forward.hpp"

#include <boost/json.hpp>

#include <memory>

namespace gw::gateway {

namespace json = boost::json;

namespace {

constexpr std::string_view default_end_user = "openai"; // a request without `user`

std::string end_user_of(const core::openai::chat_request& r)
{
    return r.user.empty() ? std::string(default_end_user) : r.user;
}

net::awaitable<bool>
write_json(downstream_request& d, int status, std::string body, bool keep_alive, const header_list& extra)
{
    http::response<http::string_body> res{static_cast<http::status>(status), 11};
    res.set(http::field::content_type, "application/json");
    res.set("X-Request-Id", d.request_id);
    for (const auto& [k, v] : extra)
        res.set(k, v);
    res.keep_alive(keep_alive);
    res.body() = std::move(body);
    res.prepare_payload();
    d.rec.status = status;
    d.rec.bytes_out += res.body().size();
    client_deadline deadline(d.down, d.dir.config().server.client_send_timeout_ms); // a client that does not read is dropped
    auto [ec, n] = co_await http::async_write(d.down, res, use_nothrow);
    co_return !ec && keep_alive;
}

// Reads the body of a chat completion request; false: answered (or the connection is done).
net::awaitable<bool>
read_chat_body(downstream_request& d, client_request_parser<http::string_body>& p, bool has_body)
{
    if (!has_body) co_return true;
    if (!co_await continue_if_expected(d.down, p.get())) co_return false;
    const auto fields_before = field_count(p.get());
    if (!co_await read_whole_body(d.w, d.down, d.buffer, p, d.request_id, api_front::openai_chat))
        co_return false;
    if (field_count(p.get()) == fields_before) co_return true;
    gateway_error trailers{400, "bad_request", "Requests with trailers are not accepted."};
    d.rec.status = trailers.status;
    const header_list none;
    co_await write_gateway_error(d.down, trailers, d.request_id, false, none, api_front::openai_chat);
    co_return false;
}

// The files/upload form for the turn's `index`th data: image (checked when the request
// was read; decoded only now, after the quotas admitted it).
std::optional<core::openai::upload_form> upload_form_for(
    worker& w, std::string_view user, std::size_t index, std::string url, core::openai::api_error& err
)
{
    std::string why;
    auto image = core::openai::parse_image_data_url(url, why);
    if (!image) {
        err = {400, "invalid_request_error", "invalid_image_url", "messages", std::move(why)};
        return std::nullopt;
    }
    url = std::string();
    const auto name = "image-" + std::to_string(index + 1) + "." + image->extension;
    return core::openai::files_upload_form(user, name, *image, [&w] { return w.random64(); });
}

// Dify file objects for the newest message's images, in order: remote URLs as they are,
// data: URLs as the files uploaded for them (`uploaded`, in the same order).
json::array image_files(const core::openai::message& newest, const std::vector<std::string>& uploaded)
{
    json::array files;
    auto next = uploaded.begin();
    for (const auto& url : newest.images) {
        if (core::openai::is_data_url(url))
            files.push_back(json::object{
                {"type", "image"}, {"transfer_method", "local_file"}, {"upload_file_id", *next++}});
        else
            files.push_back(json::object{{"type", "image"}, {"transfer_method", "remote_url"}, {"url", url}});
    }
    return files;
}

// The turn's data: images decoded and uploaded to Dify (files/upload, as the turn's end
// user, owned by its tenant) one at a time, each URL freed once sent. The file ids, in
// order; nullopt: an upload failed and its error was answered in OpenAI's shape
// (`reusable` then says whether the connection goes on).
net::awaitable<std::optional<std::vector<std::string>>> upload_images(
    downstream_request& d,
    const request_head& req,
    bool keep_alive,
    const request_plan& plan,
    openai_turn& turn,
    std::vector<std::string>& images,
    const header_list& quota_headers,
    bool& reusable
)
{
    std::vector<std::string> ids;
    const auto user = core::namespaced_user(plan.who->name, end_user_of(turn.request));
    for (std::size_t i = 0; i < images.size(); ++i) {
        core::openai::api_error bad;
        auto form = upload_form_for(d.w, user, i, std::exchange(images[i], {}), bad);
        if (!form) {
            auto error = core::openai::error_body(bad);
            reusable = co_await write_json(d, bad.status, std::move(error), keep_alive, quota_headers);
            co_return std::nullopt;
        }
        image_upload upload{std::move(form->content_type), {}};
        request_plan upload_plan = plan;
        upload_plan.target = files_upload_target(*plan.target);
        upload_plan.generates = false;
        upload_plan.place = core::user_place::form;
        upload_plan.uploads_file = true;
        std::optional<exchange> slot;
        auto& x = make_exchange(slot, d, req, keep_alive, upload_plan, nullptr, quota_headers);
        x.body = std::move(form->body);
        x.openai = &turn;
        x.upload = &upload;
        reusable = co_await forward_request(x);
        if (upload.file_id.empty()) co_return std::nullopt;
        ids.push_back(std::move(upload.file_id));
    }
    co_return ids;
}

// The Dify conversation a turn continues: the one pinned by the request's header, or the
// one its history was last seen in (chat apps; turn.remembered_as is then its key); "" = a
// new one (also what a forgotten entry holds).
net::awaitable<void> find_conversation(downstream_request& d, openai_turn& turn, std::string_view pinned)
{
    if (!pinned.empty()) {
        turn.conversation_id = std::string(pinned);
        co_return;
    }
    const auto& r = turn.request;
    if (core::openai::history_length(r) == 0) co_return;
    auto key = conversation_key(
        turn.conversation_scope, core::openai::history_digest(r.messages, core::openai::history_length(r))
    );
    auto found = co_await d.w.quotas().conversation_of(key);
    if (!found || found->empty() || *found == ambiguous_conversation) co_return;
    turn.conversation_id = std::move(*found);
    turn.remembered_as = std::move(key);
}

// The plan completed with the app `model` names (a turn generates; `user` is in its JSON).
bool route_to_model(downstream_request& d, request_plan& plan, std::string_view model, gateway_error& err)
{
    plan.target = d.dir.openai_target(*plan.who, model, err);
    if (!plan.target) return false;
    plan.pair = plan.target->pair;
    plan.route = plan.target->match.route;
    plan.endpoint = endpoint_id(plan.route);
    plan.generates = true;
    plan.place = core::user_place::json_body;
    d.rec.app = plan.target->app->name;
    d.rec.pair = plan.pair;
    d.rec.endpoint = plan.endpoint;
    return true;
}

// A turn: its request, the translator of its reply, its conversation scope.
openai_turn make_turn(
    downstream_request& d,
    const tenant& who,
    const app_handle& app,
    const core::openai::app_mapping& m,
    core::openai::chat_request r
)
{
    core::openai::completion_translator::options out;
    out.id = "chatcmpl-" + d.request_id;
    out.created = d.w.unix_seconds();
    out.model = app.name;
    out.stream = r.stream;
    out.include_usage = r.include_usage;
    out.app = m.app;
    out.output = m.output;
    auto scope = conversation_scope(who.name, app.name, end_user_of(r));
    return openai_turn{
        std::move(r),
        core::openai::completion_translator(std::move(out)),
        core::sse_parser(static_cast<std::size_t>(app.upstream->max_sse_event_bytes)),
        std::move(scope),
        {},
        {},
        false,
        false,
        true};
}

// Dify's request body for a turn: a history the gateway has not seen gives its earlier
// turns as context (apps.<name>.openai.unknown_history_as_context).
json::object dify_request_body(
    const openai_turn& turn,
    const config::app_config& app,
    const core::openai::app_mapping& m,
    json::array files
)
{
    const bool unknown_history =
        turn.conversation_id.empty() && core::openai::history_length(turn.request) > 0;
    const std::string context = unknown_history && app.openai.unknown_history_as_context
                                    ? core::openai::prior_turns_as_context(turn.request)
                                    : "";
    return core::openai::dify_body(
        turn.request, m, end_user_of(turn.request), turn.conversation_id, context, std::move(files)
    );
}

// What a chat completion request asks: read, parsed, its images checked (before the
// quotas are spent). nullopt: answered (`reusable` says whether the connection may go on).
struct turn_request
{
    core::openai::chat_request request;
    std::vector<std::string> images; // the newest message's data: URLs, to be uploaded
};

net::awaitable<std::optional<turn_request>> read_turn(
    downstream_request& d,
    client_request_parser<http::string_body>& p,
    bool has_body,
    bool keep_alive,
    bool& reusable
)
{
    reusable = false;
    if (!co_await read_chat_body(d, p, has_body)) co_return std::nullopt;
    d.rec.bytes_in = p.get().body().size();
    core::openai::api_error bad;
    auto request = core::openai::parse_chat_request(p.get().body(), bad);
    std::string().swap(p.get().body()); // parsed: a large body is not kept for the turn's life
    auto images = request ? core::openai::take_inline_images(*request, bad) : std::nullopt;
    if (request && images) co_return turn_request{std::move(*request), std::move(*images)};
    auto error = core::openai::error_body(bad);
    const header_list none;
    reusable = co_await write_json(d, bad.status, std::move(error), keep_alive, none);
    co_return std::nullopt;
}

// Sends a turn to Dify and relays the reply; the headers name the conversation it
// continues, if any.
net::awaitable<bool> send_turn(
    downstream_request& d,
    const request_head& req,
    bool keep_alive,
    request_plan& plan,
    quota_ticket* ticket,
    header_list headers,
    openai_turn& turn,
    json::object body
)
{
    if (!turn.conversation_id.empty())
        headers.emplace_back(conversation_header, turn.conversation_id);
    std::optional<exchange> slot;
    auto& x = make_exchange(slot, d, req, keep_alive, plan, ticket, std::move(headers));
    x.body = json::serialize(body);
    x.openai = &turn;
    co_return co_await forward_request(x);
}

// A turn sent to Dify (its data: images uploaded first) and its reply relayed; sent once more as a new conversation when the
// conversation its history was remembered in is gone at Dify (deleted: nothing was answered
// yet), as for a history never seen.
net::awaitable<bool> run_turn(
    downstream_request& d,
    const request_head& req,
    bool keep_alive,
    request_plan& plan,
    quota_ticket* ticket,
    header_list quota_headers,
    openai_turn& turn,
    std::vector<std::string> images
)
{
    bool uploaded_ok = false;
    auto uploaded = co_await upload_images(d, req, keep_alive, plan, turn, images, quota_headers, uploaded_ok);
    if (!uploaded) co_return uploaded_ok;
    auto files = image_files(turn.request.newest(), *uploaded);
    const app_target target = *plan.target; // kept: make_exchange takes the plan's
    const auto& app = *target.app->cfg;
    const auto mapping = openai_mapping(app);
    auto body = dify_request_body(turn, app, mapping, files);
    const bool reusable = co_await send_turn(d, req, keep_alive, plan, ticket, quota_headers, turn, std::move(body));
    if (!turn.conversation_gone) co_return reusable;
    turn.conversation_id.clear();
    turn.remembered_as.clear();
    turn.conversation_gone = false;
    turn.restarted = true;
    plan.target = target;
    auto fresh = dify_request_body(turn, app, mapping, std::move(files));
    co_return co_await send_turn(d, req, keep_alive, plan, ticket, std::move(quota_headers), turn, std::move(fresh));
}

} // namespace

net::awaitable<bool>
serve_openai(downstream_request& d, header_parser& hp, request_plan& plan, bool keep_alive)
{
    const auto& who = *plan.who;
    const header_list none;
    if (plan.front == api_front::openai_models) { // not admitted against the quotas: it reads the config only
        // A body (none is expected) is not read: the connection closes after the answer,
        // so its bytes are never taken for the next request.
        auto models = openai_models_body(who, d.w.unix_seconds());
        co_return co_await write_json(d, 200, std::move(models), keep_alive && hp.is_done(), none);
    }
    const bool has_body = !hp.is_done();
    client_request_parser<http::string_body> body_parser{std::move(hp)};
    bool reusable = false;
    auto asked = co_await read_turn(d, body_parser, has_body, keep_alive, reusable);
    if (!asked) co_return reusable;
    const auto pin = body_parser.get()[conversation_header];
    const auto pinned = pin.empty() ? std::nullopt : canonical_conversation_id(pin);
    if (!pin.empty() && !pinned) {
        const core::openai::api_error bad_pin{
            400, "invalid_request_error", "invalid_conversation_id", "X-Dify-Conversation-Id",
            "X-Dify-Conversation-Id must be a conversation id (a UUID)."};
        auto error = core::openai::error_body(bad_pin);
        co_return co_await write_json(d, 400, std::move(error), keep_alive, none);
    }
    gateway_error unknown;
    if (!route_to_model(d, plan, asked->request.model, unknown)) {
        d.rec.status = unknown.status;
        co_return co_await write_gateway_error(d.down, unknown, d.request_id, keep_alive, none, plan.front);
    }
    const auto& app = *plan.target->app;
    auto admitted = co_await admit(d.w, plan, d.rec);
    auto quota_headers = rate_headers(admitted);
    if (auto refusal = account_admission(d.w, plan, admitted)) {
        d.rec.status = refusal->status;
        // A daily token quota spent: retrying before midnight is pointless (the OpenAI SDKs
        // honour this header; they ignore a Retry-After of more than a minute).
        if (*admitted.refused == quota_reason::tokens) quota_headers.emplace_back("x-should-retry", "false");
        co_return co_await write_gateway_error(
            d.down, *refusal, d.request_id, keep_alive, quota_headers, plan.front
        );
    }
    std::unique_ptr<quota_ticket> ticket = std::move(admitted.ticket); // returned when this frame ends

    const auto mapping = openai_mapping(*app.cfg);
    auto turn = make_turn(d, who, app, mapping, std::move(asked->request));
    if (mapping.app == core::openai::app_mapping::kind::chat) {
        const std::string pinned_id = pinned.value_or(""); // named: no temporaries inside co_await (g++ 12)
        co_await find_conversation(d, turn, pinned_id);
    }
    co_return co_await run_turn(
        d, body_parser.get(), keep_alive, plan, ticket.get(), std::move(quota_headers), turn, std::move(asked->images)
    );
}

} // namespace gw::gateway
