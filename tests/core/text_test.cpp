#include "core/byte_scan.hpp"
#include "core/multipart.hpp"
#include "core/text.hpp"

#include <boost/json.hpp>

#include <gtest/gtest.h>

#include <random>

#include <algorithm>
#include <string>
#include <vector>

namespace gw::core {
namespace {

TEST(Text, HeaderParam)
{
    EXPECT_EQ(header_param("multipart/form-data; boundary=abc", "boundary"), "abc");
    EXPECT_EQ(header_param("multipart/form-data; BOUNDARY=\"a;b\\\"c\"", "boundary"), "a;b\"c");
    EXPECT_EQ(header_param("form-data; name=\"file\"; filename=\"a b.txt\"", "filename"), "a b.txt");
    EXPECT_EQ(header_param("form-data; name=\"file\"", "filename"), std::nullopt);
    EXPECT_EQ(header_param("text/plain", "charset"), std::nullopt);
    EXPECT_EQ(media_type(" Application/JSON ; charset=utf-8"), "application/json");
}

TEST(Text, MediaTypesAreComparedWithoutCaseOrParameters)
{
    EXPECT_TRUE(has_media_type(" Application/JSON ; charset=utf-8", "application/json"));
    EXPECT_TRUE(has_media_type("text/event-stream", "text/event-stream"));
    EXPECT_FALSE(has_media_type("application/json5", "application/json"));
    EXPECT_FALSE(has_media_type("", "application/json"));
    // Flask's request.is_json: application/json or any application/*+json.
    for (const char* json : {"application/json", "APPLICATION/JSON; charset=utf-8", "application/vnd.api+json",
                             "Application/Problem+JSON", "application/+json"})
        EXPECT_TRUE(is_json_media_type(json)) << json;
    for (const char* other : {"text/json", "application/jsonx", "application+json", "application/json+xml", "json", "",
                              "text/plain+json"})
        EXPECT_FALSE(is_json_media_type(other)) << other;
}

TEST(Text, NamesOrderWithoutCaseAndBytesAboveAsciiSortLast)
{
    EXPECT_FALSE(iless("X-Hop", "x-hop"));
    EXPECT_FALSE(iless("x-hop", "X-HOP"));
    EXPECT_TRUE(iless("X-A", "x-b"));
    EXPECT_TRUE(iless("x-a", "X-AB")) << "a prefix comes first";
    EXPECT_TRUE(iless("zzz", "\xc3\xa9")) << "bytes compare unsigned, as std::string orders them";
    EXPECT_FALSE(iless("\xc3\xa9", "zzz"));
    // Consistent with the lower-cased strings' own order (what a sorted search relies on).
    std::vector<std::string> names{"Keep-Alive", "x-b", "X-A", "\xc3\xa9", "te", "TE", "x-a-b"};
    std::sort(names.begin(), names.end(), iless);
    for (std::size_t i = 1; i < names.size(); ++i) EXPECT_LE(to_lower(names[i - 1]), to_lower(names[i]));
    EXPECT_TRUE(std::binary_search(names.begin(), names.end(), std::string("X-a-B"), iless));
    EXPECT_FALSE(std::binary_search(names.begin(), names.end(), std::string("x-c"), iless));
}

TEST(Text, FormDecode)
{
    EXPECT_EQ(form_decode("a%20b+c%2Fd"), "a b c/d");
    EXPECT_EQ(form_decode("%"), std::nullopt);
    EXPECT_EQ(form_decode("%2"), std::nullopt);
    EXPECT_EQ(form_decode("%zz"), std::nullopt);
}

TEST(Text, HostPort)
{
    auto hp = parse_host_port("127.0.0.1:8080");
    ASSERT_TRUE(hp);
    EXPECT_EQ(hp->host, "127.0.0.1");
    EXPECT_EQ(hp->port, 8080);
    hp = parse_host_port("[::1]:0");
    ASSERT_TRUE(hp);
    EXPECT_EQ(hp->host, "::1");
    EXPECT_EQ(hp->port, 0);
    for (const char* bad : {"", "host", ":80", "host:", "host:65536", "host:8x", "::1:80", "[::1]80"})
        EXPECT_FALSE(parse_host_port(bad)) << bad;
}

TEST(Text, IequalsFoldsAsciiLettersOnlyAsAByteByByteCompareDoes)
{
    const auto reference = [](std::string_view a, std::string_view b) {
        const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i)
            if (lower(a[i]) != lower(b[i])) return false;
        return true;
    };
    // Letters, their neighbours ('@', '[', '`', '{') and the same with the high bit set,
    // which must not fold: pairs of equal length that often match once folded.
    const std::string alphabet = "aAzZmM@[`{-0\xc1\xda\xe1\xfa\x80\xff";
    std::mt19937 rng(11); // fixed: the same strings every run
    int equal = 0;
    for (int i = 0; i < 100000; ++i) {
        std::string a(rng() % 20, 'a');
        for (auto& c : a)
            c = alphabet[rng() % alphabet.size()];
        std::string b = a;
        for (auto& c : b)
            if (rng() % 3 == 0)
                c = c >= 'a' && c <= 'z'   ? static_cast<char>(c - 32)
                    : c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32)
                                           : c;
        if (rng() % 4 == 0 && !b.empty()) b[rng() % b.size()] = alphabet[rng() % alphabet.size()];
        equal += reference(a, b);
        ASSERT_EQ(iequals(a, b), reference(a, b)) << a << " / " << b;
    }
    EXPECT_GT(equal, 50000) << "the test meets equal pairs too";
    EXPECT_TRUE(iequals("Content-Type: APPLICATION/JSON", "content-type: application/json"));
    EXPECT_FALSE(iequals("\xc1", "\xe1")); // Latin-1 letters are not folded
    EXPECT_FALSE(iequals("abc", "abcd"));
}

