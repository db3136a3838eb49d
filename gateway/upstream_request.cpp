// Building the request Dify gets (target, headers, the app's key, tenant-namespaced
// `user`) and the stop call made when a client leaves a stream.
#include "gateway/exchange.hpp"

#include "core/dify_routes.hpp"
#include "core/text.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/json.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>

namespace gw::gateway {

namespace json = boost::json;

net::steady_timer& timer_for(exchange& x)
{
    if (!x.timer) x.timer.emplace(x.down.get_executor());
    return *x.timer;
}

net::awaitable<bool> write_error(exchange& x, const gateway_error& e)
{
    x.rec->status = e.status;
    co_return co_await write_gateway_error(x.down, e, x.request_id, x.client_keep_alive && !x.w.draining(), x.quota_headers);
}

bool is_hop_by_hop(std::string_view name)
{
    static constexpr std::string_view names[] = {"connection", "keep-alive", "proxy-connection", "proxy-authorization",
                                                 "proxy-authenticate", "te", "trailer", "transfer-encoding", "upgrade"};
    for (auto n : names)
        if (core::iequals(name, n)) return true;
    return false;
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

// Applies the tenant's namespace to `user` where this endpoint reads it (reference §2).
// Fails closed: a body Dify could read `user` from but the gateway cannot rewrite is
// refused, never forwarded as sent (it could carry another tenant's namespaced user).
std::optional<gateway_error> rewrite_user(exchange& x, std::string& query)
{
    const auto& tenant = x.who.name;
    auto& body = x.body;
    const auto ct = x.req[http::field::content_type];
    switch (x.place) {
    case core::user_place::none: x.up.owned_body = std::move(body); break;
    case core::user_place::query: {
        query = core::rewrite_query_user(query, tenant);
        x.up.owned_body = std::move(body);
        break;
    }
    case core::user_place::json_body: {
        if (!core::is_json_media_type(ct)) { // Flask does not parse it: Dify answers 415 without reading `user`
            x.up.owned_body = std::move(body);
            break;
        }
        if (body.empty()) { // Dify answers its own 400 without reading `user`
            x.up.owned_body = std::move(body);
            break;
        }
        auto rewritten = core::rewrite_json_user(body, tenant, &x.up.namespaced_user, &x.refs);
        if (!rewritten)
            return gateway_error{400, "bad_request",
                                 "The request body is not a JSON object the gateway can read (malformed, not UTF-8, or nested "
                                 "deeper than 64 levels)."};
        x.up.owned_body = std::move(*rewritten);
        break;
    }
    case core::user_place::form: {
        const auto type = core::media_type(ct);
        if (type == "application/x-www-form-urlencoded") { // Werkzeug reads forms of this kind too
            x.up.owned_body = core::rewrite_query_user(body, tenant);
            break;
        }
        if (type != "multipart/form-data") { // no form for Werkzeug: `user` is not read
            x.up.owned_body = std::move(body);
            break;
        }
        auto boundary = core::header_param(ct, "boundary");
        auto splice = boundary ? core::rewrite_multipart_user(body, *boundary, tenant) : std::nullopt;
        if (!splice)
            return gateway_error{400, "bad_request",
                                 "Malformed multipart/form-data body (missing or wrong boundary, or a broken part)."};
        x.up.splice = std::move(*splice);
        x.up.spliced = true;
        break;
    }
    }
    return std::nullopt;
}

} // namespace

std::optional<gateway_error> build_upstream_request(exchange& x)
{
    const auto& upstream = x.dir.upstream_of(x.target.app);
    std::string_view target = x.req.target();
    auto q = target.find('?');
    std::string query = q == std::string_view::npos ? std::string() : std::string(target.substr(q + 1));
    if (auto refused = rewrite_user(x, query)) return refused;

    auto& h = x.up.head;
    h.method_string(x.req.method_string());
    h.target(upstream.base_path + "/v1" + x.target.dify_path + (query.empty() ? "" : "?" + query));
    h.version(11);
    // End-to-end headers pass; hop-by-hop ones, the tenant's credentials and what the
    // gateway recomputes do not. Headers named by Connection are hop-by-hop too.
    auto connection_tokens = core::split(x.req[http::field::connection], ',');
    auto named_by_connection = [&](std::string_view name) {
        return std::any_of(connection_tokens.begin(), connection_tokens.end(),
                           [&](std::string_view token) { return core::iequals(core::trim(token), name); });
    };
    for (const auto& f : x.req) {
        auto name = f.name_string();
        if (is_hop_by_hop(name) || core::iequals(name, "host") || core::iequals(name, "authorization") ||
            core::iequals(name, "content-length") || core::iequals(name, "x-request-id") || core::iequals(name, "expect") ||
            named_by_connection(name))
            continue;
        h.insert(name, f.value());
    }
    h.set(http::field::host, host_header(upstream));
    x.api_key = x.w.next_api_key(x.target.app);
    h.set(http::field::authorization, "Bearer " + x.api_key);
    h.set("X-Request-Id", x.request_id);
    std::size_t length = x.streamed             ? *x.streamed->content_length()
                         : x.up.spliced         ? x.up.splice.size()
                                                : x.up.owned_body.size();
    if (length > 0 || x.req.method() == http::verb::post || x.req.method() == http::verb::put ||
        x.req.method() == http::verb::patch)
        h.set(http::field::content_length, std::to_string(length));
    h.keep_alive(true);
    return std::nullopt;
}

void record_created(exchange& x, const core::stream_facts& facts, created_records& done, bool streaming)
{
    auto& store = x.w.quotas();
    const auto& tenant = x.who.name;
    auto once = [&](bool& flag, core::owned_kind kind, const std::string& id) {
        if (flag || id.empty()) return;
        flag = true;
        store.record_owner(kind, core::to_lower(id), tenant);
    };
    if (x.generating) {
        // A task matters while it runs (its stop call); a blocking reply comes when it is done.
        if (streaming) once(done.task, core::owned_kind::task, facts.task_id());
        once(done.conversation, core::owned_kind::conversation, facts.conversation_id());
        once(done.workflow_run, core::owned_kind::workflow_run, facts.workflow_run_id());
    }
    if (x.uploads_file) once(done.file, core::owned_kind::file, facts.id());
}

std::vector<core::owned_reference> named_resources(const exchange& x)
{
    std::string_view target = x.req.target();
    auto q = target.find('?');
    auto refs = core::owned_references(x.req.method_string(), x.target.dify_path,
                                       q == std::string_view::npos ? std::string_view() : target.substr(q + 1));
    if (!x.refs.conversation_id.empty())
        refs.emplace_back(core::owned_kind::conversation, core::to_lower(x.refs.conversation_id));
    for (const auto& f : x.refs.upload_file_ids) refs.emplace_back(core::owned_kind::file, core::to_lower(f));
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
        }
    }
    co_return std::nullopt;
}

