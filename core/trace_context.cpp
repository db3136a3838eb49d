#include "core/trace_context.hpp"

#include <algorithm>
#include <array>
#include <cstring>

namespace gw::core {

namespace {

int lower_hex(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

template <std::size_t N>
bool read_hex(std::string_view text, std::array<std::uint8_t, N>& out)
{
    if (text.size() != 2 * N) return false;
    for (std::size_t i = 0; i < N; ++i) {
        const int hi = lower_hex(text[2 * i]), lo = lower_hex(text[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = static_cast<std::uint8_t>(hi * 16 + lo);
    }
    return true;
}

template <std::size_t N>
void append_hex_of(std::string& out, const std::array<std::uint8_t, N>& bytes)
{
    // Each byte's two digits by the byte's value.
    static constexpr std::array<char, 512> pairs = [] {
        constexpr char digits[] = "0123456789abcdef";
        std::array<char, 512> t{};
        for (std::size_t b = 0; b < 256; ++b) {
            t[2 * b] = digits[b >> 4];
            t[2 * b + 1] = digits[b & 0xf];
        }
        return t;
    }();
    std::array<char, 2 * N> text; // written here, appended once
    for (std::size_t i = 0; i < N; ++i)
        std::memcpy(text.data() + 2 * i, pairs.data() + 2 * bytes[i], 2);
    out.append(text.data(), text.size());
}

template <std::size_t N>
std::string hex_of(const std::array<std::uint8_t, N>& bytes)
{
    std::string out;
    append_hex_of(out, bytes);
    return out;
}

bool usable_tracestate(std::string_view s)
{
    return s.size() <= 512 && std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

} // namespace

std::optional<span_context> parse_traceparent(std::string_view h, std::string_view tracestate)
{
    // version(2) - trace(32) - parent(16) - flags(2): 55 characters.
    if (h.size() < 55 || h[2] != '-' || h[35] != '-' || h[52] != '-') return std::nullopt;
    std::array<std::uint8_t, 1> version{}, flags{};
    if (!read_hex(h.substr(0, 2), version) || version[0] == 0xff) return std::nullopt;
    if (version[0] == 0 ? h.size() != 55 : h.size() > 55 && h[55] != '-') return std::nullopt;
    span_context out;
    if (!read_hex(h.substr(3, 32), out.trace) || !read_hex(h.substr(36, 16), out.span) ||
        !read_hex(h.substr(53, 2), flags))
        return std::nullopt;
    if (is_zero(out.trace) || is_zero(out.span)) return std::nullopt;
    out.sampled = (flags[0] & 1) != 0;
    if (usable_tracestate(tracestate)) out.tracestate = std::string(tracestate);
    return out;
}

std::string format_traceparent(const trace_id& t, const span_id& s, bool sampled)
{
    std::string out;
    out.reserve(55);
    out += "00-";
    append_hex_of(out, t);
    out += '-';
    append_hex_of(out, s);
    out += sampled ? "-01" : "-00";
    return out;
}

std::string to_hex(const trace_id& t)
{
    return hex_of(t);
}

std::string to_hex(const span_id& s)
{
    return hex_of(s);
}

void append_hex(std::string& out, const trace_id& t)
{
    append_hex_of(out, t);
}

void append_hex(std::string& out, const span_id& s)
{
    append_hex_of(out, s);
}

bool is_zero(const trace_id& t)
{
    return std::all_of(t.begin(), t.end(), [](std::uint8_t b) { return b == 0; });
}

bool is_zero(const span_id& s)
{
    return std::all_of(s.begin(), s.end(), [](std::uint8_t b) { return b == 0; });
}

trace_id make_trace_id(std::uint64_t hi, std::uint64_t lo)
{
    if (hi == 0 && lo == 0) lo = 1;
    trace_id t{};
    for (int i = 0; i < 8; ++i) {
        t[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(hi >> (56 - 8 * i));
        t[static_cast<std::size_t>(8 + i)] = static_cast<std::uint8_t>(lo >> (56 - 8 * i));
    }
    return t;
}

span_id make_span_id(std::uint64_t r)
{
    if (r == 0) r = 1;
    span_id s{};
    for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(r >> (56 - 8 * i));
    return s;
}

bool sample(const std::optional<span_context>& parent, const trace_id& t, double ratio)
{
    if (parent) return parent->sampled;
    if (ratio >= 1.0) return true;
    if (ratio <= 0.0) return false;
    std::uint64_t low = 0;
    for (std::size_t i = 8; i < 16; ++i) low = (low << 8) | t[i];
    // As TraceIdRatioBased: the id's low 63 bits under ratio * 2^63.
    const auto bound = static_cast<std::uint64_t>(ratio * 9223372036854775808.0);
    return (low & 0x7fffffffffffffffULL) < bound;
}

} // namespace gw::core
