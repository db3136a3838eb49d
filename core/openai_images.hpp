// Images an OpenAI message gives inline, as `data:` URLs (RFC 2397): read and checked,
// and made into the multipart/form-data body of Dify's POST /files/upload, whose file id
// the turn then names (Dify takes an image as a remote URL it fetches, or as an uploaded
// file; a data: URL is neither).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace gw::core::openai {

// The image types Dify takes as images, with the extension its upload reads the type from.
struct inline_image
{
    std::string media_type; // image/png, image/jpeg, image/gif, image/webp
    std::string extension;  // png, jpg, gif, webp
    std::string bytes;      // decoded
};

// Whether `url` is a data: URL (the scheme is case-insensitive).
bool is_data_url(std::string_view url);

// `data:<image type>[;param=value]*;base64,<data>`. nullopt, with the reason in `why`, for
// a URL that is not base64, an image type Dify does not take, or data that is not base64
// (RFC 4648 alphabet, padding optional; no whitespace, as browsers and SDKs write it).
std::optional<inline_image> parse_image_data_url(std::string_view url, std::string& why);

// The files/upload request body: the `user` field, then the file part `filename` with the
// image's type. The boundary occurs in neither.
struct upload_form
{
    std::string content_type; // multipart/form-data; boundary=...
    std::string body;
};
upload_form files_upload_form(std::string_view user, std::string_view filename, const inline_image& image);

} // namespace gw::core::openai
