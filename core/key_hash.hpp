// Hashing and constant-time comparison of secret keys (tenant gateway keys).
// Stored keys are either plaintext or "sha256:<64 lowercase hex>".
#pragma once

#include <array>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace gw::core {

inline constexpr std::string_view sha256_prefix = "sha256:";

using sha256_digest = std::array<unsigned char, 32>;

// SHA-256 of `data`.
sha256_digest sha256(std::string_view data);

// Lowercase hex SHA-256 of `data`.
std::string sha256_hex(std::string_view data);

// The digest written as 64 hex digits (either case); nullopt for anything else.
std::optional<sha256_digest> digest_from_hex(std::string_view hex);

// A hash table's hash of a digest: its first eight bytes (a digest is already uniform).
struct sha256_digest_hash
{
    std::size_t operator()(const sha256_digest& d) const noexcept
    {
        std::size_t h = 0;
        std::memcpy(&h, d.data(), sizeof h);
        return h;
    }
};

// "sha256:<hex>" for `key`: the form operators store in the config.
std::string hash_key(std::string_view key);

// True when `s` is "sha256:" followed by exactly 64 hex digits.
bool is_hashed_key(std::string_view s);

// Compares two byte strings in time that depends only on their lengths.
bool constant_time_equal(std::string_view a, std::string_view b);

} // namespace gw::core
