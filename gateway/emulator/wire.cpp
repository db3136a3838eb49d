#include "gateway/emulator/wire.hpp"

#include "core/text.hpp"

#include <boost/json.hpp>

#include <charconv>

namespace gw::emulator {

namespace json = boost::json;

std::string_view request::header(std::string_view name) const
{
    for (const auto& [k, v] : headers)
        if (core::iequals(k, name)) return v;
    return {};
}

std::optional<std::string> request::query_param(std::string_view name) const
{
    for (auto part : core::split(query, '&')) {
        if (part.empty()) continue;
        auto eq = part.find('=');
        auto key = core::form_decode(part.substr(0, eq));
        if (!key || *key != name) continue;
        if (eq == std::string_view::npos) return std::string();
        return core::form_decode(part.substr(eq + 1)).value_or(std::string());
    }
    return std::nullopt;
}

reply error_reply(int status, std::string_view code, std::string_view message)
{
    json::object o;
    o["code"] = code;
    o["message"] = message;
    o["status"] = status;
    return json_reply(status, o);
}

reply json_reply(int status, const json::value& body)
{
    reply r;
    r.status = status;
    r.body = compact_dumps(body) + "\n";
    return r;
}

reply generate_reply(const json::value& body)
{
    reply r;
    r.content_type = "application/json; charset=utf-8";
    r.body = python_dumps(body);
    return r;
}

reply html_not_found()
{
    reply r;
    r.status = 404;
    r.content_type = "text/html; charset=utf-8";
    r.body = "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
             "<p>The requested URL was not found on the server. If you entered the URL manually please check "
             "your spelling and try again.</p>\n";
    return r;
}

std::string sse_data_frame(const json::value& v)
{
    return "data: " + compact_dumps(v) + "\n\n";
}

namespace {

void append_u16(std::string& out, unsigned cp)
{
    static constexpr char hex[] = "0123456789abcdef";
    out += "\\u";
    for (int shift = 12; shift >= 0; shift -= 4) out.push_back(hex[(cp >> shift) & 0xF]);
}

// Python's ensure_ascii string escaping; invalid UTF-8 bytes become U+FFFD.
void dump_string(std::string& out, std::string_view s, bool ascii)
{
    out.push_back('"');
    for (std::size_t i = 0; i < s.size();) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                if (c < 0x20)
                    append_u16(out, c);
                else
                    out.push_back(static_cast<char>(c));
            }
            ++i;
            continue;
        }
        if (!ascii) { // raw UTF-8, as orjson writes it
            out.push_back(static_cast<char>(c));
            ++i;
            continue;
        }
        int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
        unsigned cp = len == 4 ? c & 0x07 : len == 3 ? c & 0x0F : c & 0x1F;
        bool ok = len > 0 && i + len <= s.size();
        for (int k = 1; ok && k < len; ++k) {
            auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) ok = false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if (!ok) {
            append_u16(out, 0xFFFD);
            ++i;
            continue;
        }
        if (cp >= 0x10000) {
            cp -= 0x10000;
            append_u16(out, 0xD800 + (cp >> 10));
            append_u16(out, 0xDC00 + (cp & 0x3FF));
        } else {
            append_u16(out, cp);
        }
        i += len;
    }
    out.push_back('"');
}

// Python json.dumps style (pretty == true: ", " and ": ", ASCII only) or orjson style (compact, UTF-8).
void dump(std::string& out, const json::value& v, bool python)
{
    switch (v.kind()) {
    case json::kind::null: out += "null"; break;
    case json::kind::bool_: out += v.get_bool() ? "true" : "false"; break;
    case json::kind::int64: out += std::to_string(v.get_int64()); break;
    case json::kind::uint64: out += std::to_string(v.get_uint64()); break;
    case json::kind::double_: {
        char buf[64];
        auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v.get_double());
        std::string_view text(buf, end - buf);
        out += text;
        if (text.find_first_of(".en") == std::string_view::npos) out += ".0"; // Python prints 1.0, not 1
        break;
    }
    case json::kind::string: dump_string(out, v.get_string(), python); break;
    case json::kind::array: {
        out.push_back('[');
        bool first = true;
        for (const auto& e : v.get_array()) {
            if (!first) out += python ? ", " : ",";
            first = false;
            dump(out, e, python);
        }
        out.push_back(']');
        break;
    }
    case json::kind::object: {
        out.push_back('{');
        bool first = true;
        for (const auto& [k, e] : v.get_object()) {
            if (!first) out += python ? ", " : ",";
            first = false;
            dump_string(out, k, python);
            out += python ? ": " : ":";
            dump(out, e, python);
        }
        out.push_back('}');
        break;
    }
    }
}

} // namespace

std::string python_dumps(const json::value& v)
{
    std::string out;
    dump(out, v, true);
    return out;
}

std::string compact_dumps(const json::value& v)
{
    std::string out;
    dump(out, v, false);
    return out;
}

} // namespace gw::emulator
