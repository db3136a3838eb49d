// Hashing and constant-time comparison of secret keys (tenant gateway keys).
// Stored keys are either plaintext or "sha256:<64 lowercase hex>".
#pragma once

#include <string>
#include <string_view>

namespace gw::core {

inline constexpr std::string_view sha256_prefix = "sha256:";

// Lowercase hex SHA-256 of `data`.
std::string sha256_hex(std::string_view data);

// "sha256:<hex>" for `key`: the form operators store in the config.
std::string hash_key(std::string_view key);

// True when `s` is "sha256:" followed by exactly 64 hex digits.
bool is_hashed_key(std::string_view s);

// Compares two byte strings in time that depends only on their lengths.
bool constant_time_equal(std::string_view a, std::string_view b);

} // namespace gw::core
