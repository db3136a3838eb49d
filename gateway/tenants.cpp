#include "gateway/tenants.hpp"

#include "core/key_hash.hpp"
#include "core/text.hpp"

#include <algorithm>

namespace gw::gateway {

tenant_directory::tenant_directory(std::shared_ptr<const config::gateway_config> cfg) : cfg_(std::move(cfg))
{
    for (const auto& [name, t] : cfg_->tenants) {
        for (const auto& key : t.keys) {
            auto digest = key.starts_with(core::sha256_prefix) ? core::to_lower(key.substr(core::sha256_prefix.size()))
                                                                : core::sha256_hex(key);
            by_digest_.emplace(std::move(digest), tenant{name, &t});
        }
    }
}

const tenant* tenant_directory::authenticate(std::string_view authorization, gateway_error& err) const
{
    auto space = authorization.find(' ');
    if (authorization.empty() || space == std::string_view::npos) {
        err = {401, "unauthorized", "Authorization header must be provided and start with 'Bearer'"};
        return nullptr;
    }
    if (!core::iequals(authorization.substr(0, space), "bearer")) {
        err = {401, "unauthorized", "Authorization scheme must be 'Bearer'"};
        return nullptr;
    }
    auto key = core::trim(authorization.substr(space + 1));
    // Keys are looked up by their SHA-256: the time taken depends on the digest only,
    // never on how much of a stored key matches the presented one.
    auto it = by_digest_.find(core::sha256_hex(key));
    if (key.empty() || it == by_digest_.end()) {
        err = {401, "unauthorized", "Access token is invalid"};
        return nullptr;
    }
    return &it->second;
}

std::optional<app_target> tenant_directory::route(const tenant& t, std::string_view path, gateway_error& err) const
{
    std::string app;
    std::string_view rest;
    if (path == "/v1" || path.starts_with("/v1/")) {
        app = t.cfg->default_app;
        rest = path.substr(3);
    } else if (path.starts_with("/apps/")) {
        auto after = path.substr(6);
        auto slash = after.find('/');
        app = std::string(after.substr(0, slash));
        rest = slash == std::string_view::npos ? std::string_view{} : after.substr(slash);
        if (!(rest == "/v1" || rest.starts_with("/v1/"))) {
            err = {404, "not_found", "The requested URL was not found on the gateway."};
            return std::nullopt;
        }
        rest = rest.substr(3);
        if (!cfg_->apps.contains(app)) {
            err = {404, "app_not_found", "App '" + app + "' does not exist."};
            return std::nullopt;
        }
        if (std::find(t.cfg->apps.begin(), t.cfg->apps.end(), app) == t.cfg->apps.end()) {
            err = {403, "forbidden", "This key may not use app '" + app + "'."};
            return std::nullopt;
        }
    } else {
        err = {404, "not_found", "The requested URL was not found on the gateway."};
        return std::nullopt;
    }
    return app_target{app, rest.empty() ? std::string("/") : std::string(rest)};
}

} // namespace gw::gateway
