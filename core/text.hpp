// Small text helpers shared by config, emulator and gateway: ASCII case folding,
// trimming, splitting, HTTP header parameter extraction and UUID reading.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gw::core {

bool iequals(std::string_view a, std::string_view b);
// ASCII case-insensitive order, bytes compared unsigned (as std::string orders them once
// lower-cased): sorts and searches names without lower-casing copies of them.
bool iless(std::string_view a, std::string_view b);
std::string to_lower(std::string_view s);
std::string_view trim(std::string_view s);
std::vector<std::string_view> split(std::string_view s, char sep);
// Calls f(part) for each part split() would return, in order, without a vector.
template <typename F>
void for_each_part(std::string_view s, char sep, F&& f)
{
    for (;;) {
        const auto pos = s.find(sep);
        f(s.substr(0, pos));
        if (pos == std::string_view::npos) return;
        s.remove_prefix(pos + 1);
    }
}

// Value of parameter `name` in a header value such as
// `multipart/form-data; boundary="abc"` or `form-data; name="file"; filename="a.txt"`.
// Quotes are removed; backslash escapes inside quotes are honoured.
std::optional<std::string> header_param(std::string_view header_value, std::string_view name);

// The parameters of a header value (`type; a=1; b="x"`), keys lower-cased, or nullopt when
// parsers could read them differently: a key given twice, an RFC 2231 key (`name*=`), a
// quoted value with a backslash or without its closing quote, bytes after a closing quote,
// a key that is not a token, or a control character.
using header_params = std::vector<std::pair<std::string, std::string>>;
std::optional<header_params> unambiguous_header_params(std::string_view header_value);
// The value for `key` in `params` (keys lower-case), or nullopt.
std::optional<std::string> find_param(const header_params& params, std::string_view key);

// Whether a Content-Type value starts with a plain `type/subtype` of token characters,
// followed by nothing or by `;` (after optional spaces): what every parser reads alike.
// (Werkzeug takes the first run of characters that are not `;`, `,` or whitespace, so
// `application/json x` or `application/json,text/plain` is JSON to Flask.)
bool plain_media_type(std::string_view content_type);

// The media type of a Content-Type value, lowercased, without parameters.
std::string media_type(std::string_view content_type);
// Whether that media type is `type` (given in lower case); compares without a copy.
bool has_media_type(std::string_view content_type, std::string_view type);
// Whether Flask reads a body of this type as JSON (request.is_json): application/json or
// any application/*+json.
bool is_json_media_type(std::string_view content_type);

// Decodes %XX escapes and '+' (as a space) in an application/x-www-form-urlencoded component.
// Returns nullopt on a malformed escape.
std::optional<std::string> form_decode(std::string_view s);
// Decodes %XX escapes only (a URL path). Returns nullopt on a malformed escape.
std::optional<std::string> percent_decode(std::string_view s);
// Whether `s` is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF).
bool valid_utf8(std::string_view s);
// Appends `s` as a JSON string: quoted, with quotes, backslashes and control characters
// escaped, every other byte as it is.
void append_json_string(std::string& out, std::string_view s);

// The 16 bytes of a UUID written as Dify writes its ids: 8-4-4-4-12 lower-case hex digits
// with hyphens; nullopt for any other spelling (upper case, braces, no hyphens...).
using uuid_bytes = std::array<std::uint8_t, 16>;
std::optional<uuid_bytes> parse_canonical_uuid(std::string_view id);

} // namespace gw::core

namespace gw::core {

struct host_port
{
    std::string host; // without brackets for IPv6
    std::uint16_t port = 0;
};

// Parses "host:port", "[v6]:port". Port 0 is allowed (bind an ephemeral port).
std::optional<host_port> parse_host_port(std::string_view s);

} // namespace gw::core
