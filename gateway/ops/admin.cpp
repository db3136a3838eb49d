#include "gateway/ops/admin.hpp"

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

net::awaitable<void> admin_session(tcp::socket socket, worker* w, std::function<bool()>* ready, admin_listener::reload_fn* reload,
                                   std::function<std::string()>* metrics)
{
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
        if (path == "/admin/reload" && req.method() == http::verb::post) {
            auto problems = (*reload)();
            json::array list;
            for (const auto& p : problems) list.push_back(json::value(p));
            res.result(problems.empty() ? http::status::ok : http::status::bad_request);
            res.body() = json::serialize(problems.empty() ? json::object{{"result", "reloaded"}}
                                                          : json::object{{"result", "rejected"}, {"problems", list}});
        } else if (req.method() != http::verb::get) {
            res.result(http::status::method_not_allowed);
            res.body() = R"({"code":"method_not_allowed","message":"Use GET.","status":405})";
        } else if (path == "/healthz") {
            res.body() = R"({"status":"ok"})";
        } else if (path == "/readyz") {
            bool ok = (*ready)();
            res.result(ok ? http::status::ok : http::status::service_unavailable);
            res.body() = ok ? R"({"status":"ready"})" : R"({"status":"draining"})";
        } else if (path == "/metrics") {
            res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
            res.body() = (*metrics)();
            res.body().pop_back(); // the newline appended below ends the last line
        } else if (path == "/admin/usage") {
            auto report = co_await usage_report(*w);
            res.body() = json::serialize(report);
        } else {
            res.result(http::status::not_found);
            res.body() = R"({"code":"not_found","message":"No such admin endpoint.","status":404})";
        }
        res.body() += "\n";
        res.keep_alive(req.keep_alive());
        res.prepare_payload();
        auto [wec, wn] = co_await http::async_write(stream, res, use_nothrow);
        if (wec || !req.keep_alive()) break;
    }
    error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

} // namespace

admin_listener::admin_listener(worker& w, const std::string& listen, std::function<bool()> ready, reload_fn reload,
                               std::function<std::string()> metrics)
    : w_(w), ready_(std::move(ready)), reload_(std::move(reload)), metrics_(std::move(metrics))
{
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

net::awaitable<void> admin_listener::accept_loop()
{
    for (;;) {
        auto [ec, socket] = co_await acceptor_->async_accept(use_nothrow);
        if (!acceptor_->is_open()) co_return;
        if (ec) continue;
        net::co_spawn(w_.context(), admin_session(std::move(socket), &w_, &ready_, &reload_, &metrics_),
                      log_failure("admin connection"));
    }
}

} // namespace gw::gateway
