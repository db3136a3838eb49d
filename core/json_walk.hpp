// A reader of one JSON document held whole in memory that tells a handler what it meets,
// SAX style, without building anything: the gateway's way to pick a few members out of
// a Dify reply or event. It accepts exactly what Boost.JSON's parser accepts with its
// default options (RFC 8259: no comments, no trailing commas; strings must be valid UTF-8
// and their \u escapes valid UTF-16), plus a nesting limit, and it requires nothing but
// whitespace after the value. One difference is left: an exponent as close to ±2^31
// (INT_MAX) as the number has mantissa digits, which Boost.JSON refuses or not depending
// on those digits and on how much input follows the number; json_walk takes it (as
// infinity or zero). Python's json module, which writes Dify's replies, writes no exponent
// beyond ±324. Unlike that parser it converts a number only when the
// handler will use it, and it scans strings sixteen bytes at a time (core/byte_scan.hpp).
//
// The handler is called as the document is read:
//   begin(bool object) / end()   a container opens ({ or [) / closes
//   key(std::string_view)        an object member's name, unescaped
//   string(std::string_view)     a string value, unescaped
//   wants_number() -> bool       whether the number about to be reported is used
//   integer(std::int64_t)        a wanted number written as an integer in int64's range
//   real(double)                 any other wanted number (beyond double's range: ±infinity
//                                or zero; a zero times a power of ten above 10^308: NaN,
//                                as Boost.JSON gives them)
//   other()                      true, false, null, or a number not wanted
// Views passed to key() and string() are valid only during the call. A document found
// invalid part way has already been partly told to the handler. During a call, offset()
// is how far the document has been read: just past the name (key), the value (string,
// integer, real, other) or the bracket (begin, end).
#pragma once

#include "core/byte_scan.hpp"
#include "core/byte_words.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>

namespace gw::core {

template <typename Handler>
class json_walk
{
public:
    explicit json_walk(std::size_t max_depth) : max_depth_(max_depth) {}

    // Reads `text` as one JSON document; false when it is not one.
    bool run(std::string_view text, Handler& handler)
    {
        begin_ = p_ = text.data();
        end_ = p_ + text.size();
        h_ = &handler;
        depth_left_ = max_depth_;
        skip_whitespace();
        if (!value()) return false;
        skip_whitespace();
        return p_ == end_;
    }

    // Bytes of the document read so far (see above: meant for the handler's calls).
    std::size_t offset() const { return static_cast<std::size_t>(p_ - begin_); }

    // The heap kept for unescaped strings.
    std::size_t retained_bytes() const { return scratch_.capacity(); }

private:
    bool value()
    {
        if (p_ == end_) return false;
        switch (*p_) {
        case '{': return container(true);
        case '[': return container(false);
        case '"': {
            std::string_view s;
            if (!string_token(s)) return false;
            h_->string(s);
            return true;
        }
        case 't': return literal("true");
        case 'f': return literal("false");
        case 'n': return literal("null");
        default: return number();
        }
    }

    // An object or array, from its opening bracket to its closing one. Recursion is
    // bounded by the nesting limit.
    bool container(bool object)
    {
        if (depth_left_ == 0) return false;
        --depth_left_;
        ++p_;
        h_->begin(object);
        const char close = object ? '}' : ']';
        skip_whitespace();
        if (p_ != end_ && *p_ == close) return finish_container();
        for (;;) {
            if (object) {
                std::string_view name;
                if (p_ == end_ || *p_ != '"' || !string_token(name)) return false;
                h_->key(name);
                if (!skip_python_separator(':')) {
                    skip_whitespace();
                    if (p_ == end_ || *p_ != ':') return false;
                    ++p_;
                    skip_separator_space();
                }
            }
            if (!value()) return false;
            if (skip_python_separator(',')) continue;
            skip_whitespace();
            if (p_ == end_) return false;
            if (*p_ == close) return finish_container();
            if (*p_ != ',') return false;
            ++p_;
            skip_separator_space();
        }
    }
    // Past Python's json separators, ", " and ": " followed by a value's first byte (no
    // more whitespace), in one comparison: the usual case. False, having read nothing,
    // for anything else.
    bool skip_python_separator(char separator)
    {
        if (end_ - p_ < 3) return false;
        char pair[2] = {separator, ' '};
        if (std::memcmp(p_, pair, 2) != 0 || static_cast<unsigned char>(p_[2]) <= ' ') return false;
        p_ += 2;
        return true;
    }
    bool finish_container()
    {
        ++p_;
        ++depth_left_;
        h_->end();
        return true;
    }

