// Finding where a plain run of JSON string text ends: the first quote, backslash or control
// character (and, for a reader that checks UTF-8, the first byte of a multi-byte sequence).
// Sixteen bytes at a time with SSE2, which every x86-64 processor has; eight at a time in a
// 64-bit word elsewhere; byte by byte for the last few. Both wide forms are compiled and
// tested on every machine (run_end_sse2 only where SSE2 is).
#pragma once

#include "core/byte_words.hpp"

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace gw::core::byte_scan {

// Which bytes end a run: '"', '\\' and below 0x20, and with `high` 0x80 and above.
template <bool high>
inline constexpr std::array<bool, 256> run_enders = [] {
    std::array<bool, 256> t{};
    for (int c = 0; c < 0x20; ++c) t[c] = true;
    t['"'] = t['\\'] = true;
    if (high)
        for (int c = 0x80; c < 0x100; ++c) t[c] = true;
    return t;
}();

template <bool high>
inline const char* run_end_bytes(const char* p, const char* end)
{
    while (p != end && !run_enders<high>[static_cast<unsigned char>(*p)]) ++p;
    return p;
}

// Eight bytes as a little-endian word: the high bit of each byte that ends a run. Bytes
// above the first one marked may be marked wrongly (a borrow); the first one never is.
template <bool high>
inline std::uint64_t run_enders_in_word(std::uint64_t w)
{
    using byte_words::highs, byte_words::ones;
    const auto zero_byte = [](std::uint64_t x) { return (x - ones) & ~x & highs; };
    const std::uint64_t below_space = (w - ones * 0x20) & ~w & highs;
    std::uint64_t marked = zero_byte(w ^ (ones * '"')) | zero_byte(w ^ (ones * '\\')) | below_space;
    if (high) marked |= w & highs;
    return marked & highs;
}

template <bool high>
inline const char* run_end_words(const char* p, const char* end)
{
    if constexpr (std::endian::native == std::endian::little) {
        while (end - p >= 8) {
            std::uint64_t w;
            std::memcpy(&w, p, 8);
            if (const std::uint64_t marked = run_enders_in_word<high>(w)) return p + std::countr_zero(marked) / 8;
            p += 8;
        }
    }
    return run_end_bytes<high>(p, end);
}

#if defined(__SSE2__)
template <bool high>
inline const char* run_end_sse2(const char* p, const char* end)
{
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
    while (end - p >= 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        // Compared as signed bytes: below 0x20 takes 0x80 and above too, unless the top bit
        // is flipped first.
        const __m128i control = high ? _mm_cmplt_epi8(v, _mm_set1_epi8(0x20))
                                     : _mm_cmplt_epi8(_mm_xor_si128(v, _mm_set1_epi8(static_cast<char>(0x80))),
                                                      _mm_set1_epi8(static_cast<char>(0xA0)));
        const __m128i marked = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)), control);
        if (const unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(marked))) return p + std::countr_zero(mask);
        p += 16;
    }
    return run_end_words<high>(p, end);
}
#endif

// The first byte in [p, end) that ends a run; end when none does.
template <bool high>
inline const char* run_end(const char* p, const char* end)
{
#if defined(__SSE2__)
    return run_end_sse2<high>(p, end);
#else
    return run_end_words<high>(p, end);
#endif
}

} // namespace gw::core::byte_scan
