// Two tellings of a JSON document as one line of text, to compare json_walk with
// Boost.JSON's SAX parser: what json_walk tells a handler, and what Boost.JSON's parser
// tells one; and what stream_facts reads from a reply by each (tests and the fuzz target).
#pragma once

#include "core/json_walk.hpp"
#include "core/stream_facts.hpp"

#include <boost/json/basic_parser_impl.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iomanip>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace gw::test {

namespace json = boost::json;

// An exponent of ten or more digits besides leading zeros: near ±2^31 json_walk and
// Boost.JSON may differ by design (see json_walk.hpp), so such inputs are not compared
// (the fuzz targets skip them).
inline bool has_huge_exponent(std::string_view s)
{
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != 'e' && s[i] != 'E') continue;
        std::size_t j = i + 1;
        if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
        while (j < s.size() && s[j] == '0') ++j;
        std::size_t digits = 0;
        while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j, ++digits;
        if (digits >= 10) return true;
    }
    return false;
}

// What a reader told, as text, with its real numbers apart ("r;" in the text) and compared
// within a tolerance: Boost.JSON's conversion of a real may differ from the standard
// library's correctly rounded one in the last bits. `counts` are integers taken from
// numbers that may have been written as reals (a last bit may move one across an integer).
struct told
{
    std::string text;
    std::vector<double> reals;
    std::vector<std::int64_t> counts;

    bool operator==(const told& o) const
    {
        if (text != o.text || reals.size() != o.reals.size() || counts.size() != o.counts.size()) return false;
        for (std::size_t i = 0; i < reals.size(); ++i) {
            const double a = reals[i], b = o.reals[i];
            if (std::isnan(a) || std::isnan(b)) {
                if (std::isnan(a) != std::isnan(b)) return false;
                continue;
            }
            if (a != b && std::fabs(a - b) > 1e-12 * std::max(std::fabs(a), std::fabs(b)) && std::fabs(a - b) > 1e-300)
                return false;
        }
        for (std::size_t i = 0; i < counts.size(); ++i) {
            const double a = static_cast<double>(counts[i]), b = static_cast<double>(o.counts[i]);
            if (std::fabs(a - b) > 1 + 1e-12 * std::fabs(a)) return false;
        }
        return true;
    }
    friend std::ostream& operator<<(std::ostream& os, const told& t)
    {
        os << t.text << " reals:";
        for (double d : t.reals) os << ' ' << std::setprecision(17) << d;
        os << " counts:";
        for (auto n : t.counts) os << ' ' << n;
        return os;
    }
};

struct trace_handler
{
    told out;
    bool want_numbers = true;

    void begin(bool object) { out.text += object ? "{" : "["; }
    void end() { out.text += "}"; }
    void key(std::string_view s) { out.text += "k:" + std::string(s) + ";"; }
    void string(std::string_view s) { out.text += "s:" + std::string(s) + ";"; }
    bool wants_number() const { return want_numbers; }
    void integer(std::int64_t n) { out.text += "n:" + std::to_string(n) + ";"; }
    void real(double d)
    {
        out.text += "r;";
        out.reals.push_back(d);
    }
    void other() { out.text += "o;"; }
};

// The same trace from Boost.JSON's SAX parser, the one stream_facts reads long replies with.
struct boost_trace_handler
{
    static constexpr std::size_t max_object_size = std::size_t(-1);
    static constexpr std::size_t max_array_size = std::size_t(-1);
    static constexpr std::size_t max_key_size = std::size_t(-1);
    static constexpr std::size_t max_string_size = std::size_t(-1);
    trace_handler t;
    std::string parts;

    bool on_document_begin(json::error_code&) { return true; }
    bool on_document_end(json::error_code&) { return true; }
    bool on_object_begin(json::error_code&) { return t.begin(true), true; }
    bool on_object_end(std::size_t, json::error_code&) { return t.end(), true; }
    bool on_array_begin(json::error_code&) { return t.begin(false), true; }
    bool on_array_end(std::size_t, json::error_code&) { return t.end(), true; }
    bool on_key_part(std::string_view s, std::size_t, json::error_code&) { return parts.append(s), true; }
    bool on_key(std::string_view s, std::size_t, json::error_code&)
    {
        t.key(parts.append(s));
        parts.clear();
        return true;
    }
    bool on_string_part(std::string_view s, std::size_t, json::error_code&) { return parts.append(s), true; }
    bool on_string(std::string_view s, std::size_t, json::error_code&)
    {
        t.string(parts.append(s));
        parts.clear();
        return true;
    }
    bool on_number_part(std::string_view, json::error_code&) { return true; }
    bool on_int64(std::int64_t i, std::string_view, json::error_code&) { return t.integer(i), true; }
    bool on_uint64(std::uint64_t u, std::string_view, json::error_code&) { return t.real(static_cast<double>(u)), true; }
    bool on_double(double d, std::string_view, json::error_code&) { return t.real(d), true; }
    bool on_bool(bool, json::error_code&) { return t.other(), true; }
    bool on_null(json::error_code&) { return t.other(), true; }
    bool on_comment_part(std::string_view, json::error_code&) { return true; }
    bool on_comment(std::string_view, json::error_code&) { return true; }
};

// What Boost.JSON makes of `text` (std::nullopt: not one document followed by nothing but
// whitespace), with the given nesting limit.
inline std::optional<told> boost_trace(std::string_view text, std::size_t max_depth)
{
    json::parse_options o;
    o.max_depth = max_depth;
    json::basic_parser<boost_trace_handler> p(o);
    json::error_code ec;
    const std::size_t n = p.write_some(false, text.data(), text.size(), ec);
    if (ec || n != text.size()) return std::nullopt;
    return p.handler().t.out;
}

inline std::optional<told> walk_trace(std::string_view text, std::size_t max_depth)
{
    core::json_walk<trace_handler> walk(max_depth);
    trace_handler h;
    if (!walk.run(text, h)) return std::nullopt;
    return h.out;
}

// The facts stream_facts read from a reply.
inline told facts_of(const core::stream_facts& f)
{
    told t;
    t.text = std::string(f.id()) + "|" + std::string(f.task_id()) + "|" + std::string(f.conversation_id()) + "|" +
             std::string(f.workflow_run_id()) + "|" + std::string(f.message_id()) + "|";
    for (const auto& token : f.form_tokens()) t.text += token + ",";
    for (auto n : {f.total_tokens(), f.prompt_tokens(), f.completion_tokens()}) {
        t.text += n ? "n|" : "-|";
        if (n) t.counts.push_back(*n);
    }
    t.text += f.finished() ? "finished" : "open";
    return t;
}

// What stream_facts reads from a reply gathered whole (json_walk) and from the same reply
// behind 16 KiB of whitespace, fed in pieces of `piece` bytes (Boost.JSON's parser).
inline std::pair<told, told> facts_whole_and_streamed(std::string_view reply, std::size_t piece)
{
    core::stream_facts whole;
    whole.observe_json_body(reply);
    core::stream_facts streamed;
    streamed.feed_json_body(std::string(16 * 1024, ' '));
    for (std::size_t at = 0; at < reply.size(); at += piece) streamed.feed_json_body(reply.substr(at, piece));
    streamed.end_json_body();
    return {facts_of(whole), facts_of(streamed)};
}

} // namespace gw::test