    bool literal(std::string_view word)
    {
        if (static_cast<std::size_t>(end_ - p_) < word.size() || std::memcmp(p_, word.data(), word.size()) != 0)
            return false;
        p_ += word.size();
        h_->other();
        return true;
    }

    static bool is_digit(char c) { return c >= '0' && c <= '9'; }
    // Past a run of digits: eight bytes at a time while eight are left (a reply's prices
    // and times have a dozen or more), then byte by byte.
    void skip_digits()
    {
        while (end_ - p_ >= 8) {
            if (const std::uint64_t others = byte_words::non_digits(byte_words::load(p_))) {
                p_ += byte_words::first_marked(others);
                return;
            }
            p_ += 8;
        }
        while (p_ != end_ && is_digit(*p_)) ++p_;
    }

    // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    bool number()
    {
        const char* start = p_;
        bool integral = true;
        bool leading_zero = false;        // the integer part is 0
        const char* fraction = nullptr;   // the digits after the point
        std::int64_t fraction_digits = 0; // how many
        std::int64_t exponent = 0;        // with its sign
        if (*p_ == '-') ++p_;
        if (p_ == end_ || !is_digit(*p_)) return false;
        if (*p_ == '0') {
            leading_zero = true;
            ++p_;
        } else {
            skip_digits();
        }
        if (p_ != end_ && *p_ == '.') {
            integral = false;
            ++p_;
            if (p_ == end_ || !is_digit(*p_)) return false;
            fraction = p_;
            skip_digits();
            fraction_digits = p_ - fraction;
        }
        if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
            integral = false;
            ++p_;
            const bool negative = p_ != end_ && *p_ == '-';
            if (p_ != end_ && (*p_ == '+' || *p_ == '-')) ++p_;
            if (p_ == end_ || !is_digit(*p_)) return false;
            // Boost.JSON refuses an exponent above INT_MAX (2147483647).
            for (; p_ != end_ && is_digit(*p_); ++p_)
                if ((exponent = exponent * 10 + (*p_ - '0')) > 2147483647) return false;
            if (negative) exponent = -exponent;
        }
        if (!h_->wants_number()) {
            h_->other();
            return true;
        }
        if (integral) {
            std::int64_t i = 0;
            if (std::from_chars(start, p_, i).ec == std::errc{}) {
                h_->integer(i);
                return true;
            }
        }
        // Boost.JSON 1.81 computes a zero as 0 × 10^e, which is NaN once 10^e overflows.
        const bool zero = leading_zero &&
                          std::all_of(fraction, fraction + fraction_digits, [](char c) { return c == '0'; });
        if (zero && exponent - fraction_digits > 308) {
            h_->real(std::numeric_limits<double>::quiet_NaN());
            return true;
        }
        double d = 0;
        if (std::from_chars(start, p_, d).ec != std::errc{}) {
            // Out of double's range: infinity or zero, as strtod rounds it (the number's
            // syntax was checked above, and the gateway keeps the "C" locale).
            d = std::strtod(std::string(start, p_).c_str(), nullptr);
        }
        h_->real(d);
        return true;
    }

    // Moves past plain string bytes: up to a quote, a backslash, a control character or a
    // byte of a multi-byte UTF-8 sequence.
    void skip_plain() { p_ = byte_scan::run_end<true>(p_, end_); }

    // A string token from its opening quote; `out` views the text itself when it has no
    // escapes, else the unescaped copy in scratch_.
    [[gnu::always_inline]] bool string_token(std::string_view& out) // inlined: a reply has dozens
    {
        ++p_;
        const char* start = p_;
        bool escaped = false;
        for (;;) {
            const char* run = p_;
            skip_plain();
            if (escaped) scratch_.append(run, p_);
            if (p_ == end_) return false;
            const auto c = static_cast<unsigned char>(*p_);
            if (c == '"') break;
            if (c < 0x20) return false;
            if (c == '\\') {
                if (!escaped) scratch_.assign(start, p_);
                escaped = true;
                if (!unescape()) return false;
                continue;
            }
            const char* lead = p_;
            if (!skip_utf8_sequence()) return false;
            if (escaped) scratch_.append(lead, p_);
        }
        out = escaped ? std::string_view(scratch_) : std::string_view(start, p_ - start);
        ++p_;
        return true;
    }

