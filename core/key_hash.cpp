#include "core/key_hash.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <array>
#include <memory>
#include <stdexcept>

namespace gw::core {

namespace {

// SHA-256 fetched once, and a digest context per thread: OpenSSL 3's one-shot EVP_Digest
// looks the algorithm up and allocates a context on every call (most of its cost here).
const EVP_MD* sha256_md()
{
    static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return md;
}

EVP_MD_CTX* thread_digest_context()
{
    thread_local std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    return ctx.get();
}

} // namespace

sha256_digest sha256(std::string_view data)
{
    sha256_digest digest{};
    unsigned int len = 0;
    auto* ctx = thread_digest_context();
    const auto* md = sha256_md();
    if (!ctx || !md || EVP_DigestInit_ex2(ctx, md, nullptr) != 1 || EVP_DigestUpdate(ctx, data.data(), data.size()) != 1 ||
        EVP_DigestFinal_ex(ctx, digest.data(), &len) != 1 || len != digest.size())
        throw std::runtime_error("sha256 failed");
    return digest;
}

std::string sha256_hex(std::string_view data)
{
    static constexpr char hex[] = "0123456789abcdef";
    const auto digest = sha256(data);
    std::string out(digest.size() * 2, '\0');
    for (std::size_t i = 0; i < digest.size(); ++i) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 0xF];
    }
    return out;
}

std::optional<sha256_digest> digest_from_hex(std::string_view hex)
{
    const auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    sha256_digest d{};
    if (hex.size() != d.size() * 2) return std::nullopt;
    for (std::size_t i = 0; i < d.size(); ++i) {
        const int high = nibble(hex[2 * i]), low = nibble(hex[2 * i + 1]);
        if (high < 0 || low < 0) return std::nullopt;
        d[i] = static_cast<unsigned char>(high << 4 | low);
    }
    return d;
}

std::string hash_key(std::string_view key)
{
    return std::string(sha256_prefix) + sha256_hex(key);
}

bool is_hashed_key(std::string_view s)
{
    if (!s.starts_with(sha256_prefix) || s.size() != sha256_prefix.size() + 64) return false;
    for (char c : s.substr(sha256_prefix.size()))
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return false;
    return true;
}

bool constant_time_equal(std::string_view a, std::string_view b)
{
    if (a.size() != b.size()) return false;
    return a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

} // namespace gw::core
