// One chunk of a chunked HTTP/1.1 body as buffers, made without allocating.
#pragma once

#include "gateway/net.hpp"

#include <boost/asio/buffer.hpp>

#include <array>
#include <cstddef>

namespace gw::gateway {

// A chunk's size line, "<size in hex>\r\n" (Beast's make_chunk allocates it on the heap:
// once per relayed event). The buffers of a write point into it, and Asio copies those
// buffers into its operations: it must stay where it is, unmoved, until the write that
// carries it completes (a local of the coroutine that awaits the write).
class chunk_size_line
{
public:
    explicit chunk_size_line(std::size_t size = 0)
    {
        char digits[2 * sizeof(std::size_t)];
        std::size_t n = 0;
        do {
            digits[n++] = "0123456789abcdef"[size & 0xF];
            size >>= 4;
        } while (size > 0);
        for (std::size_t i = 0; i < n; ++i) chars_[i] = digits[n - 1 - i];
        chars_[n] = '\r';
        chars_[n + 1] = '\n';
        length_ = n + 2;
    }
    net::const_buffer buffer() const { return {chars_.data(), length_}; }

private:
    std::array<char, 2 * sizeof(std::size_t) + 2> chars_{};
    std::size_t length_ = 0;
};

// A chunk around `body`: the size line, the bytes, "\r\n". `line` must be
// chunk_size_line(total size of body), and never of zero bytes (a zero-size chunk ends
// the body).
template <std::size_t N>
std::array<net::const_buffer, N + 2> chunk_buffers(const chunk_size_line& line, const std::array<net::const_buffer, N>& body)
{
    std::array<net::const_buffer, N + 2> out;
    out[0] = line.buffer();
    for (std::size_t i = 0; i < N; ++i) out[i + 1] = body[i];
    out[N + 1] = net::const_buffer("\r\n", 2);
    return out;
}

} // namespace gw::gateway
