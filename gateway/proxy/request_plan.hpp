// What a request's head resolves to against one configuration snapshot, before any I/O:
// a refusal, or the tenant, the app, the Dify route and how Dify's stack reads the
// request (where `user` lives, whether it generates, whether it creates a file). A pure
// function of the head and the snapshot: tested without sockets, and resolved once per
// request (nothing after it looks names up again).
#pragma once

#include "gateway/ops/metric_names.hpp"
#include "gateway/ops/metrics.hpp"
#include "gateway/proxy/tenants.hpp"

#include "gateway/head_fields.hpp"

#include <optional>

namespace gw::gateway {

struct request_plan
{
    api_front front = api_front::dify;
    std::optional<gateway_error> refusal;
    bool close_after_refusal = false;                    // the request's framing itself is in doubt
    const tenant* who = nullptr;                         // set once authenticated
    std::optional<app_target> target;                    // set once routed
    const core::dify_route* route = nullptr;             // null: an unknown route forwarded by switch
    std::uint32_t pair = metric_names::anonymous;        // metric_names pair the request counts under
    std::uint16_t endpoint = no_endpoint;                // endpoint_id(route) once routed
    bool generates = false;                              // starts an LLM generation (quota, not idempotent)
    core::user_place place = core::user_place::anywhere; // where Dify reads `user`
    bool uploads_file = false;                           // the reply names a new file
};

// Checks in order: a head Dify's stack could read differently (400, connection closes),
// a path that cannot be read unambiguously (400), the tenant key (401), the app and route
// (403/404/405). An OpenAI front request stops after the key: its app is in its body.
// `memo` (optional): the connection's last accepted key, consulted and updated.
request_plan plan_request(const tenant_directory& dir, const request_head& head,
                          key_memo* memo = nullptr);

} // namespace gw::gateway