TEST(Text, ACanonicalUuidIsReadIntoItsBytesAndNoOtherSpellingIs)
{
    auto bytes = parse_canonical_uuid("0123abcd-4567-89ef-0a1b-2c3d4e5f6071");
    ASSERT_TRUE(bytes);
    const uuid_bytes expected{0x01, 0x23, 0xab, 0xcd, 0x45, 0x67, 0x89, 0xef, 0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f, 0x60, 0x71};
    EXPECT_EQ(*bytes, expected);
    for (std::string_view other : {"0123ABCD-4567-89ef-0a1b-2c3d4e5f6071",   // upper case
                                   "{0123abcd-4567-89ef-0a1b-2c3d4e5f6071}", // braces
                                   "0123abcd456789ef0a1b2c3d4e5f6071",       // no hyphens
                                   "0123abcd-4567-89ef-0a1b2c3d4e5f60712",   // a hyphen moved
                                   "0123abcd-4567-89ef-0a1b-2c3d4e5f607",    // short
                                   "0123abcd-4567-89ef-0a1b-2c3d4e5f60712",  // long
                                   "0123abcg-4567-89ef-0a1b-2c3d4e5f6071",   // not hex
                                   ""})
        EXPECT_FALSE(parse_canonical_uuid(other)) << other;
    EXPECT_FALSE(parse_canonical_uuid(std::string_view("0123abcd-4567-89ef-0a1b-2c3d4e5f607\0", 36))); // a NUL byte
}

TEST(Text, CanonicalUuidsAreReadAsADigitByDigitReaderReadsThem)
{
    // A reference reader, one character at a time, against random near-UUIDs.
    const auto reference = [](std::string_view id) -> std::optional<uuid_bytes> {
        if (id.size() != 36) return std::nullopt;
        uuid_bytes out{};
        std::size_t n = 0;
        for (std::size_t i = 0; i < 36; ++i) {
            const char c = id[i];
            if (i == 8 || i == 13 || i == 18 || i == 23) {
                if (c != '-') return std::nullopt;
                continue;
            }
            int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (v < 0) return std::nullopt;
            out[n / 2] = static_cast<std::uint8_t>(n % 2 == 0 ? v << 4 : out[n / 2] | v);
            ++n;
        }
        return out;
    };
    std::mt19937 rng(7); // fixed: the same strings every run
    const std::string alphabet =
        std::string("0123456789abcdefABCDEFgz-/:`@G{ \x7f\0", 34) +
        "\x80\xb0\xb1\xb9\xe0\xe1\xe6\xff"; // and bytes that are a digit or a-f but for their high bit
    int valid = 0;
    for (int i = 0; i < 200000; ++i) {
        std::string id(36, '0');
        for (auto& c : id) c = "0123456789abcdef"[rng() % 16];
        for (std::size_t h : {8u, 13u, 18u, 23u}) id[h] = '-';
        for (unsigned changes = rng() % 3; changes > 0; --changes) id[rng() % 36] = alphabet[rng() % alphabet.size()];
        const auto expected = reference(id);
        valid += expected.has_value();
        ASSERT_EQ(parse_canonical_uuid(id), expected) << id;
    }
    EXPECT_GT(valid, 20000) << "the test meets valid UUIDs too";
}

