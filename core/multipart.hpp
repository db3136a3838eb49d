// multipart/form-data (RFC 7578) parsing of a complete body held in memory.
// Parts refer into the caller's buffer (string_views): the body must outlive the result.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gw::core {

struct multipart_part
{
    std::string name;                    // Content-Disposition name="..."
    std::optional<std::string> filename; // present for file parts (may be empty)
    std::optional<std::string> content_type;
    std::string_view headers; // the raw header block (without the blank line)
    std::string_view data;
};

struct multipart_result
{
    std::vector<multipart_part> parts;
    std::string error; // empty on success; otherwise what is malformed
};

// More parts than this is an error (bounded work and memory for hostile bodies).
inline constexpr std::size_t max_multipart_parts = 1000;

// Parses `body` with the given boundary (without the leading "--").
multipart_result parse_multipart(std::string_view body, std::string_view boundary);

} // namespace gw::core
