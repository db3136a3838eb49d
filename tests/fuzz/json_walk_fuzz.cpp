// libFuzzer: json_walk accepts and refuses exactly what Boost.JSON's parser does and tells
// the same values; stream_facts reads the same facts from a reply read whole and read in
// pieces (the two readers a reply may go through).
#include "tests/support/json_trace.hpp"

#include <cstdint>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    if (gw::test::has_huge_exponent(input)) return 0;
    if (gw::test::walk_trace(input, 128) != gw::test::boost_trace(input, 128)) std::abort();
    const auto [whole, streamed] = gw::test::facts_whole_and_streamed(input, 1 + size % 13);
    if (whole != streamed) std::abort();
    return 0;
}