TEST(ByteScan, EveryWidthFindsTheFirstByteThatEndsARun)
{
    // Runs of every length up to 40 bytes with one ender (of each kind) at every place,
    // read from every alignment: the word and SSE2 forms agree with the byte loop.
    const std::string enders("\"\\\x00\x01\x1f\x80\xc3\xff", 8);
    for (std::size_t len = 0; len <= 40; ++len) {
        for (std::size_t at = 0; at <= len; ++at) {
            for (char ender : enders) {
                for (std::size_t shift = 0; shift < 3; ++shift) {
                    std::string text(shift, 'x');
                    text += std::string(len, 'a');
                    text += std::string("z ~\x7f");
                    if (at < len) text[shift + at] = ender;
                    const char* b = text.data() + shift;
                    const char* e = b + len;
                    for (bool high : {false, true}) {
                        const char* want = high ? byte_scan::run_end_bytes<true>(b, e) : byte_scan::run_end_bytes<false>(b, e);
                        const bool ends = at < len && (high || static_cast<unsigned char>(ender) < 0x80);
                        ASSERT_EQ(want, ends ? b + at : e) << len << " " << at << " " << int(ender);
                        ASSERT_EQ(high ? byte_scan::run_end_words<true>(b, e) : byte_scan::run_end_words<false>(b, e), want);
#if defined(__SSE2__)
                        ASSERT_EQ(high ? byte_scan::run_end_sse2<true>(b, e) : byte_scan::run_end_sse2<false>(b, e), want);
#endif
                    }
                }
            }
        }
    }
}

