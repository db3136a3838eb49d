// The checks a request head passes before the gateway decides anything on it: whatever
// Dify's stack (nginx → gunicorn → Flask/Werkzeug) could read differently from the
// gateway is refused here — unknown or non-canonical methods, duplicate framing or content
// headers, trailers, transfer codings other than a single `chunked`, encoded request
// bodies, CR/LF inside values, targets that are not origin-form.
#pragma once

#include "gateway/proxy/tenants.hpp"

#include "gateway/head_fields.hpp"

#include <optional>
#include <span>
#include <string_view>

namespace gw::gateway {

// The error to answer (400 bad_request or 405 method_not_allowed), or nullopt.
std::optional<gateway_error> check_request_head(const request_head& head);

// Headers that describe one hop (RFC 9110 §7.6.1): never forwarded, in either direction. By
// the code Beast's parser gave the name (every such name has one).
bool is_hop_by_hop(boost::beast::http::field id);

// Whether a request header is forwarded to Dify: not hop-by-hop, not one the gateway sets
// or replaces, and not a name with '_' (nginx drops those, and WSGI would merge `X_A` with
// `X-A`). `connection_tokens` are the names the Connection header lists, sorted by
// core::iless (any case: they are compared without case). `id` is the code Beast's parser
// gave the name (it matches known names without case; unknown for the others).
bool forwarded_request_header(
    boost::beast::http::field id, std::string_view name, std::span<const std::string_view> connection_tokens
);

} // namespace gw::gateway
