// Memory a worker uses for a moment per request, recycled per thread: the fields of the
// message heads it reads (Beast allocates one block per field), the heads and strings it
// writes, a relay's read piece. Freed blocks are kept per thread by size class and handed
// to the next request that asks for one of their class, so a worker's requests reuse the
// blocks of the requests before them instead of calling malloc and free for each.
//
// Contract: take() and give() may be called on any thread; a block given back joins the
// lists of the thread that gives it. Each thread keeps at most `max_kept` blocks per small
// class, `max_kept_large` per larger one and `max_kept_bytes` in all, and frees them when it
// exits. Under AddressSanitizer blocks are not kept, so that a use after free is still caught.
#pragma once

#include "core/sanitizers.hpp"

#include <cstddef>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

namespace gw::gateway {

namespace recycled_blocks {
// Classes: 16-byte steps up to 1 KiB (field blocks, short strings), then 64-byte steps up
// to `largest` (heads written, the request's block, relay pieces): a block is at most 63
// bytes longer than asked, which matters for the request's block an open stream holds.
// Larger blocks come from operator new and go back to it.
inline constexpr std::size_t small_step = 16;
inline constexpr std::size_t small_largest = 1024;
inline constexpr std::size_t large_step = 64;
inline constexpr std::size_t largest = 8 * 1024;
inline constexpr std::size_t max_kept = 64;                // per class up to 1 KiB, per thread
inline constexpr std::size_t max_kept_large = 16;          // per larger class, per thread
inline constexpr std::size_t max_kept_bytes = 512 * 1024;  // per thread, all classes
inline constexpr bool keeps_blocks = !core::address_sanitizer;

// A block of at least `bytes` (operator new's alignment); give it back with the same size.
void* take(std::size_t bytes);
void give(void* block, std::size_t bytes) noexcept;
// For tests: what the calling thread keeps now.
std::size_t kept_on_this_thread() noexcept;
std::size_t kept_bytes_on_this_thread() noexcept;
} // namespace recycled_blocks

// A stateless allocator over recycled_blocks, for containers (Beast's fields, strings).
template <typename T>
class block_allocator
{
public:
    static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__, "blocks have operator new's alignment");
    using value_type = T;
    using is_always_equal = std::true_type;
    using propagate_on_container_move_assignment = std::true_type;

    block_allocator() noexcept = default;
    template <typename U>
    block_allocator(const block_allocator<U>&) noexcept
    {
    }

    T* allocate(std::size_t n) { return static_cast<T*>(recycled_blocks::take(n * sizeof(T))); }
    void deallocate(T* p, std::size_t n) noexcept { recycled_blocks::give(p, n * sizeof(T)); }

    template <typename U>
    friend bool operator==(const block_allocator&, const block_allocator<U>&) noexcept
    {
        return true;
    }
};

// Text a request builds and drops (a head written, a rewritten body part).
using recycled_string = std::basic_string<char, std::char_traits<char>, block_allocator<char>>;

// An object in a recycled block (one a coroutine frame would otherwise hold inline, on a
// path that may not need it), destroyed and given back by its pointer.
template <typename T>
struct recycled_delete
{
    void operator()(T* p) const noexcept
    {
        p->~T();
        recycled_blocks::give(p, sizeof(T));
    }
};
template <typename T>
using recycled_ptr = std::unique_ptr<T, recycled_delete<T>>;

template <typename T, typename... Args>
recycled_ptr<T> make_recycled(Args&&... args)
{
    static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__, "blocks have operator new's alignment");
    void* block = recycled_blocks::take(sizeof(T));
    try {
        return recycled_ptr<T>(::new (block) T(std::forward<Args>(args)...));
    } catch (...) {
        recycled_blocks::give(block, sizeof(T));
        throw;
    }
}

// A base for a class made and freed once per request (`class T final : public
// recycled_allocation<T>`): `new T` and `delete` use the thread's recycled blocks. The class
// is final, so the size delete is given is the one new was asked for.
template <typename T>
struct recycled_allocation
{
    static void* operator new(std::size_t size)
    {
        static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__, "blocks have operator new's alignment");
        return recycled_blocks::take(size);
    }
    static void operator delete(void* p, std::size_t size) noexcept { recycled_blocks::give(p, size); }
};

// One block held for a scope: a coroutine frame holds the pointer, not the bytes (Asio
// keeps freed frames only up to 1,020 bytes; a larger frame is a malloc and a free).
class recycled_buffer
{
public:
    explicit recycled_buffer(std::size_t size) : data_(static_cast<char*>(recycled_blocks::take(size))), size_(size) {}
    ~recycled_buffer() { recycled_blocks::give(data_, size_); }
    recycled_buffer(const recycled_buffer&) = delete;
    recycled_buffer& operator=(const recycled_buffer&) = delete;

    char* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }

private:
    char* data_;
    std::size_t size_;
};

} // namespace gw::gateway
