#include "gateway/proxy/tenants.hpp"

#include "core/key_hash.hpp"
#include "core/text.hpp"
#include "gateway/ops/metric_names.hpp"

#include <algorithm>
#include <atomic>

namespace gw::gateway {

namespace {

std::uint64_t next_directory_generation()
{
    static std::atomic<std::uint64_t> last{0};
    return ++last;
}

} // namespace

tenant_directory::tenant_directory(std::shared_ptr<const config::gateway_config> cfg)
    : generation_(next_directory_generation()), cfg_(std::move(cfg))
{
    auto& names = metric_names::process();
    for (const auto& [name, a] : cfg_->apps) {
        auto upstream = cfg_->upstreams.find(a.upstream); // validation made sure it exists
        apps_.emplace(
            name,
            app_handle{
                name, &a, &upstream->first, &upstream->second, names.app(name), names.upstream(a.upstream)}
        );
    }
    for (const auto& [name, t] : cfg_->tenants) {
        auto& entry = tenants_[name];
        entry = tenant{name, &t, names.tenant(name), names.pair(name, ""), {}};
        for (const auto& app : t.apps) {
            entry.pair_of_app.emplace(app, names.pair(name, app));
            ++tenants_of_app_[app];
        }
        for (const auto& key : t.keys) {
            // A stored digest is 64 hex digits: validation refuses a config with any other.
            const auto digest = key.starts_with(core::sha256_prefix)
                                    ? core::digest_from_hex(key.substr(core::sha256_prefix.size()))
                                    : core::sha256(key);
            if (digest) by_digest_.emplace(*digest, &entry);
        }
    }
}

const app_handle* tenant_directory::app(std::string_view name) const
{
    auto it = apps_.find(std::string(name));
    return it == apps_.end() ? nullptr : &it->second;
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
    auto it = by_digest_.find(core::sha256(key));
    if (key.empty() || it == by_digest_.end()) {
        err = {401, "unauthorized", "Access token is invalid"};
        return nullptr;
    }
    return it->second;
}

const tenant* tenant_directory::authenticate(std::string_view authorization, gateway_error& err, key_memo& memo) const
{
    // Compared in constant time: behind a proxy one connection carries several tenants'
    // requests, and an early-exit comparison would time how much of another tenant's
    // remembered header a guess matches.
    if (memo.generation == generation_ && core::constant_time_equal(memo.authorization, authorization)) return memo.who;
    const tenant* who = authenticate(authorization, err);
    if (who) { // the generation last: a throwing assign leaves the memo naming no directory
        memo.generation = 0;
        memo.authorization.assign(authorization);
        memo.who = who;
        memo.generation = generation_;
    }
    return who;
}

std::optional<app_target> tenant_directory::openai_target(const tenant& t, std::string_view model, gateway_error& err) const
{
    const auto* handle = app(model);
    auto pair = t.pair_of_app.find(std::string(model));
    if (!handle || pair == t.pair_of_app.end()) {
        err = {404, "model_not_found", "The model '" + std::string(model) + "' does not exist or you do not have access to it."};
        return std::nullopt;
    }
    std::vector<std::string> dify;
    switch (handle->cfg->openai.type) {
    case config::openai_app_kind::chat: dify = {"chat-messages"}; break;
    case config::openai_app_kind::workflow: dify = {"workflows", "run"}; break;
    case config::openai_app_kind::completion: dify = {"completion-messages"}; break;
    }
    app_target out;
    out.app = handle;
    out.pair = pair->second;
    out.wire_path = core::encode_path(dify);
    out.dify_path = core::join_path(dify);
    out.match = core::find_route("POST", dify);
    out.administers = administers(t, handle->name);
    return out;
}

bool tenant_directory::administers(const tenant& t, const std::string& app) const
{
    if (std::find(t.cfg->admin_apps.begin(), t.cfg->admin_apps.end(), app) != t.cfg->admin_apps.end())
        return true;
    auto it = tenants_of_app_.find(app);
    return it != tenants_of_app_.end() && it->second == 1;
}

std::optional<app_target> tenant_directory::route(
    const tenant& t, std::string_view method, const core::canonical_path& path, gateway_error& err
) const
{
    const auto& seg = path.segments;
    std::string_view name;
    std::size_t first; // index of the first Dify segment (after "v1")
    if (!seg.empty() && seg[0] == "v1") {
        name = t.cfg->default_app;
        first = 1;
    } else if (seg.size() >= 3 && seg[0] == "apps" && seg[2] == "v1") {
        name = seg[1];
        first = 3;
    } else {
        err = {404, "not_found", "The requested URL was not found on the gateway."};
        return std::nullopt;
    }
    app_target out;
    out.app = app(name);
    auto pair = t.pair_of_app.find(std::string(name));
    if (!out.app) {
        err = {404, "app_not_found", "App '" + std::string(name) + "' does not exist."};
        return std::nullopt;
    }
    if (pair == t.pair_of_app.end()) {
        err = {403, "forbidden", "This key may not use app '" + std::string(name) + "'."};
        return std::nullopt;
    }
    out.pair = pair->second;
    std::span<const std::string> dify(seg.data() + first, seg.size() - first);
    out.wire_path = core::encode_path(dify);
    out.dify_path = core::join_path(dify);
    out.match = core::find_route(method, dify);
    out.administers = administers(t, out.app->name);
    switch (out.match.outcome) {
    case core::route_outcome::found:
        break;
    case core::route_outcome::method_not_allowed:
        err = {405, "method_not_allowed", "The method is not allowed for the requested URL."};
        return std::nullopt;
    case core::route_outcome::not_found:
        if (cfg_->server.forward_unknown_routes) return out;
        err = {404, "not_found", "The requested URL is not a Dify Service API route the gateway knows."};
        return std::nullopt;
    }
    const auto& r = *out.match.route;
    if (r.app_wide && !out.administers && r.end_user_filter.empty()) {
        err = {
            403, "forbidden",
            "This route reads or changes data of every tenant of app '" + out.app->name +
                "'; it needs administration of the app (tenants." + t.name + ".admin_apps)."};
        return std::nullopt;
    }
    return out;
}

} // namespace gw::gateway
