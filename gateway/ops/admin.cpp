#include "gateway/ops/admin.hpp"

#include "core/admin_access.hpp"
#include "core/text.hpp"

#include "gateway/ops/spawn.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

namespace gw::gateway {

namespace http = beast::http;
namespace json = boost::json;
using tcp = net::ip::tcp;

namespace {

net::awaitable<json::value> usage_report(worker& w)
{
    json::object tenants;
    const auto snapshot = w.tenants_snapshot(); // keeps the config alive across the awaits below
    const auto& cfg = snapshot->config();
    for (const auto& [tenant, t] : cfg.tenants) {
        auto budget = co_await w.quotas().budget(tenant);
        json::object apps;
        for (const auto& app : t.apps) {
            auto* c = w.usage().find(tenant, app);
            if (!c) continue;
            json::object refused;
            for (std::size_t r = 0; r < quota_reason_count; ++r)
                refused[reason_name(static_cast<quota_reason>(r))] = c->refused[r].load();
            bool today = c->tokens_day.load() == w.local_quota().today();
            apps[app] = json::object{{"requests", c->requests.load()}, {"refused", refused},
                                     {"tokens_today", today ? c->tokens.load() : 0}};
        }
        tenants[tenant] = json::object{
            {"tokens_today", budget.used},
            {"tokens_per_day", t.tokens_per_day > 0 ? json::value(t.tokens_per_day) : json::value(nullptr)},
            {"tokens_remaining", budget.remaining >= 0 ? json::value(budget.remaining) : json::value(nullptr)},
            {"apps", apps}};
    }
    const auto& store = *w.usage().store();
    co_return json::object{{"quota_store", json::object{{"type", config::name_of(cfg.quota_store.type, config::store_kind_names)},
                                                        {"errors", store.errors.load()},
                                                        {"pending_writes", std::max<std::int64_t>(0, store.writes_pending.load())},
                                                        {"retried_writes", store.writes_retried.load()},
                                                        {"dropped_writes", store.writes_dropped.load()}}},
                           {"tenants", tenants}};
}

// An /admin/ action the caller may not use: the answer is set and true.
bool refuse_action(http::response<http::string_body>& res, core::admin_access access)
{
    if (access == core::admin_access::allowed) return false;
    if (access == core::admin_access::token_required) {
        res.result(http::status::unauthorized);
        res.set(http::field::www_authenticate, "Bearer realm=\"dify-gateway admin\"");
        res.body() = R"({"code":"unauthorized","message":"Admin actions need the admin token (Authorization: Bearer).","status":401})";
    } else {
        res.result(http::status::forbidden);
        res.body() = R"({"code":"forbidden","message":"Admin actions are served only on this host unless admin.token is set.","status":403})";
    }
    return true;
}

std::string reload_answer(http::response<http::string_body>& res, const std::vector<std::string>& problems)
{
    json::array list;
    for (const auto& p : problems) list.push_back(json::value(p));
    res.result(problems.empty() ? http::status::ok : http::status::bad_request);
    return json::serialize(problems.empty() ? json::object{{"result", "reloaded"}} : json::object{{"result", "rejected"}, {"problems", list}});
}

// GET /healthz, /readyz, /metrics, or 404.
void answer_probe(http::response<http::string_body>& res, std::string_view path, const std::function<bool()>& ready,
                  const std::function<std::string()>& metrics)
{
    if (path == "/healthz") {
        res.body() = R"({"status":"ok"})";
    } else if (path == "/readyz") {
        bool ok = ready();
        res.result(ok ? http::status::ok : http::status::service_unavailable);
        res.body() = ok ? R"({"status":"ready"})" : R"({"status":"draining"})";
    } else if (path == "/metrics") {
        res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
        res.body() = metrics();
        res.body().pop_back(); // the newline appended after every answer ends the last line
    } else {
        res.result(http::status::not_found);
        res.body() = R"({"code":"not_found","message":"No such admin endpoint.","status":404})";
    }
}

} // namespace

admin_listener::admin_listener(worker& w, const config::admin_config& cfg, std::function<bool()> ready, reload_fn reload,
                               std::function<std::string()> metrics)
    : w_(w), token_(cfg.token), ready_(std::move(ready)), reload_(std::move(reload)), metrics_(std::move(metrics))
{
    const auto& listen = cfg.listen;
    auto hp = core::parse_host_port(listen);
    if (!hp) throw std::runtime_error("admin.listen: not HOST:PORT");
    error_code ec;
    auto address = net::ip::make_address(hp->host, ec);
    if (ec) throw std::runtime_error("admin.listen: \"" + hp->host + "\" is not an IP address");
    tcp::endpoint ep(address, hp->port);
    acceptor_ = std::make_unique<tcp::acceptor>(w_.context());
    acceptor_->open(ep.protocol());
    acceptor_->set_option(tcp::acceptor::reuse_address(true));
    acceptor_->bind(ep, ec);
    if (ec) throw std::runtime_error("admin.listen: cannot bind " + listen + ": " + ec.message());
    acceptor_->listen();
    endpoint_ = acceptor_->local_endpoint();
}

void admin_listener::start()
{
    net::co_spawn(w_.context(), accept_loop(), log_failure("admin accept loop"));
}

void admin_listener::stop()
{
    error_code ignored;
    acceptor_->close(ignored);
}

net::awaitable<void> admin_listener::session(tcp::socket socket)
{
    error_code ignored;
    const auto peer = socket.remote_endpoint(ignored).address();
    const bool local = !ignored && (peer.is_loopback() || (peer.is_v6() && peer.to_v6().is_v4_mapped() &&
                                                           net::ip::make_address_v4(net::ip::v4_mapped, peer.to_v6()).is_loopback()));
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    for (;;) {
        http::request<http::string_body> req;
        stream.expires_after(std::chrono::seconds(30));
        auto [ec, n] = co_await http::async_read(stream, buffer, req, use_nothrow);
        if (ec) break;
        http::response<http::string_body> res{http::status::ok, 11};
        res.set(http::field::content_type, "application/json");
        std::string_view path = req.target();
        path = path.substr(0, path.find('?'));
        if (path.starts_with("/admin/") && refuse_action(res, core::admin_action_access(req[http::field::authorization], local, token_))) {
            // refused: the answer says why
        } else if (path == "/admin/reload" && req.method() == http::verb::post) {
            res.body() = reload_answer(res, reload_());
        } else if (req.method() != http::verb::get) {
            res.result(http::status::method_not_allowed);
            res.body() = R"({"code":"method_not_allowed","message":"Use GET.","status":405})";
        } else if (path == "/admin/usage") {
            res.body() = json::serialize(co_await usage_report(w_));
        } else {
            answer_probe(res, path, ready_, metrics_);
        }
        res.body() += "\n";
        res.keep_alive(req.keep_alive());
        res.prepare_payload();
        auto [wec, wn] = co_await http::async_write(stream, res, use_nothrow);
        if (wec || !req.keep_alive()) break;
    }
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

net::awaitable<void> admin_listener::accept_loop()
{
    for (;;) {
        auto [ec, socket] = co_await acceptor_->async_accept(use_nothrow);
        if (!acceptor_->is_open()) co_return;
        if (ec) continue;
        net::co_spawn(w_.context(), session(std::move(socket)), log_failure("admin connection"));
    }
}

} // namespace gw::gateway
