// Eight bytes at a time in a 64-bit word: a load, and tests that mark each byte for which
// they hold with that byte's high bit, all eight bytes at once. A test adds to the low
// seven bits of every byte: the sum reaches the byte's high bit exactly when the byte is
// at least the bound, and never carries into the next byte.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

namespace gw::core::byte_words {

inline constexpr std::uint64_t ones = 0x0101010101010101ULL;
inline constexpr std::uint64_t highs = ones * 0x80;

// Eight characters as a word, the first in the lowest byte.
inline std::uint64_t load(const char* p)
{
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap64(w);
    return w;
}

// The bytes whose low seven bits are at least `bound` (1 to 127); their high bit is not
// looked at.
constexpr std::uint64_t low_bits_at_least(std::uint64_t w, unsigned bound)
{
    return ((w & ~highs) + ones * (0x80 - bound)) & highs;
}

// The bytes that are not ASCII digits.
constexpr std::uint64_t non_digits(std::uint64_t w)
{
    const std::uint64_t x = w ^ (ones * '0'); // a digit: 0-9
    return (x & highs) | low_bits_at_least(x, 10);
}

// The index of the first byte marked in a test's result (not 0).
inline int first_marked(std::uint64_t marked)
{
    return std::countr_zero(marked) / 8;
}

} // namespace gw::core::byte_words
