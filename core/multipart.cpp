#include "core/multipart.hpp"

#include "core/text.hpp"

namespace gw::core {

namespace {

// Parses the header block of one part (lines separated by CRLF, no final blank line).
bool parse_part_headers(std::string_view block, multipart_part& part, std::string& error)
{
    bool has_disposition = false;
    while (!block.empty()) {
        auto eol = block.find("\r\n");
        std::string_view line = block.substr(0, eol);
        block = eol == std::string_view::npos ? std::string_view{} : block.substr(eol + 2);
        auto colon = line.find(':');
        if (colon == std::string_view::npos) {
            error = "part header line without ':'";
            return false;
        }
        std::string_view name = trim(line.substr(0, colon));
        std::string_view value = trim(line.substr(colon + 1));
        if (iequals(name, "Content-Disposition")) {
            if (!iequals(trim(value.substr(0, value.find(';'))), "form-data")) {
                error = "part Content-Disposition is not form-data";
                return false;
            }
            auto n = header_param(value, "name");
            if (!n) {
                error = "part Content-Disposition has no name";
                return false;
            }
            part.name = *n;
            part.filename = header_param(value, "filename");
            has_disposition = true;
        } else if (iequals(name, "Content-Type")) {
            part.content_type = std::string(value);
        }
    }
    if (!has_disposition) error = "part without Content-Disposition";
    return has_disposition;
}

} // namespace

multipart_result parse_multipart(std::string_view body, std::string_view boundary)
{
    multipart_result out;
    if (boundary.empty() || boundary.size() > 70) {
        out.error = "invalid multipart boundary";
        return out;
    }
    const std::string delimiter = "--" + std::string(boundary);
    const std::string next_delimiter = "\r\n" + delimiter;

    auto pos = body.find(delimiter);
    if (pos == std::string_view::npos) {
        out.error = "multipart body has no boundary line";
        return out;
    }
    pos += delimiter.size();
    for (;;) {
        if (body.substr(pos, 2) == "--") return out; // close delimiter
        auto line_end = body.find("\r\n", pos);
        if (line_end == std::string_view::npos) {
            out.error = "multipart body ends inside a boundary line";
            return out;
        }
        std::size_t headers_begin = line_end + 2;
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
        if (out.parts.size() == max_multipart_parts) {
            out.error = "multipart body has more than " + std::to_string(max_multipart_parts) + " parts";
            return out;
        }
        out.parts.push_back(std::move(part));
        pos = data_end + next_delimiter.size();
    }
}

} // namespace gw::core
