// Tenant authentication and app selection (design §5): a tenant's gateway key (plaintext
// or sha256 in config) maps to the tenant; a path names the app (`/v1/...` = the
// tenant's default app, `/apps/<app>/v1/...`). Immutable after construction: shared by
// all workers without locks.
#pragma once

#include "config/gateway_config.hpp"

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

// Where a request goes: the tenant's app and the Dify path below /v1 (with leading '/').
struct app_target
{
    std::string app;
    std::string dify_path; // e.g. "/chat-messages"
};

class tenant_directory
{
public:
    explicit tenant_directory(std::shared_ptr<const config::gateway_config> cfg);

    // The tenant for an Authorization header, or a 401 in Dify's shape.
    const tenant* authenticate(std::string_view authorization, gateway_error& err) const;

    // The app and Dify path a request target selects for `t` (path without query), or
    // 404 app_not_found / 403 forbidden / 404 not_found.
    std::optional<app_target> route(const tenant& t, std::string_view path, gateway_error& err) const;

    const config::gateway_config& config() const { return *cfg_; }
    // The upstream an app is served by.
    const config::upstream_config& upstream_of(const std::string& app) const
    {
        return cfg_->upstreams.at(cfg_->apps.at(app).upstream);
    }

private:
    std::shared_ptr<const config::gateway_config> cfg_;
    std::unordered_map<std::string, tenant> by_digest_; // sha256 hex of the key -> tenant
};

} // namespace gw::gateway
