// Building the request Dify gets (target, headers, the app's key, tenant-namespaced
// `user`) and the stop call made when a client leaves a stream.
#include "gateway/proxy/exchange.hpp"

#include "core/dify_routes.hpp"
#include "core/text.hpp"
#include "gateway/downstream/request_checks.hpp"

#include "gateway/ops/spawn.hpp"
#include "gateway/ops/tracing.hpp"
#include "gateway/upstream/round_trip.hpp"
#include "gateway/http_fields.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/json.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>

namespace gw::gateway {

namespace json = boost::json;
using namespace std::string_view_literals;

net::steady_timer& timer_for(exchange& x)
{
    if (!x.timer) x.timer = std::make_unique<net::steady_timer>(x.down.get_executor());
    return *x.timer;
}

bool client_reusable(const exchange& x)
{
    return x.client_keep_alive && !x.w.draining() && !x.client_broken && (!x.streamed || x.streamed->is_done());
}

namespace {

// Reads the rest of a streamed body and drops it (the request is answered without it).
net::awaitable<bool> drop_rest_of_body(exchange& x)
{
    auto& p = *x.streamed;
    std::array<char, 4096> scratch;
    client_deadline deadline(x.down, std::chrono::seconds(10));
    while (!p.is_done()) {
        p.get().body().data = scratch.data();
        p.get().body().size = scratch.size();
        auto [ec, n] = co_await http::async_read_some(x.down, x.down_buffer, p, use_nothrow);
        if (ec == http::error::need_buffer) ec = {};
        if (ec || deadline.fired()) co_return false;
    }
    co_return true;
}

} // namespace

net::awaitable<bool> write_error(exchange& x, const gateway_error& e)
{
    x.rec->status = e.status;
    const bool unread = x.streamed && !x.streamed->is_done() && !x.client_broken;
    // (A client that sent Expect: 100-continue got its 100 before the body was streamed.)
    const bool droppable = unread && x.streamed->content_length().value_or(max_dropped_body + 1) <= max_dropped_body;
    bool keep = x.client_keep_alive && !x.w.draining() && !x.client_broken && (!unread || droppable);
    // The rest of a small body is read and dropped before the answer (see refuse_early).
    if (keep && unread && !co_await drop_rest_of_body(x)) keep = false;
    const auto front = x.openai ? api_front::openai_chat : api_front::dify;
    co_return co_await write_gateway_error(x.down, e, x.request_id, keep, x.quota_headers, front);
}

bool valid_request_id(std::string_view id)
{
    if (id.empty() || id.size() > 128) return false;
    for (char c : id)
        if (c <= 0x20 || c >= 0x7F) return false;
    return true;
}

// The Host header for an upstream: the port only when it is not the scheme's default.
std::string host_header(const config::upstream_config& u)
{
    bool default_port = u.port == (u.tls ? 443 : 80);
    return default_port ? u.host : u.host + ":" + std::to_string(u.port);
}

namespace {

const gateway_error unreadable_json{400, "bad_request",
                                   "The request body is not a JSON object the gateway can read (malformed, not UTF-8, "
                                   "nested deeper than 64 levels, or an id that is a number)."};
const gateway_error unreadable_multipart{400, "bad_request",
                                         "Malformed or ambiguous multipart/form-data body (boundary, part headers or "
                                         "framing that parsers could read differently)."};

// A JSON body with `user` namespaced. Empty bodies pass: Dify answers its own 400.
std::optional<gateway_error> rewrite_json_body(exchange& x)
{
    if (x.body.empty()) {
        x.up.owned_body = std::move(x.body);
        return std::nullopt;
    }
    auto rewritten = core::rewrite_json_user(x.body, x.who.name, &x.up.namespaced_user, &x.refs);
    if (!rewritten) return unreadable_json;
    x.up.owned_body = std::move(*rewritten);
    return std::nullopt;
}

// A form body (multipart or url-encoded, both read by Werkzeug) with `user` namespaced;
// `ct` is the request's Content-Type; `is_form` is set false (and nothing done) when the body
// is of another type.
std::optional<gateway_error> rewrite_form_body(exchange& x, std::string_view ct, bool& is_form)
{
    is_form = true;
    if (core::has_media_type(ct, "application/x-www-form-urlencoded")) {
        x.up.owned_body = core::rewrite_query_user(x.body, x.who.name);
        return std::nullopt;
    }
    if (!core::has_media_type(ct, "multipart/form-data")) {
        is_form = false;
        return std::nullopt;
    }
    auto params = core::unambiguous_header_params(ct);
    auto boundary = params ? core::find_param(*params, "boundary") : std::nullopt;
    auto splice = boundary ? core::rewrite_multipart_user(x.body, *boundary, x.who.name) : std::nullopt;
    if (!splice) return unreadable_multipart;
    x.up.splice = std::move(*splice);
    x.up.spliced = true;
    return std::nullopt;
}

// Applies the tenant's namespace to `user` where this endpoint reads it (and everywhere on
// an unknown route forwarded by switch). Fails closed: a body Dify could read `user` from
// but the gateway cannot rewrite is refused, never forwarded as sent (it could carry another
// tenant's namespaced user).
std::optional<gateway_error> rewrite_user(exchange& x, std::string& query)
{
    bool is_form = false;
    const std::string_view content_type = field_value(x.req, http::field::content_type);
    // A `user` in the query is namespaced on every route, read there or not.
    if (x.place != core::user_place::query && x.place != core::user_place::anywhere)
        query = core::rewrite_query_param(query, "user", x.who.name, {}, false);
    // Bodies are rewritten as UTF-8: one declared in another charset could read otherwise.
    if (x.place != core::user_place::none && x.place != core::user_place::query && !x.body.empty()) {
        auto params = core::unambiguous_header_params(content_type);
        if (!params) return gateway_error{400, "bad_request", "The Content-Type parameters are ambiguous."};
        auto charset = core::find_param(*params, "charset");
        if (charset && !core::iequals(*charset, "utf-8") && !core::iequals(*charset, "utf8") && !core::iequals(*charset, "us-ascii"))
            return gateway_error{400, "bad_request", "Request bodies are read as UTF-8; charset '" + *charset + "' is not accepted."};
    }
    switch (x.place) {
    case core::user_place::none: x.up.owned_body = std::move(x.body); return std::nullopt;
    case core::user_place::query:
        query = core::rewrite_query_user(query, x.who.name);
        x.up.owned_body = std::move(x.body);
        return std::nullopt;
    case core::user_place::json_body:
        // Flask does not parse other types: Dify answers 415 without reading `user`.
        if (!core::is_json_media_type(content_type)) {
            x.up.owned_body = std::move(x.body);
            return std::nullopt;
        }
        return rewrite_json_body(x);
    case core::user_place::form: {
        auto refused = rewrite_form_body(x, content_type, is_form);
        if (!is_form) x.up.owned_body = std::move(x.body); // no form for Werkzeug: `user` is not read
        return refused;
    }
    case core::user_place::anywhere: {
        query = core::rewrite_query_user(query, x.who.name);
        if (core::is_json_media_type(content_type)) return rewrite_json_body(x);
        auto refused = rewrite_form_body(x, content_type, is_form);
        if (is_form || refused) return refused;
        if (!x.body.empty())
            return gateway_error{400, "bad_request",
                                 "An unknown route's body must be JSON or a form, so that `user` can be namespaced in it."};
        x.up.owned_body = std::move(x.body);
        return std::nullopt;
    }
    }
    return std::nullopt;
}

// App-wide routes that Dify can filter by end user, asked by a tenant that does not
// administer the app: only the tenant's own end users' data (the filter namespaced as
// `user` is, `created_by_account` dropped: accounts are not the tenant's).
void scope_to_tenant(exchange& x, std::string& query)
{
    const auto* r = x.target.match.route;
    if (!r || !r->app_wide || x.target.administers || r->end_user_filter.empty()) return;
    query = core::rewrite_query_param(query, r->end_user_filter, x.who.name, {"created_by_account"});
}

} // namespace

std::optional<gateway_error> build_upstream_request(exchange& x)
{
    const auto& upstream = *x.target.app->upstream;
    std::string_view target = x.req.target();
    auto q = target.find('?');
    std::string query = q == std::string_view::npos || x.openai ? std::string() : std::string(target.substr(q + 1));
    // A turn of the OpenAI front: the gateway wrote the JSON body; `user` is namespaced in
    // it. An image upload's form is the gateway's own, its `user` namespaced already.
    if (x.upload) x.up.owned_body = std::move(x.body);
    else if (auto refused = x.openai ? rewrite_json_body(x) : rewrite_user(x, query)) return refused;
    scope_to_tenant(x, query);

    auto& up = x.up;
    up.method = x.req.method_string();
    up.target.clear();
    up.target.reserve(upstream.base_path.size() + 3 + x.target.wire_path.size() + 1 + query.size());
    up.target.append(upstream.base_path).append("/v1").append(x.target.wire_path);
    if (!query.empty()) up.target.append(1, '?').append(query);
    // End-to-end headers pass; hop-by-hop ones, the tenant's credentials and what the
    // gateway recomputes do not. Headers named by Connection are hop-by-hop too (a sorted
    // set, compared without case: filtering stays linear in the header block's size). The
    // tokens are views of the request's own Connection values.
    std::vector<std::string_view> connection_tokens;
    for (auto [it, end] = x.req.equal_range(http::field::connection); it != end; ++it)
        core::for_each_part(it->value(), ',', [&](std::string_view token) {
            if (auto t = core::trim(token); !t.empty()) connection_tokens.push_back(t);
        });
    std::sort(connection_tokens.begin(), connection_tokens.end(), core::iless);
    auto& h = up.fields;
    h.clear();
    h.reserve(512);
    if (x.openai) // the request is the gateway's: none of the client's (OpenAI SDK) headers
        append_field(h, "Content-Type", x.upload ? std::string_view(x.upload->content_type) : "application/json");
    else
        for (const auto& f : x.req)
            if (forwarded_request_header(f.name(), f.name_string(), connection_tokens)) append_field(h, f.name_string(), f.value());
    append_field(h, "Host", host_header(upstream));
    append_field(h, "X-Request-Id", x.request_id);
    std::size_t length = x.streamed             ? *x.streamed->content_length()
                         : x.up.spliced         ? x.up.splice.size()
                                                : x.up.owned_body.size();
    if (length > 0 || x.req.method() == http::verb::post || x.req.method() == http::verb::put ||
        x.req.method() == http::verb::patch)
        append_field(h, "Content-Length", std::to_string(length));
    x.api_key = x.w.next_api_key(*x.target.app);
    // The caller's trace context as the gateway read it (valid, or none); each attempt puts
    // its own span in it when spans are exported (begin_attempt_span).
    const auto& trace = x.rec->trace;
    up.traceparent = core::is_zero(trace.parent) ? std::string() : traceparent_for(trace, trace.parent);
    return std::nullopt;
}

void append_field(recycled_string& out, std::string_view name, std::string_view value)
{
    out.append(name).append(": "sv).append(value).append("\r\n"sv);
}

void append_upstream_head(recycled_string& out, const exchange& x)
{
    out.append(x.up.method).append(" "sv).append(x.up.target).append(" HTTP/1.1\r\n"sv).append(x.up.fields);
    out.append("Authorization: Bearer "sv).append(x.api_key).append("\r\n"sv);
    if (!x.up.traceparent.empty()) {
        append_field(out, "traceparent", x.up.traceparent);
        if (!x.rec->trace.tracestate.empty()) append_field(out, "tracestate", x.rec->trace.tracestate);
    }
    out.append("\r\n");
}

void record_created(exchange& x, const core::stream_facts& facts, created_records& done, bool streaming)
{
    auto& store = x.w.quotas();
    const auto& tenant = x.who.name;
    auto once = [&](bool& flag, core::owned_kind kind, std::string_view id) {
        if (flag || id.empty()) return;
        flag = true;
        if (core::is_normalized_uuid(id)) // Dify's own spelling: no copy
            store.record_owner(kind, id, tenant);
        else
            store.record_owner(kind, core::normalized_id(id), tenant);
    };
    if (x.generating) {
        // A task matters while it may run (its stop call): a blocking reply comes when it is
        // done, unless it is a workflow run's, which can be paused.
        if (streaming || !facts.workflow_run_id().empty()) once(done.task, core::owned_kind::task, facts.task_id());
        once(done.conversation, core::owned_kind::conversation, facts.conversation_id());
        once(done.workflow_run, core::owned_kind::workflow_run, facts.workflow_run_id());
        once(done.message, core::owned_kind::message, facts.message_id());
    }
    // Human-input forms arrive on generation streams and on re-attached ones.
    for (; done.forms < facts.form_tokens().size(); ++done.forms)
        store.record_owner(core::owned_kind::form, core::normalized_id(facts.form_tokens()[done.forms]), tenant);
    if (x.uploads_file) once(done.file, core::owned_kind::file, facts.id());
}

std::vector<core::owned_reference> named_resources(const exchange& x)
{
    std::string_view target = x.req.target();
    auto q = target.find('?');
    auto refs = core::owned_references(x.target.match, q == std::string_view::npos ? std::string_view() : target.substr(q + 1));
    if (!x.refs.conversation_id.empty())
        refs.emplace_back(core::owned_kind::conversation, core::normalized_id(x.refs.conversation_id));
    if (!x.refs.message_id.empty()) refs.emplace_back(core::owned_kind::message, core::normalized_id(x.refs.message_id));
    for (const auto& f : x.refs.upload_file_ids) refs.emplace_back(core::owned_kind::file, core::normalized_id(f));
    return refs;
}

net::awaitable<std::optional<gateway_error>> check_ownership(exchange& x, std::vector<core::owned_reference> refs)
{
    for (const auto& [kind, id] : refs) {
        auto owner = co_await x.w.quotas().owner_of(kind, id);
        if (!owner || *owner == x.who.name) continue;
        spdlog::warn("request {}: tenant {} named a {} of another tenant; refused", x.request_id, x.who.name,
                     core::kind_name(kind));
        switch (kind) {
        case core::owned_kind::task: co_return gateway_error{404, "not_found", "Task not found."};
        case core::owned_kind::conversation: co_return gateway_error{404, "not_found", "Conversation Not Exists."};
        case core::owned_kind::workflow_run: co_return gateway_error{404, "not_found", "Workflow run not found."};
        case core::owned_kind::file: co_return gateway_error{404, "file_not_found", "File not found."};
        case core::owned_kind::message: co_return gateway_error{404, "not_found", "Message Not Exists."};
        case core::owned_kind::form: co_return gateway_error{404, "not_found", "Form not found."};
        }
    }
    co_return std::nullopt;
}

// The body as buffers: the owned string, or the splice's pieces over the original body.
body_buffer_list body_buffers(exchange& x, const std::string& original)
{
    body_buffer_list out;
    if (!x.up.spliced) {
        if (!x.up.owned_body.empty()) out.push_back(net::buffer(x.up.owned_body));
        return out;
    }
    for (const auto& p : x.up.splice.pieces)
        out.push_back(p.text.empty() ? net::buffer(original.data() + p.offset, p.length) : net::buffer(p.text));
    return out;
}

bool is_timeout(const error_code& ec)
{
    return ec == beast::error::timeout;
}

gateway_error upstream_failure(const error_code& ec, std::string_view phase)
{
    if (is_timeout(ec)) return {504, "gateway_timeout", "The upstream did not answer in time (" + std::string(phase) + ")."};
    return {502, "bad_gateway", "The upstream connection failed (" + std::string(phase) + ")."};
}

namespace {

// Calls Dify's stop endpoint for a task whose client went away (a CLIENT span of the
// request's trace). Spawned on its own; takes everything by value.
net::awaitable<void> call_stop(worker* w, std::uint32_t upstream_id, std::string target, std::string api_key,
                               std::string user, std::string request_id, request_trace trace)
{
    auto pool_ref = w->pool(upstream_id);
    auto& pool = *pool_ref;
    const auto& u = pool.config();
    auto deadline = clock::now() + u.response_timeout_ms;
    auto [ec, lease] = co_await pool.acquire(deadline);
    if (ec) {
        spdlog::warn("stop call for request {} failed: {}", request_id, ec.message());
        co_return;
    }
    http::request<http::string_body> req{http::verb::post, u.base_path + "/v1" + target, 11};
    req.set(http::field::host, host_header(u));
    req.set(http::field::authorization, "Bearer " + api_key);
    req.set(http::field::content_type, "application/json");
    req.set("X-Request-Id", request_id);
    req.body() = json::serialize(json::object{{"user", user}});
    req.prepare_payload();
    std::optional<core::span> span;
    if (trace.exported) {
        span = start_span(*w, trace, "POST", core::span_kind::client);
        span->set("http.request.method", "POST");
        span->set("url.full", (u.tls ? "https://" : "http://") + host_header(u) + std::string(req.target()));
        span->set("dify_gateway.stop_call", true);
    }
    if (w->tracer().enabled()) req.set("traceparent", traceparent_for(trace, span ? span->id : core::make_span_id(w->random64())));
    auto& conn = *lease;
    conn.expires_at(deadline);
    auto [io_ec, status, reusable] = co_await round_trip(conn, req);
    conn.expires_never();
    lease.give_back(reusable);
    if (span) {
        if (status != 0) span->set("http.response.status_code", static_cast<std::int64_t>(status));
        finish_span(*w, std::move(*span), io_ec ? io_ec.message() : status >= 400 ? std::to_string(status) : "");
    }
    if (io_ec)
        spdlog::warn("stop call for request {} failed: {}", request_id, io_ec.message());
    else
        spdlog::debug("stop call for request {}: {}", request_id, status);
}

} // namespace

void release_sent_request(exchange& x)
{
    std::string().swap(x.body);
    std::string().swap(x.up.owned_body);
    x.up.splice = {};
    recycled_string().swap(x.up.fields);
    recycled_string().swap(x.up.target);
    std::string().swap(x.up.traceparent);
    if (x.client_fields) x.client_fields->clear(); // Beast keeps the method and target apart from the fields
}

void begin_attempt_span(exchange& x)
{
    end_attempt_span(x, 0); // one left open by an attempt the machine did not relay
    ++x.attempts;
    const auto& t = x.rec->trace;
    if (!x.w.tracer().enabled()) return;
    x.attempt_id = core::make_span_id(x.w.random64());
    x.up.traceparent = traceparent_for(t, x.attempt_id);
    if (!t.exported) return;
    const auto& u = *x.target.app->upstream;
    auto s = start_span(x.w, t, std::string(x.up.method), core::span_kind::client);
    s.id = x.attempt_id;
    s.set("http.request.method", x.up.method);
    s.set("server.address", u.host);
    s.set("server.port", static_cast<std::int64_t>(u.port));
    const std::string_view target = x.up.target;
    s.set("url.full", (u.tls ? "https://" : "http://") + host_header(u) + std::string(target.substr(0, target.find('?'))));
    if (x.attempts > 1) s.set("http.request.resend_count", x.attempts - 1);
    x.attempt_span = std::make_unique<core::span>(std::move(s));
}

void end_attempt_span(exchange& x, unsigned status, const error_code& failure)
{
    if (!x.attempt_span) return;
    auto s = std::move(*x.attempt_span);
    x.attempt_span.reset();
    std::string error;
    if (status != 0) s.set("http.response.status_code", static_cast<std::int64_t>(status));
    if (failure) error = is_timeout(failure) ? "timeout" : failure.message();
    else if (status >= 400) error = std::to_string(status); // a CLIENT span's 4xx is an error too
    if (!error.empty()) s.set("error.type", is_timeout(failure) ? "timeout" : failure ? "connection" : error);
    finish_span(x.w, std::move(s), error);
}

void spawn_stop_call(exchange& x, std::string_view task_id)
{
    if (!x.target.match.route) return;
    auto target = core::stop_path_for(*x.target.match.route, task_id);
    if (target.empty() || x.up.namespaced_user.empty()) return;
    net::co_spawn(x.w.context(),
                  call_stop(&x.w, x.target.app->upstream_id, target, std::string(x.api_key), x.up.namespaced_user, x.request_id, x.rec->trace),
                  log_failure("stop call"));
}

} // namespace gw::gateway
