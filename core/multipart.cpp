#include "core/multipart.hpp"

#include "core/text.hpp"

#include <cctype>

namespace gw::core {

namespace {

// Parses the header block of one part (lines separated by CRLF, no final blank line).
// Strict: anything two multipart parsers (ours and Werkzeug's) could read differently is an
// error — bare CR or LF, folded lines, a header given twice, RFC 2231 or repeated
// parameters, a Content-Transfer-Encoding.
bool parse_part_headers(std::string_view block, multipart_part& part, std::string& error)
{
    for (std::size_t i = 0; i < block.size(); ++i) {
        auto ch = static_cast<unsigned char>(block[i]);
        if ((ch < 0x20 && ch != '\r' && ch != '\n' && ch != '\t') || ch == 0x7F) {
            error = "part headers with a control character"; // Python's strip() would remove some
            return false;
        }
        bool crlf = block[i] == '\r' && i + 1 < block.size() && block[i + 1] == '\n';
        if (crlf) {
            ++i;
            if (i + 1 < block.size() && (block[i + 1] == ' ' || block[i + 1] == '\t')) {
                error = "folded part header line";
                return false;
            }
        } else if (block[i] == '\r' || block[i] == '\n') {
            error = "part headers with a bare CR or LF";
            return false;
        }
    }
    bool has_disposition = false, has_type = false;
    while (!block.empty()) {
        auto eol = block.find("\r\n");
        std::string_view line = block.substr(0, eol);
        block = eol == std::string_view::npos ? std::string_view{} : block.substr(eol + 2);
        auto colon = line.find(':');
        bool token = colon != std::string_view::npos && colon > 0;
        for (std::size_t i = 0; token && i < colon; ++i)
            token = std::isalnum(static_cast<unsigned char>(line[i])) || std::string_view("!#$%&'*+-.^_`|~").find(line[i]) != std::string_view::npos;
        if (!token) {
            error = "malformed part header line";
            return false;
        }
        std::string_view name = line.substr(0, colon);
        std::string_view value = trim(line.substr(colon + 1));
        if (iequals(name, "Content-Disposition")) {
            if (has_disposition) {
                error = "part with two Content-Disposition headers";
                return false;
            }
            has_disposition = true;
            if (!iequals(trim(value.substr(0, value.find(';'))), "form-data")) {
                error = "part Content-Disposition is not form-data";
                return false;
            }
            auto params = unambiguous_header_params(value);
            if (!params) {
                error = "part Content-Disposition parameters are ambiguous";
                return false;
            }
            for (const auto& [k, v] : *params)
                if (k != "name" && k != "filename") {
                    error = "part Content-Disposition has an unknown parameter";
                    return false;
                }
            auto n = find_param(*params, "name");
            if (!n) {
                error = "part Content-Disposition has no name";
                return false;
            }
            part.name = *n;
            part.filename = find_param(*params, "filename");
        } else if (iequals(name, "Content-Type")) {
            if (has_type) {
                error = "part with two Content-Type headers";
                return false;
            }
            has_type = true;
            part.content_type = std::string(value);
        } else if (iequals(name, "Content-Transfer-Encoding")) {
            error = "part with a Content-Transfer-Encoding";
            return false;
        }
    }
    if (!has_disposition) error = "part without Content-Disposition";
    return has_disposition;
}

} // namespace

multipart_result parse_multipart(std::string_view body, std::string_view boundary)
{
    multipart_result out;
    // RFC 2046 bchars, not ending in a space.
    const bool bchars = boundary.find_first_not_of("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ") ==
                        std::string_view::npos;
    if (boundary.empty() || boundary.size() > 70 || !bchars || boundary.back() == ' ') {
        out.error = "invalid multipart boundary";
        return out;
    }
    const std::string delimiter = "--" + std::string(boundary);
    const std::string next_delimiter = "\r\n" + delimiter;

    // No preamble: the body starts with the first boundary line (a preamble is where parsers
    // disagree on what counts as a boundary).
    if (!body.starts_with(delimiter)) {
        out.error = "multipart body does not start with its boundary line";
        return out;
    }
    std::size_t pos = delimiter.size();
    for (;;) {
        if (body.substr(pos, 2) == "--") { // close delimiter; at most a CRLF may follow
            auto epilogue = body.substr(pos + 2);
            if (!epilogue.empty() && epilogue != "\r\n") out.error = "bytes after the closing boundary";
            return out;
        }
        if (body.substr(pos, 2) != "\r\n") {
            out.error = "a boundary line with bytes after the boundary";
            return out;
        }
        std::size_t headers_begin = pos + 2;
        if (body.substr(headers_begin, 2) == "\r\n") {
            out.error = "part without Content-Disposition";
            return out;
        }
        auto headers_end = body.find("\r\n\r\n", headers_begin);
        if (headers_end == std::string_view::npos) {
            out.error = "multipart part headers are not terminated";
            return out;
        }
        multipart_part part;
        part.headers = body.substr(headers_begin, headers_end - headers_begin);
        if (!parse_part_headers(body.substr(headers_begin, headers_end - headers_begin), part, out.error))
            return out;
        std::size_t data_begin = headers_end + 4;
        auto data_end = body.find(next_delimiter, data_begin);
        if (data_end == std::string_view::npos) {
            out.error = "multipart body is missing its closing boundary";
            return out;
        }
        part.data = body.substr(data_begin, data_end - data_begin);
        // Werkzeug also ends a part at a boundary after a bare LF or CR: a boundary anywhere
        // inside a part could split the body two ways.
        if (part.data.find(delimiter) != std::string_view::npos) {
            out.error = "the boundary appears inside a part";
            return out;
        }
        if (out.parts.size() == max_multipart_parts) {
            out.error = "multipart body has more than " + std::to_string(max_multipart_parts) + " parts";
            return out;
        }
        out.parts.push_back(std::move(part));
        pos = data_end + next_delimiter.size();
    }
}

} // namespace gw::core
