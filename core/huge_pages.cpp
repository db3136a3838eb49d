#include "core/huge_pages.hpp"

#include <cstdint>
#include <sys/mman.h>

namespace gw::core {

namespace {

std::size_t rounded_up(std::size_t bytes)
{
    return (bytes + huge_page_size - 1) & ~(huge_page_size - 1);
}

} // namespace

void* map_huge_block(std::size_t bytes)
{
    const std::size_t size = rounded_up(bytes);
    // Mapped with one huge page of slack, then trimmed to a 2 MiB-aligned start.
    void* raw =
        ::mmap(nullptr, size + huge_page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) throw std::bad_alloc();
    const auto start = reinterpret_cast<std::uintptr_t>(raw);
    const auto aligned = (start + huge_page_size - 1) & ~(std::uintptr_t{huge_page_size} - 1);
    if (aligned != start) ::munmap(raw, aligned - start);
    const std::size_t rest_of_slack = huge_page_size - (aligned - start); // never zero
    ::munmap(reinterpret_cast<void*>(aligned + size), rest_of_slack);
    // A hint: where it is refused, small pages serve.
    ::madvise(reinterpret_cast<void*>(aligned), size, MADV_HUGEPAGE);
    return reinterpret_cast<void*>(aligned);
}

void unmap_huge_block(void* block, std::size_t bytes) noexcept
{
    ::munmap(block, rounded_up(bytes));
}

} // namespace gw::core
