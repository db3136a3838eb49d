// Whether this build runs under a sanitizer, for g++ (__SANITIZE_*__) and clang
// (__has_feature). The gateway's recycling allocators keep no freed block where a kept one
// would hide a use after free: recycled_blocks under AddressSanitizer, OpenSSL's record
// buffers under AddressSanitizer and ThreadSanitizer.
#pragma once

namespace gw::gateway {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool address_sanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool address_sanitizer = true;
#else
inline constexpr bool address_sanitizer = false;
#endif
#else
inline constexpr bool address_sanitizer = false;
#endif

#if defined(__SANITIZE_THREAD__)
inline constexpr bool thread_sanitizer = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool thread_sanitizer = true;
#else
inline constexpr bool thread_sanitizer = false;
#endif
#else
inline constexpr bool thread_sanitizer = false;
#endif

} // namespace gw::gateway
