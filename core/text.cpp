#include "core/text.hpp"

#include "core/byte_scan.hpp"

#include <algorithm>

namespace gw::core {

namespace {
char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
} // namespace

bool iequals(std::string_view a, std::string_view b)
{
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (lower(a[i]) != lower(b[i])) return false;
    return true;
}

bool iless(std::string_view a, std::string_view b)
{
    const auto n = std::min(a.size(), b.size());
    for (std::size_t i = 0; i < n; ++i) {
        const auto x = static_cast<unsigned char>(lower(a[i])), y = static_cast<unsigned char>(lower(b[i]));
        if (x != y) return x < y;
    }
    return a.size() < b.size();
}

std::string to_lower(std::string_view s)
{
    std::string out(s);
    for (char& c : out) c = lower(c);
    return out;
}

std::string_view trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
        s.remove_suffix(1);
    return s;
}

std::vector<std::string_view> split(std::string_view s, char sep)
{
    std::vector<std::string_view> out;
    for_each_part(s, sep, [&](std::string_view part) { out.push_back(part); });
    return out;
}

std::optional<std::string> header_param(std::string_view value, std::string_view name)
{
    // Walk `; key=value` pairs after the first token, honouring quoted strings.
    std::size_t i = value.find(';');
    while (i != std::string_view::npos && i < value.size()) {
        ++i;
        while (i < value.size() && (value[i] == ' ' || value[i] == '\t')) ++i;
        std::size_t eq = i;
        while (eq < value.size() && value[eq] != '=' && value[eq] != ';') ++eq;
        std::string_view key = trim(value.substr(i, eq - i));
        if (eq >= value.size() || value[eq] == ';') {
            i = eq;
            continue;
        }
        std::size_t j = eq + 1;
        std::string val;
        if (j < value.size() && value[j] == '"') {
            ++j;
            while (j < value.size() && value[j] != '"') {
                if (value[j] == '\\' && j + 1 < value.size()) ++j;
                val.push_back(value[j++]);
            }
            if (j < value.size()) ++j; // closing quote
            while (j < value.size() && value[j] != ';') ++j;
        } else {
            std::size_t end = value.find(';', j);
            val = std::string(trim(value.substr(j, end == std::string_view::npos ? end : end - j)));
            j = end == std::string_view::npos ? value.size() : end;
        }
        if (iequals(key, name)) return val;
        i = j;
    }
    return std::nullopt;
}

namespace {
bool is_token_char(char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}
} // namespace

std::optional<header_params> unambiguous_header_params(std::string_view value)
{
    for (char c : value)
        if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7F) return std::nullopt;
    header_params out;
    std::size_t i = value.find(';');
    while (i != std::string_view::npos && i < value.size()) {
        ++i; // past ';'
        while (i < value.size() && (value[i] == ' ' || value[i] == '\t')) ++i;
        if (i == value.size()) break; // a trailing ';'
        std::size_t eq = i;
        while (eq < value.size() && is_token_char(value[eq])) ++eq;
        std::string key = to_lower(value.substr(i, eq - i));
        // RFC 2231 forms (`name*=`, continuations `name*0=`) are read differently by parsers.
        if (key.empty() || key.find('*') != std::string::npos || eq >= value.size() || value[eq] != '=') return std::nullopt;
        if (find_param(out, key)) return std::nullopt;
        std::size_t j = eq + 1;
        std::string val;
        if (j < value.size() && value[j] == '"') {
            auto close = value.find('"', j + 1);
            if (close == std::string_view::npos) return std::nullopt;
            val = std::string(value.substr(j + 1, close - j - 1));
            if (val.find('\\') != std::string::npos) return std::nullopt;
            j = close + 1;
        } else {
            std::size_t end = j;
            while (end < value.size() && is_token_char(value[end])) ++end;
            val = std::string(value.substr(j, end - j));
            j = end;
            if (val.empty()) return std::nullopt;
        }
        // The value ends at ';' (or the end): Werkzeug would keep a space before ';' in an
        // unquoted value (`boundary=a ;`), so no byte may stand between.
        if (j < value.size() && value[j] != ';') return std::nullopt;
        out.emplace_back(std::move(key), std::move(val));
        i = j < value.size() ? j : std::string_view::npos;
    }
    return out;
}

std::optional<std::string> find_param(const header_params& params, std::string_view key)
{
    for (const auto& [k, v] : params)
        if (k == key) return v;
    return std::nullopt;
}

bool plain_media_type(std::string_view content_type)
{
    auto type = content_type.substr(0, content_type.find(';'));
    while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.remove_suffix(1);
    auto slash = type.find('/');
    if (slash == std::string_view::npos || slash == 0 || slash + 1 == type.size()) return false;
    for (std::size_t i = 0; i < type.size(); ++i)
        if (i != slash && !is_token_char(type[i])) return false;
    return true;
}

