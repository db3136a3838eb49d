// Per-thread lists of freed blocks by size class (see the header).
#include "gateway/recycled_blocks.hpp"

#include <array>
#include <utility>

namespace gw::gateway::recycled_blocks {
namespace {

constexpr std::size_t small_classes = small_largest / small_step;
constexpr std::size_t classes = small_classes + (largest - small_largest) / large_step;

// A kept block holds the link to the next one of its class.
struct free_block
{
    free_block* next;
};
static_assert(small_step >= sizeof(free_block));

struct lists
{
    std::array<free_block*, classes> first{};
    std::array<std::size_t, classes> count{};
    std::size_t bytes = 0;
    ~lists();
};

thread_local lists kept;
// Where `kept` stands on this thread; trivially destructible, so it can be read at any
// time. A block given back before `kept` exists or after it is destroyed (a head freed
// in another thread_local's destructor) goes to operator delete.
enum class lists_state : unsigned char { not_made, usable, destroyed };
thread_local lists_state state = lists_state::not_made;

lists::~lists()
{
    state = lists_state::destroyed;
    for (auto* b : first)
        while (b) ::operator delete(std::exchange(b, b->next));
}

bool keepable(std::size_t bytes) { return keeps_blocks && bytes != 0 && bytes <= largest; }

std::size_t class_of(std::size_t bytes)
{
    if (bytes <= small_largest) return (bytes + small_step - 1) / small_step - 1;
    return small_classes + (bytes + large_step - 1) / large_step - small_largest / large_step - 1;
}

std::size_t size_of_class(std::size_t c)
{
    if (c < small_classes) return (c + 1) * small_step;
    return small_largest + (c - small_classes + 1) * large_step;
}

std::size_t max_kept_in_class(std::size_t c) { return c < small_classes ? max_kept : max_kept_large; }

} // namespace

void* take(std::size_t bytes)
{
    if (!keepable(bytes)) return ::operator new(bytes);
    const auto c = class_of(bytes);
    if (state != lists_state::destroyed) {
        auto& k = kept; // the first use on this thread makes it
        state = lists_state::usable;
        if (auto* b = k.first[c]) {
            k.first[c] = b->next;
            --k.count[c];
            k.bytes -= size_of_class(c);
            return b;
        }
    }
    // Always the class's full size: whichever thread it is given back on may hand it out
    // for any size of its class.
    return ::operator new(size_of_class(c));
}

void give(void* block, std::size_t bytes) noexcept
{
    if (!block) return;
    if constexpr (!keeps_blocks) { // made at exactly `bytes`: a size other than the one taken is reported
#if defined(__cpp_sized_deallocation)
        ::operator delete(block, bytes);
#else
        ::operator delete(block); // clang before 19 without -fsized-deallocation: no size to check
#endif
        return;
    }
    if (keepable(bytes) && state == lists_state::usable) {
        const auto c = class_of(bytes);
        const auto size = size_of_class(c);
        if (kept.count[c] < max_kept_in_class(c) && kept.bytes + size <= max_kept_bytes) {
            kept.first[c] = new (block) free_block{kept.first[c]};
            ++kept.count[c];
            kept.bytes += size;
            return;
        }
    }
    ::operator delete(block); // unsized: a kept class's block was allocated rounded up
}

std::size_t kept_on_this_thread() noexcept
{
    if (state != lists_state::usable) return 0;
    std::size_t n = 0;
    for (auto c : kept.count) n += c;
    return n;
}

std::size_t kept_bytes_on_this_thread() noexcept
{
    return state == lists_state::usable ? kept.bytes : 0;
}

} // namespace gw::gateway::recycled_blocks
