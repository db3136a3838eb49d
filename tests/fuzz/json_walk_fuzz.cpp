// libFuzzer: json_walk accepts and refuses exactly what Boost.JSON's parser does and tells
// the same values; stream_facts reads the same facts from a reply read whole and read in
// pieces (the two readers a reply may go through).
#include "tests/support/json_trace.hpp"

#include <cstdint>
#include <cstdlib>

namespace {

// An exponent of ten or more digits besides leading zeros: near ±2^31 json_walk and
// Boost.JSON may differ by design (see json_walk.hpp), so such inputs are not compared.
bool has_huge_exponent(std::string_view s)
{
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != 'e' && s[i] != 'E') continue;
        std::size_t j = i + 1;
        if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
        while (j < s.size() && s[j] == '0') ++j;
        std::size_t digits = 0;
        while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j, ++digits;
        if (digits >= 10) return true;
    }
    return false;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    if (has_huge_exponent(input)) return 0;
    if (gw::test::walk_trace(input, 128) != gw::test::boost_trace(input, 128)) std::abort();
    const auto [whole, streamed] = gw::test::facts_whole_and_streamed(input, 1 + size % 13);
    if (whole != streamed) std::abort();
    return 0;
}
