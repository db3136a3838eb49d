// chunk_frame: the framing of one chunk of a chunked body, and copies that stay valid.
#include "gateway/proxy/chunk_frame.hpp"

#include <boost/beast/core/buffers_cat.hpp>
#include <boost/beast/core/buffers_to_string.hpp>

#include <gtest/gtest.h>

#include <string>

namespace gw::gateway {
namespace {

TEST(ChunkFrame, FramesTheBytesWithTheirSizeInHex)
{
    const std::string a = "data: {\"event\":\"message\"}\n\n", b(300, 'x');
    const chunk_frame<2> two({net::buffer(a), net::buffer(b)});
    EXPECT_EQ(beast::buffers_to_string(two), "147\r\n" + a + b + "\r\n") << "0x147 = 327 bytes";
    const chunk_frame<1> one({net::buffer(a.data(), 1)});
    EXPECT_EQ(beast::buffers_to_string(one), "1\r\nd\r\n");
    const std::string big(0x10000, 'y');
    const chunk_frame<1> sized({net::buffer(big)});
    EXPECT_EQ(beast::buffers_to_string(sized).substr(0, 7), "10000\r\n");
}

TEST(ChunkFrame, ACopyPointsAtItsOwnSizeLine)
{
    const std::string body = "hello";
    std::string copied;
    {
        auto original = std::make_unique<chunk_frame<1>>(std::array{net::const_buffer(net::buffer(body))});
        chunk_frame<1> copy(*original);
        original.reset(); // a write holds a copy after the caller's frame is gone
        copied = beast::buffers_to_string(copy);
    }
    EXPECT_EQ(copied, "5\r\nhello\r\n");
    const chunk_frame<1> frame({net::buffer(body)});
    const std::string head = "HTTP/1.1 200 OK\r\n\r\n";
    EXPECT_EQ(beast::buffers_to_string(beast::buffers_cat(net::buffer(head), frame)), head + "5\r\nhello\r\n")
        << "inside a buffers_cat, as the relay writes it behind a head";
}

} // namespace
} // namespace gw::gateway
