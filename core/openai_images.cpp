#include "core/openai_images.hpp"

#include "core/key_hash.hpp"
#include "core/text.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <utility>

namespace gw::core::openai {

namespace {

struct image_type
{
    std::string_view media_type, extension;
};
constexpr std::array<image_type, 5> image_types{{
    {"image/png", "png"}, {"image/jpeg", "jpg"}, {"image/jpg", "jpg"}, {"image/gif", "gif"}, {"image/webp", "webp"},
}};

// The value of a base64 digit, -1 for anything else.
int base64_digit(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

// The data with at most two pad characters taken off; nullopt when it cannot be base64.
std::optional<std::string_view> unpadded_base64(std::string_view in)
{
    for (int pad = 0; pad < 2 && !in.empty() && in.back() == '='; ++pad)
        in.remove_suffix(1);
    if (in.size() % 4 == 1) return std::nullopt;
    return in;
}

std::optional<std::string> decode_base64(std::string_view in)
{
    auto digits = unpadded_base64(in);
    if (!digits) return std::nullopt;
    in = *digits;
    std::string out;
    out.reserve(in.size() / 4 * 3 + 2);
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
        const int d = base64_digit(c);
        if (d < 0) return std::nullopt;
        acc = (acc << 6) | static_cast<std::uint32_t>(d);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    return out;
}

} // namespace

bool is_data_url(std::string_view url)
{
    return url.size() >= 5 && iequals(url.substr(0, 5), "data:");
}

namespace {

// The image type of a data: image URL and where its data starts; nullopt (with why) for a
// URL this gateway does not upload.
std::optional<std::pair<const image_type*, std::size_t>> read_data_url_head(std::string_view url, std::string& why)
{
    const auto comma = url.find(',');
    if (!is_data_url(url) || comma == std::string_view::npos) {
        why = "An image URL must be an http(s) URL or a data: URL.";
        return std::nullopt;
    }
    const auto meta = url.substr(5, comma - 5);
    const auto params = split(meta, ';');
    if (params.size() < 2 || !iequals(trim(params.back()), "base64")) {
        why = "A data: image URL must be base64-encoded.";
        return std::nullopt;
    }
    const auto type = to_lower(trim(params.front()));
    const image_type* known = nullptr;
    for (const auto& t : image_types)
        if (t.media_type == type) known = &t;
    if (!known) {
        why = "Images must be PNG, JPEG, GIF or WebP (the data: URL says '" + type.substr(0, 64) + "').";
        return std::nullopt;
    }
    return std::pair{known, comma + 1};
}

// Checks a data: image URL without decoding it: its type, its alphabet, its size.
bool check_image_data_url(std::string_view url, std::string& why)
{
    auto head = read_data_url_head(url, why);
    if (!head) return false;
    auto digits = unpadded_base64(url.substr(head->second));
    if (!digits || digits->empty() ||
        !std::all_of(digits->begin(), digits->end(), [](char c) { return base64_digit(c) >= 0; })) {
        why = "The data: image URL's data is not base64.";
        return false;
    }
    if (digits->size() / 4 * 3 > max_inline_image_bytes) {
        why = "An image may be at most " + std::to_string(max_inline_image_bytes / (1024 * 1024)) + " MiB.";
        return false;
    }
    return true;
}

} // namespace

std::optional<std::vector<std::string>> take_inline_images(chat_request& r, api_error& err)
{
    std::vector<std::string> out;
    for (std::size_t m = 0; m < r.messages.size(); ++m) {
        const bool newest = m + 1 == r.messages.size();
        for (auto& url : r.messages[m].images) {
            const bool remote = url.starts_with("https://") || url.starts_with("http://");
            if (newest && !remote && !is_data_url(url)) {
                err = {400, "invalid_request_error", "invalid_image_url", "messages",
                       "An image URL must be an http(s) URL or a data: URL."};
                return std::nullopt;
            }
            if (!is_data_url(url)) continue;
            std::string why;
            if (newest && out.size() == max_inline_images)
                why = "A message may carry at most " + std::to_string(max_inline_images) + " data: images.";
            if (newest && why.empty()) check_image_data_url(url, why);
            if (!why.empty()) {
                err = {400, "invalid_request_error", "invalid_image_url", "messages", std::move(why)};
                return std::nullopt;
            }
            auto stand_in = "data:sha256," + sha256_hex(url);
            if (newest) out.push_back(std::exchange(url, std::move(stand_in)));
            else url = std::move(stand_in);
        }
    }
    return out;
}

std::optional<inline_image> parse_image_data_url(std::string_view url, std::string& why)
{
    auto head = read_data_url_head(url, why);
    if (!head || !check_image_data_url(url, why)) return std::nullopt;
    const auto* known = head->first;
    auto bytes = decode_base64(url.substr(head->second));
    if (!bytes || bytes->empty()) {
        why = "The data: image URL's data is not base64.";
        return std::nullopt;
    }
    return inline_image{std::string(known->media_type == "image/jpg" ? "image/jpeg" : known->media_type),
                        std::string(known->extension), std::move(*bytes)};
}

upload_form files_upload_form(
    std::string_view user,
    std::string_view filename,
    const inline_image& image,
    const std::function<std::uint64_t()>& random
)
{
    std::string boundary;
    do {
        const auto high = random(), low = random(); // in this order
        char hex[33];
        std::snprintf(hex, sizeof hex, "%016llx%016llx", static_cast<unsigned long long>(high),
                      static_cast<unsigned long long>(low));
        boundary = std::string("dify-gateway-") + hex;
    } while (image.bytes.find(boundary) != std::string::npos || user.find(boundary) != std::string_view::npos);
    upload_form out;
    out.content_type = "multipart/form-data; boundary=" + boundary;
    auto& b = out.body;
    b.reserve(image.bytes.size() + user.size() + filename.size() + 4 * boundary.size() + 256);
    b.append("--").append(boundary).append("\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\n");
    b.append(user).append("\r\n--").append(boundary);
    b.append("\r\nContent-Disposition: form-data; name=\"file\"; filename=\"").append(filename).append("\"\r\n");
    b.append("Content-Type: ").append(image.media_type).append("\r\n\r\n");
    b.append(image.bytes).append("\r\n--").append(boundary).append("--\r\n");
    return out;
}

} // namespace gw::core::openai
