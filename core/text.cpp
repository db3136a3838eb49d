#include "core/text.hpp"

#include "core/byte_scan.hpp"
#include "core/byte_words.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>

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

// Eight bytes with A-Z turned to a-z and every other byte as it is (0x20 is 'a' - 'A').
std::uint64_t lower_word(std::uint64_t w)
{
    using namespace byte_words;
    const std::uint64_t upper =
        low_bits_at_least(w, 'A') & ~low_bits_at_least(w, 'Z' + 1) & ~w; // ~w: ASCII only
    return w | (upper >> 2);
}
} // namespace

bool iequals(std::string_view a, std::string_view b)
{
    if (a.size() != b.size()) return false;
    std::size_t i = 0;
    for (; a.size() - i >= 8; i += 8)
        if (lower_word(byte_words::load(a.data() + i)) != lower_word(byte_words::load(b.data() + i)))
            return false;
    for (; i < a.size(); ++i)
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

// Eight lower-case hex digits (a word from byte_words::load) into their four bytes.
// Returns the high bit of each byte that is not 0-9 or a-f (none: all were digits).
std::uint64_t decode_hex_word(std::uint64_t w, std::uint8_t* out)
{
    using namespace byte_words;
    const std::uint64_t l = w ^ (ones * 0x60); // a-f: 1-6
    const std::uint64_t letters = low_bits_at_least(l, 1) & ~low_bits_at_least(l, 7) & ~l;
    // A digit's value is its low four bits; a letter's (bit 6 set) nine more.
    const std::uint64_t v = (w & (ones * 0x0F)) + ((w >> 6) & ones) * 9;
    // Pairs of values into bytes, then the bytes side by side.
    constexpr std::uint64_t even = 0x000F000F000F000FULL;
    std::uint64_t b = ((v & even) << 4) | ((v >> 8) & even);
    b = (b | (b >> 8)) & 0x0000FFFF0000FFFFULL;
    auto four = static_cast<std::uint32_t>(b | (b >> 16));
    if constexpr (std::endian::native == std::endian::big) four = __builtin_bswap32(four);
    std::memcpy(out, &four, 4);
    return non_digits(w) & ~letters;
}

} // namespace

std::optional<uuid_bytes> parse_canonical_uuid(std::string_view id)
{
    if (id.size() != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-') return std::nullopt;
    // The 32 digits of the 8-4-4-4-12 form side by side, then eight at a time.
    std::array<char, 32> digits;
    const char* s = id.data();
    std::memcpy(digits.data(), s, 8);
    std::memcpy(digits.data() + 8, s + 9, 4);
    std::memcpy(digits.data() + 12, s + 14, 4);
    std::memcpy(digits.data() + 16, s + 19, 4);
    std::memcpy(digits.data() + 20, s + 24, 12);
    uuid_bytes out;
    std::uint64_t not_hex = 0;
    for (std::size_t i = 0; i < 4; ++i)
        not_hex |= decode_hex_word(byte_words::load(digits.data() + 8 * i), out.data() + 4 * i);
    if (not_hex != 0) return std::nullopt;
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