TEST(Text, AJsonStringReadsBackAsTheTextItWasMadeOf)
{
    EXPECT_EQ([] { std::string o; append_json_string(o, "a\"b\\c\n\x01\xc3\xa9/"); return o; }(),
              "\"a\\\"b\\\\c\\u000a\\u0001\xc3\xa9/\"");
    std::mt19937 rng(20261203); // fixed: the same strings every run
    const std::vector<std::string> pieces = {"a", "Z", " ", "\"", "\\", "\n", "\t", std::string(1, '\0'), "\x1f", "\x7f", "/",
                                             "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "0123456789abcdef"};
    for (int i = 0; i < 5000; ++i) {
        std::string text;
        for (int n = static_cast<int>(rng() % 40); n > 0; --n) text += pieces[rng() % pieces.size()];
        std::string out;
        append_json_string(out, text);
        boost::json::error_code ec;
        const auto v = boost::json::parse(out, ec);
        ASSERT_FALSE(ec) << out;
        ASSERT_TRUE(v.is_string());
        ASSERT_EQ(std::string_view(v.get_string()), text);
    }
}

TEST(Multipart, ParsesFieldsAndFiles)
{
    std::string body = "--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nalice\r\n"
                       "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
                       "Content-Type: text/plain\r\n\r\nline1\r\nline2\r\n--XyZ--\r\n";
    auto r = parse_multipart(body, "XyZ");
    ASSERT_EQ(r.error, "");
    ASSERT_EQ(r.parts.size(), 2u);
    EXPECT_EQ(r.parts[0].name, "user");
    EXPECT_FALSE(r.parts[0].filename);
    EXPECT_EQ(r.parts[0].data, "alice");
    EXPECT_EQ(r.parts[1].filename, "a.txt");
    EXPECT_EQ(r.parts[1].content_type, "text/plain");
    EXPECT_EQ(r.parts[1].data, "line1\r\nline2");
}

TEST(Multipart, MalformedBodiesGetClearErrors)
{
    EXPECT_EQ(parse_multipart("anything", "").error, "invalid multipart boundary");
    EXPECT_EQ(parse_multipart("no boundary here", "b").error, "multipart body does not start with its boundary line");
    EXPECT_EQ(parse_multipart("preamble\r\n--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nx\r\n--b--", "b").error,
              "multipart body does not start with its boundary line")
        << "a preamble is where parsers disagree on what a boundary is";
    EXPECT_EQ(parse_multipart("--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\ndata", "b").error,
              "multipart body is missing its closing boundary");
    EXPECT_EQ(parse_multipart("--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--", "b").error,
              "part Content-Disposition has no name");
    EXPECT_EQ(parse_multipart("--b\r\n\r\nx\r\n--b--", "b").error, "part without Content-Disposition");
    EXPECT_EQ(parse_multipart("--b\r\nBroken header\r\n\r\nx\r\n--b--", "b").error, "malformed part header line");
    EXPECT_EQ(parse_multipart("--b\r\nContent-Disposition: form-data; name=\"x\"", "b").error,
              "multipart part headers are not terminated");
    EXPECT_EQ(parse_multipart("--b", "b").error, "a boundary line with bytes after the boundary");
}

// Each body here is one Werkzeug could split differently from a lenient parser; each is an
// error (the gateway then answers 400 and forwards nothing).
TEST(Multipart, AmbiguousBodiesAreErrors)
{
    auto error = [](std::string part_headers, std::string tail = "x\r\n--b--") {
        return parse_multipart("--b\r\n" + part_headers + "\r\n\r\n" + tail, "b").error;
    };
    EXPECT_EQ(error("Content-Disposition: form-data; name=\"user\"\r\nContent-Disposition: form-data; name=\"x\""),
              "part with two Content-Disposition headers");
    EXPECT_EQ(error("Content-Disposition: form-data; name=\"x\"; name*=UTF-8''user"),
              "part Content-Disposition parameters are ambiguous");
    EXPECT_EQ(error("Content-Disposition: form-data; name=\"x\"; name=\"user\""),
              "part Content-Disposition parameters are ambiguous");
    EXPECT_EQ(error("Content-Disposition: form-data; name=\"us\\\"er\""), "part Content-Disposition parameters are ambiguous");
    EXPECT_EQ(error("Content-Disposition: form-data; name=\"x\"; size=3"), "part Content-Disposition has an unknown parameter");
    EXPECT_EQ(error("Content-Disposition: form-data;\r\n name=\"user\""), "folded part header line");
    EXPECT_EQ(error("Content-Disposition: form-data; name=\"x\"\nX: y"), "part headers with a bare CR or LF");
    EXPECT_EQ(error("Content-Disposition: form-data; name=\"x\"\rX: y"), "part headers with a bare CR or LF");
    EXPECT_EQ(error("Content-Disposition : form-data; name=\"x\""), "malformed part header line");
    EXPECT_EQ(error("Content-Disposition: form-data; name=\"x\"\r\nContent-Type: a\r\nContent-Type: b"),
              "part with two Content-Type headers");
    EXPECT_EQ(error("Content-Disposition: form-data; name=\"x\"\r\nContent-Transfer-Encoding: base64"),
              "part with a Content-Transfer-Encoding");
    EXPECT_EQ(error("Content-Disposition: form-data; name=\"x\"", "x\r\n--bX\r\n"), "a boundary line with bytes after the boundary");
    EXPECT_EQ(error("Content-Disposition: form-data; name=\"x\"", "x\r\n--b--epilogue"), "bytes after the closing boundary");
    EXPECT_EQ(error("Content-Disposition: form-data; name=\"x\"", "x\r\n--b--\r\n"), "") << "a final CRLF is fine";
    EXPECT_EQ(parse_multipart("--a\"b\r\n", "a\"b").error, "invalid multipart boundary");
    EXPECT_EQ(error("\x1c" "Content-Disposition: form-data; name=\"x\""), "part headers with a control character")
        << "Python's strip() would make it a Content-Disposition";
    EXPECT_EQ(error("Content-Disposition\x0b: form-data; name=\"x\""), "part headers with a control character");
    EXPECT_EQ(error("Content-Disposition: form-data; name=\"x\"", "a\n--b\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nx\r\n--b--"),
              "the boundary appears inside a part")
        << "Werkzeug ends a part at a boundary after a bare LF";
    EXPECT_EQ(error("Content-Disposition: form-data; name=\"x\"", "a\r--b\r\n\r\n--b--"), "the boundary appears inside a part");
}

} // namespace
} // namespace gw::core
