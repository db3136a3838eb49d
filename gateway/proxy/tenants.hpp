// Tenant authentication and app selection: a tenant's gateway key (plaintext
// or sha256 in config) maps to the tenant; a path names the app (`/v1/...` = the
// tenant's default app, `/apps/<app>/v1/...`). Immutable after construction: shared by
// all workers without locks.
#pragma once

#include "config/gateway_config.hpp"
#include "core/dify_routes.hpp"

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace gw::gateway {

struct gateway_error
{
    int status;
    std::string code;
    std::string message;
};

struct tenant
{
    std::string name;
    const config::tenant_config* cfg;
};

// Where a request goes: the tenant's app, the Dify path below /v1 (canonical: decoded
// for decisions, encoded for the wire) and the route it matched in the route table.
struct app_target
{
    std::string app;
    std::string dify_path;     // decoded, e.g. "/chat-messages"
    std::string wire_path;     // percent-encoded as it goes upstream (after /v1)
    core::route_match match;   // match.route is null for an unknown route forwarded by switch
    bool administers = false;  // the tenant may use this app's app-wide routes
};

class tenant_directory
{
public:
    explicit tenant_directory(std::shared_ptr<const config::gateway_config> cfg);

    // The tenant for an Authorization header, or a 401 in Dify's shape.
    const tenant* authenticate(std::string_view authorization, gateway_error& err) const;

    // The app, Dify path and route a canonical request path selects for `t`, or
    // 404 app_not_found / 403 forbidden (app not allowed, app-wide route on a shared app) /
    // 404 not_found (no such route) / 405 method_not_allowed.
    std::optional<app_target> route(const tenant& t, std::string_view method, const core::canonical_path& path,
                                    gateway_error& err) const;

    // Whether `t` may use the app-wide routes of `app`: an explicit grant (admin_apps), or
    // no other tenant may use the app.
    bool administers(const tenant& t, const std::string& app) const;

    const config::gateway_config& config() const { return *cfg_; }
    // The upstream an app is served by.
    const config::upstream_config& upstream_of(const std::string& app) const
    {
        return cfg_->upstreams.at(cfg_->apps.at(app).upstream);
    }

private:
    std::shared_ptr<const config::gateway_config> cfg_;
    std::unordered_map<std::string, tenant> by_digest_; // sha256 hex of the key -> tenant
    std::unordered_map<std::string, int> tenants_of_app_; // how many tenants may use each app
};

} // namespace gw::gateway
