// Images an OpenAI message gives inline, as `data:` URLs (RFC 2397): read and checked,
// and made into the multipart/form-data body of Dify's POST /files/upload, whose file id
// the turn then names (Dify takes an image as a remote URL it fetches, or as an uploaded
// file; a data: URL is neither).
#pragma once

#include "core/openai_chat.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

// What one turn may upload: data: images in its newest message, and each one's size
// (Dify's default image upload limit).
inline constexpr std::size_t max_inline_images = 10;
inline constexpr std::size_t max_inline_image_bytes = 10 * 1024 * 1024;

// Takes the data: URLs out of `r`: the newest message's, in order, are returned (to be
// uploaded); every data: URL in `r` (history included) is replaced by a short stand-in
// naming its digest, so a turn holds no image twice and equal histories keep equal
// digests. Each newest image is checked without decoding (type, alphabet, size); nullopt
// with a 400 in `err` for a bad one, more than max_inline_images, or one over
// max_inline_image_bytes.
std::optional<std::vector<std::string>> take_inline_images(chat_request& r, api_error& err);

// `data:<image type>[;param=value]*;base64,<data>`, decoded. nullopt, with the reason in
// `why`, for a URL that is not base64, an image type Dify does not take, data that is not
// base64 (RFC 4648 alphabet, padding optional; no whitespace, as browsers and SDKs write
// it), or more than max_inline_image_bytes.
std::optional<inline_image> parse_image_data_url(std::string_view url, std::string& why);

// The files/upload request body: the `user` field, then the file part `filename` with the
// image's type. The boundary is 128 bits from `random` (unguessable: a client cannot fill
// an image with the candidates), drawn again in the unlikely case it occurs in either.
struct upload_form
{
    std::string content_type; // multipart/form-data; boundary=...
    std::string body;
};
upload_form files_upload_form(
    std::string_view user,
    std::string_view filename,
    const inline_image& image,
    const std::function<std::uint64_t()>& random
);

} // namespace gw::core::openai
