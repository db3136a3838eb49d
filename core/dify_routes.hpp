// The Service API route table of Dify 1.13.x and the newer public API docs, and the path
// canonicalization every request goes through before any decision is made on it.
//
// The gateway reads a request exactly as Dify's stack (nginx → gunicorn → Flask/Werkzeug)
// will, or refuses it. For paths that means: percent escapes decoded once (gunicorn puts
// the decoded path in PATH_INFO, Werkzeug routes on it, so "%2D" is "-" and "%2F" is a
// separator), empty and "." segments dropped, ".." resolved, and the canonical form is
// what goes upstream, so Dify routes on exactly the path the gateway classified.
//
// Each route says where Dify reads `user`, which ids it names that another tenant may own,
// whether it starts an LLM generation, and whether it is app-wide (its data belongs to every
// tenant of the app: workflow logs, app feedbacks, annotations, end users).
// Paths are relative to /v1 ("/chat-messages", "/conversations/{id}/name", ...).
#pragma once

#include "core/ownership_table.hpp"

#include <boost/container/small_vector.hpp>

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gw::core {

enum class user_place
{
    none,      // the endpoint does not read `user`
    json_body, // JSON body field
    query,     // query-string parameter
    form,      // multipart (or url-encoded) form field
    anywhere,  // an unknown route forwarded by switch: query, JSON body and form alike
};

// A path as Dify will route it. `segments` are decoded (any bytes but '/', NUL and
// controls, valid UTF-8). Made for every request: a usual path (up to eight segments of up
// to 15 bytes) allocates nothing.
struct canonical_path
{
    boost::container::small_vector<std::string, 8> segments;
    std::string wire() const;    // percent-encoded for the upstream: "/v1/chat-messages"; "/" for the root
    std::string decoded() const; // the segments joined by '/', for logs
};

// nullopt (with `why`) for a path that is not origin-form, has a malformed escape, decodes
// to NUL, a control character or invalid UTF-8, or climbs above the root with "..".
std::optional<canonical_path> canonicalize_path(std::string_view raw, std::string* why = nullptr);
// The segments as a wire path ("/a/b%20c").
std::string encode_path(std::span<const std::string> segments);
// The segments as they read decoded ("/a/b c"); "/" for none.
std::string join_path(std::span<const std::string> segments);

struct dify_route
{
    std::string_view method;  // upper case, as Werkzeug compares it
    std::string_view pattern; // "{}" matches one segment
    user_place place;
    bool generating = false;     // starts an LLM generation (quota, not idempotent)
    bool app_wide = false;       // data of the whole app, not of one end user
    std::optional<owned_kind> names{}; // what the first "{}" segment names
    std::string_view stop_pattern{}; // generating routes: the stop call for their task
    bool creates_file = false;       // the reply names a new uploaded file
    std::string_view end_user_filter{}; // app-wide routes Dify can filter exactly by end user
};

// Every route, in table order (the README lists them).
std::span<const dify_route> all_routes();

enum class route_outcome
{
    found,
    method_not_allowed, // the path is a route, not for this method (405)
    not_found,          // no route has this path (404)
};

struct route_match
{
    route_outcome outcome = route_outcome::not_found;
    const dify_route* route = nullptr;
    std::vector<std::string> params; // the "{}" segments, decoded
};

// The route for a method and a Dify path's segments (below /v1). HEAD matches GET routes
// (Flask runs the GET handler for HEAD).
route_match find_route(std::string_view method, std::span<const std::string> segments);

// The stop call's path for a task started by `route` ("" when it starts none).
std::string stop_path_for(const dify_route& route, std::string_view task_id);

// The resources a request names in its path or query that another tenant may own. IDs
// are lower-cased, as Dify matches them (UUIDs).
using owned_reference = std::pair<owned_kind, std::string>;
std::vector<owned_reference> owned_references(const route_match& m, std::string_view query);

// An ID as Dify compares it: lower-case, and a UUID in its canonical spelling whichever
// spelling Dify would accept for it (braces, "urn:uuid:", hyphens moved or left out).
std::string normalized_id(std::string_view decoded);
// True when `id` is already in normalized_id's form (a lower-case hyphenated UUID, as Dify
// writes its ids), so that it can be used as it is.
bool is_normalized_uuid(std::string_view id);

} // namespace gw::core