namespace {
std::string_view media_type_as_sent(std::string_view content_type)
{
    return trim(content_type.substr(0, content_type.find(';')));
}
} // namespace

std::string media_type(std::string_view content_type)
{
    return to_lower(media_type_as_sent(content_type));
}

bool has_media_type(std::string_view content_type, std::string_view type)
{
    return iequals(media_type_as_sent(content_type), type);
}

bool is_json_media_type(std::string_view content_type)
{
    constexpr std::string_view prefix = "application/", suffix = "+json";
    const auto type = media_type_as_sent(content_type);
    return iequals(type, "application/json") ||
           (type.size() >= prefix.size() + suffix.size() && iequals(type.substr(0, prefix.size()), prefix) &&
            iequals(type.substr(type.size() - suffix.size()), suffix));
}

namespace {
std::optional<std::string> decode_escapes(std::string_view s, bool plus_is_space)
{
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (plus_is_space && s[i] == '+') {
            out.push_back(' ');
        } else if (s[i] == '%') {
            if (i + 2 >= s.size()) return std::nullopt;
            int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
            if (hi < 0 || lo < 0) return std::nullopt;
            out.push_back(static_cast<char>(hi * 16 + lo));
            i += 2;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}
} // namespace

std::optional<std::string> form_decode(std::string_view s)
{
    return decode_escapes(s, true);
}

std::optional<std::string> percent_decode(std::string_view s)
{
    return decode_escapes(s, false);
}

namespace {

// Hex digit values by character (-1: not a lower-case hex digit).
constexpr std::array<signed char, 256> lower_hex_values = [] {
    std::array<signed char, 256> t{};
    for (auto& v : t) v = -1;
    for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = static_cast<signed char>(c - '0');
    for (int c = 'a'; c <= 'f'; ++c) t[static_cast<std::size_t>(c)] = static_cast<signed char>(c - 'a' + 10);
    return t;
}();

} // namespace

std::optional<uuid_bytes> parse_canonical_uuid(std::string_view id)
{
    // Where each byte's two hex digits start in 8-4-4-4-12 form.
    static constexpr std::array<std::uint8_t, 16> digit_at = {0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34};
    if (id.size() != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-') return std::nullopt;
    uuid_bytes out{};
    int bad = 0; // any digit's value negative: its sign bit
    for (std::size_t b = 0; b < out.size(); ++b) {
        const int hi = lower_hex_values[static_cast<unsigned char>(id[digit_at[b]])];
        const int lo = lower_hex_values[static_cast<unsigned char>(id[digit_at[b] + 1])];
        bad |= hi | lo;
        out[b] = static_cast<std::uint8_t>(hi * 16 + lo);
    }
    if (bad < 0) return std::nullopt;
    return out;
}

bool valid_utf8(std::string_view s)
{
    std::size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t n;
        std::uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + n >= s.size()) return false; // truncated sequence
        for (std::size_t k = 1; k <= n; ++k) {
            auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

} // namespace gw::core

namespace gw::core {

std::optional<host_port> parse_host_port(std::string_view s)
{
    host_port out;
    std::string_view port_text;
    if (s.starts_with('[')) {
        auto close = s.find(']');
        if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') return std::nullopt;
        out.host = std::string(s.substr(1, close - 1));
        port_text = s.substr(close + 2);
    } else {
        auto colon = s.rfind(':');
        if (colon == std::string_view::npos || s.find(':') != colon) return std::nullopt;
        out.host = std::string(s.substr(0, colon));
        port_text = s.substr(colon + 1);
    }
    if (out.host.empty() || port_text.empty() || port_text.size() > 5) return std::nullopt;
    unsigned value = 0;
    for (char c : port_text) {
        if (c < '0' || c > '9') return std::nullopt;
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value > 65535) return std::nullopt;
    out.port = static_cast<std::uint16_t>(value);
    return out;
}

void append_json_string(std::string& out, std::string_view s)
{
    static constexpr char hex[] = "0123456789abcdef";
    out += '"';
    const char* p = s.data();
    const char* const end = p + s.size();
    for (;;) {
        const char* run_end = byte_scan::run_end<false>(p, end); // plain bytes go in one append
        out.append(p, run_end);
        if (run_end == end) break;
        const auto u = static_cast<unsigned char>(*run_end);
        if (u < 0x20) {
            const char escape[] = {'\\', 'u', '0', '0', hex[u >> 4], hex[u & 15]};
            out.append(escape, sizeof escape);
        } else {
            const char escape[] = {'\\', *run_end};
            out.append(escape, sizeof escape);
        }
        p = run_end + 1;
    }
    out += '"';
}

} // namespace gw::core