    // One well-formed UTF-8 sequence of two to four bytes (Unicode's table 3-7: no
    // overlong forms, no surrogates, nothing above U+10FFFF).
    bool skip_utf8_sequence()
    {
        const auto byte = [this](std::ptrdiff_t i) { return static_cast<unsigned char>(p_[i]); };
        const auto lead = byte(0);
        std::ptrdiff_t n = 0;
        unsigned char low = 0x80, high = 0xBF; // the second byte's range
        if (lead >= 0xC2 && lead <= 0xDF)
            n = 2;
        else if (lead >= 0xE0 && lead <= 0xEF) {
            n = 3;
            if (lead == 0xE0) low = 0xA0;
            if (lead == 0xED) high = 0x9F;
        } else if (lead >= 0xF0 && lead <= 0xF4) {
            n = 4;
            if (lead == 0xF0) low = 0x90;
            if (lead == 0xF4) high = 0x8F;
        } else
            return false;
        if (end_ - p_ < n) return false;
        if (byte(1) < low || byte(1) > high) return false;
        for (std::ptrdiff_t i = 2; i < n; ++i)
            if (byte(i) < 0x80 || byte(i) > 0xBF) return false;
        p_ += n;
        return true;
    }

    // An escape, from its backslash, appended to scratch_ unescaped.
    bool unescape()
    {
        if (end_ - p_ < 2) return false;
        const char c = p_[1];
        p_ += 2;
        switch (c) {
        case '"': scratch_ += '"'; return true;
        case '\\': scratch_ += '\\'; return true;
        case '/': scratch_ += '/'; return true;
        case 'b': scratch_ += '\b'; return true;
        case 'f': scratch_ += '\f'; return true;
        case 'n': scratch_ += '\n'; return true;
        case 'r': scratch_ += '\r'; return true;
        case 't': scratch_ += '\t'; return true;
        case 'u': break;
        default: return false;
        }
        std::uint32_t unit = 0;
        if (!hex4(unit)) return false;
        if (unit >= 0xDC00 && unit <= 0xDFFF) return false; // a trailing surrogate first
        if (unit >= 0xD800 && unit <= 0xDBFF) {
            std::uint32_t trail = 0;
            if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return false;
            p_ += 2;
            if (!hex4(trail) || trail < 0xDC00 || trail > 0xDFFF) return false;
            unit = 0x10000 + ((unit - 0xD800) << 10) + (trail - 0xDC00);
        }
        append_utf8(unit);
        return true;
    }
    bool hex4(std::uint32_t& unit)
    {
        if (end_ - p_ < 4) return false;
        for (int i = 0; i < 4; ++i) {
            const char c = *p_++;
            unit <<= 4;
            if (is_digit(c))
                unit |= static_cast<std::uint32_t>(c - '0');
            else if (c >= 'a' && c <= 'f')
                unit |= static_cast<std::uint32_t>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F')
                unit |= static_cast<std::uint32_t>(c - 'A' + 10);
            else
                return false;
        }
        return true;
    }
    void append_utf8(std::uint32_t cp)
    {
        const auto put = [this](std::uint32_t b) { scratch_ += static_cast<char>(b); };
        if (cp < 0x80) {
            put(cp);
        } else if (cp < 0x800) {
            put(0xC0 | (cp >> 6));
            put(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            put(0xE0 | (cp >> 12));
            put(0x80 | ((cp >> 6) & 0x3F));
            put(0x80 | (cp & 0x3F));
        } else {
            put(0xF0 | (cp >> 18));
            put(0x80 | ((cp >> 12) & 0x3F));
            put(0x80 | ((cp >> 6) & 0x3F));
            put(0x80 | (cp & 0x3F));
        }
    }

    static constexpr std::array<bool, 256> whitespace_bytes = [] {
        std::array<bool, 256> t{};
        t[' '] = t['\n'] = t['\r'] = t['\t'] = true;
        return t;
    }();
    // After a ',' or ':', where Python's json writes one space.
    void skip_separator_space()
    {
        if (p_ != end_ && *p_ == ' ') ++p_;
        skip_whitespace();
    }
    void skip_whitespace()
    {
        if (p_ != end_ && static_cast<unsigned char>(*p_) > ' ') return; // none, the usual case
        while (p_ != end_ && whitespace_bytes[static_cast<unsigned char>(*p_)]) ++p_;
    }

    std::size_t max_depth_;
    std::size_t depth_left_ = 0;
    const char* begin_ = nullptr;
    const char* p_ = nullptr;
    const char* end_ = nullptr;
    Handler* h_ = nullptr;
    std::string scratch_; // unescaped strings; keeps its capacity between documents
};

} // namespace gw::core
