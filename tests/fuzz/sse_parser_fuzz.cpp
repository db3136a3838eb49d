// libFuzzer: the SSE parser fed the same bytes whole and in arbitrary pieces (each
// overwritten once fed, as a relay's scratch is) must frame the same events at the same
// offsets as the byte-at-a-time parser it replaced (tests/support/sse_parser_reference.hpp);
// every event's facts are read without harm.
#include "core/sse_parser.hpp"
#include "core/stream_facts.hpp"
#include "tests/support/sse_parser_reference.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

using gw::test::reference_sse_event;

std::vector<reference_sse_event> run(std::string_view input, std::size_t seed, std::size_t max)
{
    gw::core::sse_parser p(max);
    gw::core::stream_facts facts;
    std::vector<reference_sse_event> out;
    std::size_t fed = 0;
    std::string buffer;
    while (fed < input.size()) {
        std::size_t n = seed == 0 ? input.size() : 1 + (seed = seed * 6364136223846793005ULL + 1442695040888963407ULL) % 97;
        buffer.assign(input.substr(fed, n));
        p.feed(buffer, [&](const gw::core::sse_event& e, std::size_t end) {
            facts.observe(e);
            out.push_back({std::string(e.event), std::string(e.data), std::string(e.id), fed + end, p.truncated()});
        });
        buffer.assign(buffer.size(), '#');
        fed += n;
    }
    return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::size_t max = size > 0 ? 8 + data[0] % 200 : 64;
    gw::test::reference_sse_parser reference(max);
    std::vector<reference_sse_event> want;
    reference.feed(input, 0, want);
    if (run(input, 0, max) != want) std::abort();
    if (run(input, size | 1, max) != want) std::abort();
    return 0;
}
