// Whether this build runs under a sanitizer, for g++ (__SANITIZE_*__) and clang
// (__has_feature). Allocators that keep or map memory their own way step aside where that
// would hide a bug from the sanitizer: the gateway's recycled_blocks under AddressSanitizer,
// OpenSSL's record buffers under AddressSanitizer and ThreadSanitizer, and huge_pages'
// mappings under AddressSanitizer (an index past an array would land in mapped memory
// AddressSanitizer does not watch).
#pragma once

#if defined(__has_feature)
#define GW_HAS_FEATURE(x) __has_feature(x)
#else
#define GW_HAS_FEATURE(x) 0
#endif

namespace gw::core {

#if defined(__SANITIZE_ADDRESS__) || GW_HAS_FEATURE(address_sanitizer)
inline constexpr bool address_sanitizer = true;
#else
inline constexpr bool address_sanitizer = false;
#endif

#if defined(__SANITIZE_THREAD__) || GW_HAS_FEATURE(thread_sanitizer)
inline constexpr bool thread_sanitizer = true;
#else
inline constexpr bool thread_sanitizer = false;
#endif

} // namespace gw::core

#undef GW_HAS_FEATURE