std::string serialize_head(const http::request_header<>& head)
{
    std::string out;
    out.reserve(512);
    out.append(head.method_string()).append(" ").append(head.target()).append(" HTTP/1.1\r\n");
    for (const auto& f : head) out.append(f.name_string()).append(": ").append(f.value()).append("\r\n");
    out.append("\r\n");
    return out;
}

// The body as buffers: the owned string, or the splice's pieces over the original body.
std::vector<net::const_buffer> body_buffers(exchange& x, const std::string& original)
{
    std::vector<net::const_buffer> out;
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

// One small request/response on a pooled connection (the stop call).
template <typename S>
net::awaitable<std::tuple<error_code, unsigned, bool>> round_trip(upstream_connection& conn, http::request<http::string_body>& req)
{
    auto& s = stream_of<S>(conn);
    http::response<http::string_body> res;
    auto [wec, wn] = co_await http::async_write(s, req, use_nothrow);
    if (wec) co_return std::tuple{wec, 0u, false};
    auto [rec, rn] = co_await http::async_read(s, conn.buffer(), res, use_nothrow);
    co_return std::tuple{rec, res.result_int(), !rec && res.keep_alive()};
}

// Calls Dify's stop endpoint for a task whose client went away (design §6). Detached;
// takes everything by value.
net::awaitable<void> call_stop(worker* w, std::string upstream_name, std::string target, std::string api_key,
                               std::string user, std::string request_id)
{
    auto pool_ref = w->pool(upstream_name);
    auto& pool = *pool_ref;
    const auto& u = pool.config();
    auto deadline = clock::now() + std::chrono::milliseconds(u.response_timeout_ms);
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
    auto& conn = *lease.conn;
    conn.expires_at(deadline);
    auto [io_ec, status, reusable] = conn.is_tls() ? co_await round_trip<tls_stream>(conn, req)
                                                   : co_await round_trip<beast::tcp_stream>(conn, req);
    conn.expires_never();
    pool.release(std::move(lease.conn), reusable);
    if (io_ec)
        spdlog::warn("stop call for request {} failed: {}", request_id, io_ec.message());
    else
        spdlog::debug("stop call for request {}: {}", request_id, status);
}

} // namespace

void spawn_stop_call(exchange& x, const std::string& upstream_name, const std::string& task_id)
{
    auto target = core::stop_path_for(std::string_view(x.req.method_string()), x.target.dify_path, task_id);
    if (target.empty() || x.up.namespaced_user.empty()) return;
    net::co_spawn(x.w.context(), call_stop(&x.w, upstream_name, target, x.api_key, x.up.namespaced_user, x.request_id),
                  net::detached);
}

} // namespace gw::gateway
