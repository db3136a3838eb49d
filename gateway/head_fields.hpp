// The fields of the message heads a worker reads: a client's request head and Dify's
// reply head. Beast's basic_fields allocates one block per field (its name and value
// inline) and one for the start line, so a proxied request's two heads cost about ten
// allocations. `head_fields` takes those blocks from a recycling allocator instead: freed
// blocks are kept per thread, by size, and handed to the next head, so a worker's heads
// reuse the blocks of the heads before them.
//
// Contract: the allocator is stateless; any instance frees any block, on any thread (a
// block freed on another thread joins that thread's lists). Each thread keeps at most
// `max_kept` blocks per size class, and frees them when it exits. Under AddressSanitizer
// blocks are not kept, so that a use after free is still caught.
#pragma once

#include "gateway/sanitizers.hpp"

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>

#include <cstddef>
#include <new>
#include <type_traits>

namespace gw::gateway {

// The per-thread lists behind field_allocator. Blocks up to `largest` bytes are kept,
// in classes of `step` bytes; larger ones come from operator new and go back to it.
namespace field_blocks {
inline constexpr std::size_t step = 16;
inline constexpr std::size_t largest = 256;
inline constexpr std::size_t max_kept = 64;
inline constexpr bool keeps_blocks = !address_sanitizer;
void* take(std::size_t bytes);
void give(void* block, std::size_t bytes) noexcept;
std::size_t kept_on_this_thread() noexcept; // for tests
} // namespace field_blocks

template <typename T>
class field_allocator
{
public:
    static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__, "blocks have operator new's alignment");
    using value_type = T;
    using is_always_equal = std::true_type;
    using propagate_on_container_move_assignment = std::true_type;

    field_allocator() noexcept = default;
    template <typename U>
    field_allocator(const field_allocator<U>&) noexcept
    {
    }

    T* allocate(std::size_t n) { return static_cast<T*>(field_blocks::take(n * sizeof(T))); }
    void deallocate(T* p, std::size_t n) noexcept { field_blocks::give(p, n * sizeof(T)); }

    template <typename U>
    friend bool operator==(const field_allocator&, const field_allocator<U>&) noexcept
    {
        return true;
    }
};

using head_fields = boost::beast::http::basic_fields<field_allocator<char>>;
using request_head = boost::beast::http::request_header<head_fields>;
template <typename Body>
using client_request_parser = boost::beast::http::request_parser<Body, field_allocator<char>>;
template <typename Body>
using dify_reply_parser = boost::beast::http::response_parser<Body, field_allocator<char>>;

} // namespace gw::gateway
