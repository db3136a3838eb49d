// Memory for large arrays read at random (the ownership table's slots): blocks of 2 MiB
// and more are mapped on their own, aligned to 2 MiB and advised to the kernel as huge
// pages (MADV_HUGEPAGE). Where the kernel backs them so (transparent huge pages in
// `madvise` or `always` mode), a lookup at a random place rarely walks the page table: a
// 12 MiB array spans 3,072 small pages, more than the TLB holds, and in a virtual machine
// each walk is two-dimensional. Where it does not, the mapping serves with small pages.
// Smaller blocks, and every block under AddressSanitizer (which does not watch mappings of
// its own), come from operator new.
#pragma once

#include "core/sanitizers.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

namespace gw::core {

inline constexpr std::size_t huge_page_size = std::size_t{2} << 20;

// A block of at least `bytes` (≥ huge_page_size) from its own 2 MiB-aligned mapping;
// throws std::bad_alloc when none can be mapped.
void* map_huge_block(std::size_t bytes);
// Unmaps a block from map_huge_block (the same `bytes`).
void unmap_huge_block(void* block, std::size_t bytes) noexcept;

template <typename T> struct huge_page_allocator
{
    using value_type = T;

    huge_page_allocator() = default;
    template <typename U> huge_page_allocator(const huge_page_allocator<U>&) noexcept {}

    T* allocate(std::size_t n)
    {
        if (n > max_elements) throw std::bad_array_new_length();
        if (mapped(n)) return static_cast<T*>(map_huge_block(n * sizeof(T)));
        return std::allocator<T>().allocate(n);
    }
    void deallocate(T* p, std::size_t n) noexcept
    {
        if (mapped(n))
            unmap_huge_block(p, n * sizeof(T));
        else
            std::allocator<T>().deallocate(p, n);
    }

    // Whether a block of n elements is a mapping of its own.
    static constexpr bool mapped(std::size_t n)
    {
        return !address_sanitizer && n * sizeof(T) >= huge_page_size;
    }

    template <typename U> bool operator==(const huge_page_allocator<U>&) const noexcept { return true; }

private:
    // Rounded up to whole huge pages, the size of a block must not wrap.
    static constexpr std::size_t max_elements = (SIZE_MAX - 2 * huge_page_size) / sizeof(T);
};

} // namespace gw::core
