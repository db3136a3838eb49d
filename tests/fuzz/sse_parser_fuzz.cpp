// libFuzzer: the SSE parser fed the same bytes whole and in arbitrary pieces must frame
// the same events at the same offsets; every event's facts are read without harm.
#include "core/sse_parser.hpp"
#include "core/stream_facts.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

struct framed
{
    std::string data, event;
    std::size_t end;
    bool operator==(const framed&) const = default;
};

std::vector<framed> run(std::string_view input, std::size_t seed)
{
    gw::core::sse_parser p;
    gw::core::stream_facts facts;
    std::vector<framed> out;
    std::size_t fed = 0;
    while (fed < input.size()) {
        std::size_t n = seed == 0 ? input.size() : 1 + (seed = seed * 6364136223846793005ULL + 1442695040888963407ULL) % 97;
        auto piece = input.substr(fed, n);
        std::size_t base = fed;
        p.feed(piece, [&](const gw::core::sse_event& e, std::size_t end) {
            facts.observe(e);
            out.push_back({std::string(e.data), std::string(e.event), base + end});
        });
        fed += piece.size();
    }
    return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    std::string_view input(reinterpret_cast<const char*>(data), size);
    auto whole = run(input, 0);
    auto pieces = run(input, size | 1);
    if (whole != pieces) std::abort();
    return 0;
}
