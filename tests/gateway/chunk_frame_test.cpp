// chunk_size_line and chunk_buffers: the framing of one chunk of a chunked body, and a
// write that Asio has to queue (the peer is not reading) still sends the size line intact.
#include "gateway/proxy/chunk_frame.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_cat.hpp>
#include <boost/beast/core/buffers_to_string.hpp>

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace gw::gateway {
namespace {

TEST(ChunkFrame, FramesTheBytesWithTheirSizeInHex)
{
    const std::string a = "data: {\"event\":\"message\"}\n\n", b(300, 'x');
    const chunk_size_line two_line(a.size() + b.size());
    EXPECT_EQ(beast::buffers_to_string(chunk_buffers<2>(two_line, {net::buffer(a), net::buffer(b)})), "147\r\n" + a + b + "\r\n")
        << "0x147 = 327 bytes";
    const chunk_size_line one(1);
    EXPECT_EQ(beast::buffers_to_string(chunk_buffers<1>(one, {net::buffer(a.data(), 1)})), "1\r\nd\r\n");
    const std::string big(0x10000, 'y');
    const chunk_size_line sized(big.size());
    EXPECT_EQ(beast::buffers_to_string(chunk_buffers<1>(sized, {net::buffer(big)})).substr(0, 7), "10000\r\n");
    const std::string head = "HTTP/1.1 200 OK\r\n\r\n", body = "hello";
    const chunk_size_line five(body.size());
    EXPECT_EQ(beast::buffers_to_string(beast::buffers_cat(net::buffer(head), chunk_buffers<1>(five, {net::buffer(body)}))),
              head + "5\r\nhello\r\n")
        << "behind a head, as the relay writes it";
}

// Overwrites the stack below the caller: what a queued write's copied buffers must not
// point into.
[[gnu::noinline]] void scribble_on_the_stack()
{
    volatile char junk[16384];
    for (std::size_t i = 0; i < sizeof(junk); ++i) junk[i] = 'Z';
}

// Fills `out`'s send buffer, then writes one chunk as the relay does: the size line a
// local of the awaiting coroutine, the buffers copied into Asio's operation.
net::awaitable<void> write_chunk_behind_a_full_buffer(net::local::stream_protocol::socket& out, std::size_t& filler_bytes,
                                                      const std::string& body)
{
    out.non_blocking(true);
    const std::string filler(65536, 'f');
    for (;;) {
        error_code ec;
        const auto n = out.write_some(net::buffer(filler), ec);
        if (ec) break; // would block: the next write is queued until the peer reads
        filler_bytes += n;
    }
    const chunk_size_line line(body.size());
    auto buffers = chunk_buffers<1>(line, {net::buffer(body)});
    co_await net::async_write(out, buffers, use_nothrow);
}

TEST(ChunkFrame, AQueuedWriteSendsTheSizeLineIntact)
{
    net::io_context io;
    net::local::stream_protocol::socket out(io), in(io);
    net::local::connect_pair(out, in);
    std::size_t filler_bytes = 0;
    const std::string body = "data: {\"event\":\"message\",\"answer\":\"hi\"}\n\n";
    bool written = false;
    net::co_spawn(io, write_chunk_behind_a_full_buffer(out, filler_bytes, body), [&](std::exception_ptr e) {
        EXPECT_FALSE(e);
        written = true;
    });
    io.poll(); // starts the write: the buffer is full, so it waits in the reactor
    ASSERT_FALSE(written) << "the write was expected to wait for the reader";
    scribble_on_the_stack();
    std::string got;
    char size[32];
    std::snprintf(size, sizeof(size), "%zx\r\n", body.size());
    const std::string expected = size + body + "\r\n";
    char buf[65536];
    while (got.size() < filler_bytes + expected.size()) {
        error_code ec;
        const auto n = in.read_some(net::buffer(buf), ec);
        ASSERT_FALSE(ec) << ec.message();
        got.append(buf, n);
        io.poll(); // the queued write goes on as the reader makes room
    }
    io.run();
    EXPECT_TRUE(written);
    EXPECT_EQ(got.substr(filler_bytes), expected);
}

} // namespace
} // namespace gw::gateway
