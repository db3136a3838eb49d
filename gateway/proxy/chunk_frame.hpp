// One chunk of a chunked HTTP/1.1 body as a buffer sequence, made without allocating.
#pragma once

#include "gateway/net.hpp"

#include <boost/asio/buffer.hpp>

#include <array>
#include <cstddef>

namespace gw::gateway {

// A chunk of a chunked body around `body` buffers: "<size in hex>\r\n", the bytes,
// "\r\n"; itself the buffer sequence to write. Made in place (Beast's make_chunk
// allocates its size line on the heap: once per relayed event). A copy points at its own
// size line, so it can be passed by value into a write. The caller never frames zero
// bytes (a zero-size chunk ends the body).
template <std::size_t N>
class chunk_frame
{
public:
    using value_type = net::const_buffer;
    using const_iterator = const net::const_buffer*;

    explicit chunk_frame(const std::array<net::const_buffer, N>& body)
    {
        std::size_t size = 0;
        for (const auto& b : body) size += b.size();
        char digits[2 * sizeof(std::size_t)];
        std::size_t n = 0;
        do {
            digits[n++] = "0123456789abcdef"[size & 0xF];
            size >>= 4;
        } while (size > 0);
        for (std::size_t i = 0; i < n; ++i) size_line_[i] = digits[n - 1 - i];
        size_line_[n] = '\r';
        size_line_[n + 1] = '\n';
        size_line_length_ = n + 2;
        for (std::size_t i = 0; i < N; ++i) buffers_[i + 1] = body[i];
        buffers_[N + 1] = net::const_buffer("\r\n", 2);
        point_at_size_line();
    }
    chunk_frame(const chunk_frame& other)
        : size_line_(other.size_line_), size_line_length_(other.size_line_length_), buffers_(other.buffers_)
    {
        point_at_size_line();
    }
    chunk_frame& operator=(const chunk_frame&) = delete;

    const_iterator begin() const { return buffers_.data(); }
    const_iterator end() const { return buffers_.data() + buffers_.size(); }

private:
    void point_at_size_line() { buffers_[0] = net::const_buffer(size_line_.data(), size_line_length_); }

    std::array<char, 2 * sizeof(std::size_t) + 2> size_line_{};
    std::size_t size_line_length_ = 0;
    std::array<net::const_buffer, N + 2> buffers_{};
};

} // namespace gw::gateway
