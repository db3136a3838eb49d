// Tenant authentication and app selection: a tenant's gateway key (plaintext
// or sha256 in config) maps to the tenant; a path names the app (`/v1/...` = the
// tenant's default app, `/apps/<app>/v1/...`). Built once per configuration (apps, their
// upstreams and metric ids resolved here); immutable after construction: shared by all
// workers without locks.
#pragma once

#include "config/gateway_config.hpp"
#include "core/dify_routes.hpp"
#include "core/key_hash.hpp"

#include <cstdint>
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

// Which API a request speaks: Dify's own (/v1, /apps/<app>/v1), or the OpenAI-compatible
// front (/openai/v1), whose app is named in the body and whose errors are OpenAI's.
enum class api_front
{
    dify,
    openai_chat,   // POST /openai/v1/chat/completions
    openai_models, // GET /openai/v1/models (and the front's unknown paths)
};

// An app as the configuration resolved it at load: what the hops after the plan need,
// without looking a name up again.
struct app_handle
{
    std::string name;
    const config::app_config* cfg = nullptr;
    const std::string* upstream_name = nullptr;
    const config::upstream_config* upstream = nullptr;
    std::uint32_t id = 0;          // metric_names app id: the worker's Dify key cursor
    std::uint32_t upstream_id = 0; // metric_names upstream id: the worker's pool, retry metrics
};

struct tenant
{
    std::string name;
    const config::tenant_config* cfg = nullptr;
    std::uint32_t id = 0;       // metric_names tenant id
    std::uint32_t unrouted = 0; // metric_names pair (tenant, ""): requests refused before an app was chosen
    std::unordered_map<std::string, std::uint32_t> pair_of_app; // metric_names pair (tenant, app)
};

// Where a request goes: the tenant's app, the Dify path below /v1 (canonical: decoded
// for decisions, encoded for the wire) and the route it matched in the route table.
struct app_target
{
    const app_handle* app = nullptr;
    std::uint32_t pair = 0;   // metric_names pair (tenant, app)
    std::string dify_path;    // decoded, e.g. "/chat-messages"
    std::string wire_path;    // percent-encoded as it goes upstream (after /v1)
    core::route_match match;  // match.route is null for an unknown route forwarded by switch
    bool administers = false; // the tenant may use this app's app-wide routes
};

// A connection's last accepted Authorization value and the tenant it named, under one
// directory (by its generation: no two directories of a process share one). A keep-alive
// client presents the same key with every request, and hashing it again was the largest
// cost of planning a request. Lives with the connection; holds the header's bytes (as the
// request itself does) until the connection closes or presents another key. Behind a
// proxy a connection may carry several tenants' requests: each is still its own key's
// tenant, and the comparison takes the same time however much of the header matches.
struct key_memo
{
    std::uint64_t generation = 0; // 0: nothing remembered
    std::string authorization;
    const tenant* who = nullptr;
};

class tenant_directory
{
public:
    explicit tenant_directory(std::shared_ptr<const config::gateway_config> cfg);

    // The tenant for an Authorization header, or a 401 in Dify's shape.
    const tenant* authenticate(std::string_view authorization, gateway_error& err) const;
    // The same, answered from `memo` when it holds this directory's answer for the same
    // header value; an accepted key is remembered there (a refused one never is).
    const tenant* authenticate(std::string_view authorization, gateway_error& err, key_memo& memo) const;

    // The app, Dify path and route a canonical request path selects for `t`, or
    // 404 app_not_found / 403 forbidden (app not allowed, app-wide route on a shared app) /
    // 404 not_found (no such route) / 405 method_not_allowed.
    std::optional<app_target> route(
        const tenant& t, std::string_view method, const core::canonical_path& path, gateway_error& err
    ) const;

    // The OpenAI front's target for `model` (an app `t` may use): the Dify route its kind
    // of app takes a turn on (chat-messages, workflows/run, completion-messages); else 404
    // model_not_found (an app of another tenant is not named).
    std::optional<app_target> openai_target(const tenant& t, std::string_view model, gateway_error& err) const;

    // Whether `t` may use the app-wide routes of `app`: an explicit grant (admin_apps), or
    // no other tenant may use the app.
    bool administers(const tenant& t, const std::string& app) const;

    const config::gateway_config& config() const { return *cfg_; }
    // A configured app; nullptr when there is none of that name.
    const app_handle* app(std::string_view name) const;

private:
    std::uint64_t generation_; // this directory's number (from 1, never reused)
    std::shared_ptr<const config::gateway_config> cfg_;
    std::unordered_map<std::string, app_handle> apps_;
    std::unordered_map<std::string, tenant> tenants_;
    std::unordered_map<core::sha256_digest, const tenant*, core::sha256_digest_hash> by_digest_; // key's SHA-256 -> tenant
    std::unordered_map<std::string, int> tenants_of_app_;      // how many tenants may use each app
};

} // namespace gw::gateway
