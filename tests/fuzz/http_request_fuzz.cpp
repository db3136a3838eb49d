// libFuzzer: the tenant request path up to routing -- Beast's request parser (headers,
// chunked bodies, absurd lengths, within the gateway's limits), tenant authentication and
// app routing, where Dify reads `user`, the IDs the request names, and the JSON rewrite.
#include "core/dify_routes.hpp"
#include "core/user_rewrite.hpp"
#include "gateway/downstream/request_checks.hpp"
#include "gateway/proxy/tenants.hpp"

#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http.hpp>

#include <cstdint>
#include <memory>

namespace {

namespace http = boost::beast::http;

std::shared_ptr<const gw::gateway::tenant_directory> directory()
{
    auto c = std::make_shared<gw::config::gateway_config>();
    c->upstreams["dify"].url = "https://api.dify.ai";
    c->apps["chat"] = {"dify", {"app-k1"}, 0};
    c->apps["workflow"] = {"dify", {"app-k2"}, 0};
    gw::config::tenant_config t;
    t.keys = {"gw-fuzz-tenant-key-0123456789"};
    t.apps = {"chat", "workflow"};
    t.default_app = "chat";
    c->tenants["fuzz"] = t;
    return std::make_shared<const gw::gateway::tenant_directory>(c);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    static const auto dir = directory();
    gw::gateway::client_request_parser<http::string_body> p; // the fields the gateway reads heads into
    p.header_limit(16 * 1024);
    p.body_limit(1 << 20);
    p.eager(true);
    boost::system::error_code ec;
    std::size_t used = 0;
    while (used < size && !p.is_done()) {
        auto n = p.put(boost::asio::buffer(data + used, size - used), ec);
        if (ec == http::error::need_more) break;
        if (ec || n == 0) break;
        used += n;
    }
    if (!p.is_header_done()) return 0;
    const auto& req = p.get();
    gw::gateway::gateway_error err;
    const auto* who = dir->authenticate(req[http::field::authorization], err);
    std::string_view target = req.target();
    auto q = target.find('?');
    std::string_view query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
    (void)gw::gateway::check_request_head(req);
    auto path = gw::core::canonicalize_path(target.substr(0, q));
    if (who && path) {
        // The canonical path is a fixed point: canonicalizing its wire form changes nothing.
        auto again = gw::core::canonicalize_path(path->wire());
        if (!again || again->wire() != path->wire()) __builtin_trap();
        if (auto app = dir->route(*who, req.method_string(), *path, err)) {
            auto place = app->match.route ? app->match.route->place : gw::core::user_place::anywhere;
            (void)gw::core::owned_references(app->match, query);
            if (app->match.route) (void)gw::core::stop_path_for(*app->match.route, "task");
            if (place == gw::core::user_place::query) (void)gw::core::rewrite_query_user(query, who->name);
            if (place == gw::core::user_place::json_body && p.is_done()) {
                gw::core::json_references refs;
                (void)gw::core::rewrite_json_user(req.body(), who->name, nullptr, &refs);
            }
        }
    }
    return 0;
}
