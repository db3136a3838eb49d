// Memory for large arrays read at random (the ownership table's slots): blocks of 2 MiB
// and more are mapped on their own, aligned to 2 MiB and advised to the kernel as huge
// pages (MADV_HUGEPAGE), so that a lookup costs one cache miss and no page-table walk
// (a 12 MiB array spans 3,072 small pages, more than the TLB holds; in a virtual machine
// each walk is two-dimensional). Smaller blocks come from operator new. Where the kernel
// does not give huge pages, the mapping is used with small pages: nothing else changes.
#pragma once

#include <cstddef>
#include <memory>
#include <new>

namespace gw::core {

inline constexpr std::size_t huge_page_size = std::size_t{2} << 20;

// A block of at least `bytes` (≥ huge_page_size) from its own 2 MiB-aligned mapping;
// throws std::bad_alloc when none can be mapped.
void* map_huge_block(std::size_t bytes);
// Unmaps a block from map_huge_block (the same `bytes`).
void unmap_huge_block(void* block, std::size_t bytes) noexcept;

template <typename T>
struct huge_page_allocator
{
    using value_type = T;

    huge_page_allocator() = default;
    template <typename U>
    huge_page_allocator(const huge_page_allocator<U>&) noexcept
    {
    }

    T* allocate(std::size_t n)
    {
        const std::size_t bytes = n * sizeof(T);
        if (bytes >= huge_page_size) return static_cast<T*>(map_huge_block(bytes));
        return std::allocator<T>().allocate(n);
    }
    void deallocate(T* p, std::size_t n) noexcept
    {
        const std::size_t bytes = n * sizeof(T);
        if (bytes >= huge_page_size)
            unmap_huge_block(p, bytes);
        else
            std::allocator<T>().deallocate(p, n);
    }

    template <typename U>
    bool operator==(const huge_page_allocator<U>&) const noexcept
    {
        return true;
    }
};

} // namespace gw::core
