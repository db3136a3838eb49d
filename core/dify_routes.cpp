#include "core/dify_routes.hpp"

#include "core/text.hpp"

namespace gw::core {

namespace {

using k = owned_kind;
using up = user_place;

// Dify 1.13.x's Service API (controllers/service_api/app, end_user) plus the routes the
// newer public docs add (re-attach to a run's event stream, human-input forms).
constexpr dify_route routes[] = {
    // method, pattern, user, generating, app_wide, names, stop_pattern, creates_file, end_user_filter
    {"GET", "/", up::none},
    {"POST", "/chat-messages", up::json_body, true, false, {}, "/chat-messages/{}/stop"},
    {"POST", "/chat-messages/{}/stop", up::json_body, false, false, k::task},
    {"POST", "/completion-messages", up::json_body, true, false, {}, "/completion-messages/{}/stop"},
    {"POST", "/completion-messages/{}/stop", up::json_body, false, false, k::task},
    {"POST", "/workflows/run", up::json_body, true, false, {}, "/workflows/tasks/{}/stop"},
    {"POST", "/workflows/{}/run", up::json_body, true, false, {}, "/workflows/tasks/{}/stop"},
    {"POST", "/workflows/tasks/{}/stop", up::json_body, false, false, k::task},
    {"GET", "/workflows/run/{}", up::none, false, false, k::workflow_run},
    {"GET", "/workflows/logs", up::none, false, true, {}, {}, false, "created_by_end_user_session_id"},
    {"GET", "/workflow/{}/events", up::query, false, false, k::workflow_run},
    {"GET", "/form/human_input/{}", up::none, false, false, k::form},
    {"POST", "/form/human_input/{}", up::json_body, false, false, k::form},
    {"GET", "/messages", up::query},
    {"POST", "/messages/{}/feedbacks", up::json_body, false, false, k::message},
    {"GET", "/messages/{}/suggested", up::query, false, false, k::message},
    {"GET", "/conversations", up::query},
    {"DELETE", "/conversations/{}", up::json_body, false, false, k::conversation},
    {"POST", "/conversations/{}/name", up::json_body, false, false, k::conversation},
    {"GET", "/conversations/{}/variables", up::query, false, false, k::conversation},
    {"PUT", "/conversations/{}/variables/{}", up::json_body, false, false, k::conversation},
    {"POST", "/text-to-audio", up::json_body},
    {"POST", "/audio-to-text", up::form},
    {"POST", "/files/upload", up::form, false, false, {}, {}, true},
    {"GET", "/files/{}/preview", up::query, false, false, k::file},
    {"GET", "/parameters", up::none},
    {"GET", "/meta", up::none},
    {"GET", "/info", up::none},
    {"GET", "/site", up::none},
    {"GET", "/app/feedbacks", up::none, false, true},
    {"GET", "/end-users/{}", up::none, false, true},
    {"GET", "/apps/annotations", up::none, false, true},
    {"POST", "/apps/annotations", up::none, false, true},
    {"PUT", "/apps/annotations/{}", up::none, false, true},
    {"DELETE", "/apps/annotations/{}", up::none, false, true},
    {"POST", "/apps/annotation-reply/{}", up::none, false, true},
    {"GET", "/apps/annotation-reply/{}/status/{}", up::none, false, true},
};

// Whether `segments` fit `pattern`; walks the pattern in place (no allocation: this runs
// for every route on every request).
bool matches(std::string_view pattern, std::span<const std::string> segments)
{
    std::size_t i = 0;
    for (std::string_view rest = pattern.substr(1); !rest.empty();) {
        auto slash = rest.find('/');
        auto part = rest.substr(0, slash);
        rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
        if (i >= segments.size() || (part != "{}" && part != segments[i])) return false;
        ++i;
    }
    return i == segments.size();
}

// The "{}" segments of a matching pattern.
std::vector<std::string> params_of(std::string_view pattern, std::span<const std::string> segments)
{
    std::vector<std::string> out;
    std::size_t i = 0;
    for_each_part(pattern.substr(1), '/', [&](std::string_view part) {
        if (part.empty()) return; // the root pattern "/"
        if (part == "{}") out.push_back(segments[i]);
        ++i;
    });
    return out;
}

bool unreserved_in_path(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    switch (c) {
    case '-': case '.': case '_': case '~': // unreserved
    case '!': case '$': case '&': case '\'': case '(': case ')': case '*': case '+': case ',': case ';': case '=': // sub-delims
    case ':': case '@': return true;
    default: return false;
    }
}

} // namespace

std::optional<canonical_path> canonicalize_path(std::string_view raw, std::string* why)
{
    auto fail = [&](const char* reason) -> std::optional<canonical_path> {
        if (why) *why = reason;
        return std::nullopt;
    };
    if (raw.empty() || raw.front() != '/') return fail("the request target is not an absolute path");
    canonical_path out;
    // Decoded first, then split: "%2F" separates segments for Werkzeug as "/" does. A path
    // with no escape is its own decoding.
    std::optional<std::string> unescaped;
    std::string_view decoded = raw;
    if (raw.find('%') != std::string_view::npos) {
        unescaped = percent_decode(raw);
        if (!unescaped) return fail("the path has a malformed percent escape");
        decoded = *unescaped;
    }
    for (unsigned char c : decoded)
        if (c < 0x20 || c == 0x7F) return fail("the path contains a control character");
    if (!valid_utf8(decoded)) return fail("the path is not valid UTF-8");
    for (std::string_view rest = decoded; !rest.empty();) {
        const auto slash = rest.find('/');
        const auto seg = rest.substr(0, slash);
        rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
        if (seg.empty() || seg == ".") continue;
        if (seg == "..") {
            if (out.segments.empty()) return fail("the path climbs above the root");
            out.segments.pop_back();
            continue;
        }
        out.segments.emplace_back(seg);
    }
    return out;
}

std::string canonical_path::wire() const
{
    return encode_path(std::span<const std::string>(segments.data(), segments.size()));
}

std::string canonical_path::decoded() const
{
    return join_path(std::span<const std::string>(segments.data(), segments.size()));
}

std::string join_path(std::span<const std::string> segments)
{
    std::string out;
    for (const auto& s : segments) out.append("/").append(s);
    if (out.empty()) out = "/";
    return out;
}

std::string encode_path(std::span<const std::string> segments)
{
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (const auto& seg : segments) {
        out.push_back('/');
        for (unsigned char c : seg) {
            if (unreserved_in_path(c)) {
                out.push_back(static_cast<char>(c));
            } else {
                out.push_back('%');
                out.push_back(hex[c >> 4]);
                out.push_back(hex[c & 15]);
            }
        }
    }
    if (out.empty()) out = "/";
    return out;
}

std::span<const dify_route> all_routes()
{
    return routes;
}

route_match find_route(std::string_view method, std::span<const std::string> segments)
{
    route_match out;
    const std::string_view as = method == "HEAD" ? std::string_view("GET") : method;
    for (const auto& r : routes) {
        if (!matches(r.pattern, segments)) continue;
        if (r.method != as) {
            out.outcome = route_outcome::method_not_allowed;
            continue;
        }
        out.outcome = route_outcome::found;
        out.route = &r;
        out.params = params_of(r.pattern, segments);
        return out;
    }
    return out;
}

std::string stop_path_for(const dify_route& route, std::string_view task_id)
{
    if (route.stop_pattern.empty() || task_id.empty()) return {};
    std::string id(task_id);
    std::string out(route.stop_pattern);
    out.replace(out.find("{}"), 2, encode_path(std::span<const std::string>(&id, 1)).substr(1));
    return out;
}

std::string normalized_id(std::string_view decoded)
{
    // One UUID has several spellings that Dify resolves to the same row: PostgreSQL's uuid
    // input takes upper case, braces and hyphens after any group of four digits (or none),
    // and Python's uuid.UUID() (Dify's id validation) also drops "urn:uuid:". Any of them
    // becomes the canonical form, so that the ledger cannot be passed by respelling an id;
    // anything else is only lower-cased. One pass, one allocation (the result).
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    std::string_view v = decoded;
    if (v.size() >= 9 && iequals(v.substr(0, 9), "urn:uuid:")) v.remove_prefix(9);
    if (v.size() >= 2 && v.front() == '{' && v.back() == '}') v = v.substr(1, v.size() - 2);
    char hex[32];
    std::size_t n = 0;
    for (char c : v) {
        if (c == '-') continue;
        c = lower(c);
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) || n == 32) return to_lower(decoded);
        hex[n++] = c;
    }
    if (n != 32) return to_lower(decoded);
    std::string out(36, '-');
    for (std::size_t i = 0, at = 0; i < 32; ++i, ++at) {
        if (i == 8 || i == 12 || i == 16 || i == 20) ++at;
        out[at] = hex[i];
    }
    return out;
}

bool is_normalized_uuid(std::string_view id)
{
    return parse_canonical_uuid(id).has_value();
}

std::vector<owned_reference> owned_references(const route_match& m, std::string_view query)
{
    std::vector<owned_reference> out;
    if (m.outcome != route_outcome::found) return out;
    if (m.route->names && !m.params.empty()) out.emplace_back(*m.route->names, normalized_id(m.params.front()));
    if (m.route->method == "GET" && m.route->pattern == "/messages") {
        // Werkzeug's request.args: every conversation_id; Dify reads the first, check all.
        for (auto part : split(query, '&')) {
            auto eq = part.find('=');
            auto key = form_decode(part.substr(0, eq));
            if (!key || *key != "conversation_id" || eq == std::string_view::npos) continue;
            auto value = form_decode(part.substr(eq + 1));
            if (value && !value->empty()) out.emplace_back(owned_kind::conversation, normalized_id(*value));
        }
    }
    return out;
}

} // namespace gw::core
