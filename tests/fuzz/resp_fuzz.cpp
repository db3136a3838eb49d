// libFuzzer: RESP replies (what a Redis server, or anything on its port, sends back), fed
// in two pieces; replies come out or the stream is declared malformed, never a crash.
#include "gateway/quota/resp_reader.hpp"

#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    gw::gateway::resp_reader reader;
    auto half = size / 2;
    reader.feed(reinterpret_cast<const char*>(data), half);
    while (reader.next()) {
    }
    reader.feed(reinterpret_cast<const char*>(data) + half, size - half);
    while (reader.next()) {
    }
    return 0;
}
