// OpenSSL's record buffers and per-record small blocks, recycled per thread (see the header).
#include "gateway/upstream/tls_record_buffers.hpp"
#include "core/sanitizers.hpp"

#include <cstdlib>
#include <malloc.h>
#include <openssl/crypto.h>

namespace gw::gateway {

namespace {

// A bounded stack of freed blocks of one size class. Trivially destructible (see below).
template <std::size_t Capacity>
struct block_list
{
    void* blocks[Capacity];
    std::size_t count;

    void* take() { return count > 0 ? blocks[--count] : nullptr; }
    bool keep(void* p)
    {
        if (count == Capacity) return false;
        blocks[count++] = p;
        return true;
    }
    void free_all()
    {
        while (count > 0) std::free(blocks[--count]);
    }
};

// Trivially destructible, so that it can still be read when OpenSSL frees its per-thread
// state after the thread's C++ destructors have run (`closed` is set by then).
struct thread_lists
{
    block_list<tls_record_blocks_per_thread> records;
    block_list<tls_packet_blocks_per_thread> packets;
    bool armed;  // the list_closer below is registered: blocks may be kept
    bool closed; // the thread is ending: nothing more is kept
};
constinit thread_local thread_lists lists{};

// Empties the thread's lists when the thread ends. Registered when the thread first asks
// for a block of a kept class, in its normal run: a thread that never did keeps nothing,
// so a block freed only during its teardown (after C++ destructors ran) cannot be stranded.
struct list_closer
{
    list_closer() { lists.armed = true; }
    ~list_closer()
    {
        lists.records.free_all();
        lists.packets.free_all();
        lists.closed = true;
    }
};
thread_local list_closer closer;

// malloc's usable size for a block of tls_packet_block_size (glibc: 40 for requests of 25
// to 40 bytes); set when the functions are installed.
std::size_t packet_usable = 0;

// A block at least tls_record_block_size long and not much longer: one this file made,
// or one of that size made elsewhere (either serves any request up to the block size).
bool is_record_block(std::size_t usable)
{
    return usable >= tls_record_block_size && usable < tls_record_block_size + 64;
}

// A kept block of the list's class, or a new one of `size`.
template <std::size_t Capacity>
void* take_or_make(block_list<Capacity>& list, std::size_t size)
{
    if (!lists.armed && !lists.closed) (void)&closer; // first use on this thread: registers the closer
    if (void* p = list.take()) return p;
    return std::malloc(size);
}

void* allocate(std::size_t n, const char*, int)
{
    if (n > tls_packet_block_floor && n <= tls_packet_block_size)
        return take_or_make(lists.packets, tls_packet_block_size);
    if (n > tls_record_block_floor && n <= tls_record_block_size)
        return take_or_make(lists.records, tls_record_block_size);
    return std::malloc(n);
}

void* reallocate(void* p, std::size_t n, const char*, int)
{
    return std::realloc(p, n);
}

void release(void* p, const char*, int)
{
    if (!p) return;
    if (lists.armed && !lists.closed) {
        const std::size_t usable = ::malloc_usable_size(p);
        if (usable == packet_usable && lists.packets.keep(p)) return;
        if (is_record_block(usable) && lists.records.keep(p)) return;
    }
    std::free(p);
}

bool installed = false;
bool refused = false;

// Before every static constructor of the program (priority 101), so before Asio's OpenSSL
// initialisation; OpenSSL's libraries have no allocating constructors of their own. Not
// under AddressSanitizer or ThreadSanitizer: a kept block is never poisoned, so a use of a
// freed record buffer, or a double free, would go unseen there.
[[gnu::constructor(101)]] void install()
{
    if constexpr (!core::address_sanitizer && !core::thread_sanitizer) {
        void* probe = std::malloc(tls_packet_block_size);
        packet_usable = ::malloc_usable_size(probe);
        std::free(probe);
        installed = ::CRYPTO_set_mem_functions(allocate, reallocate, release) == 1;
        refused = !installed;
    }
}

} // namespace

bool tls_record_buffers_recycled()
{
    return installed;
}

bool tls_record_buffers_refused()
{
    return refused;
}

std::size_t tls_record_blocks_kept()
{
    return lists.records.count;
}

std::size_t tls_packet_blocks_kept()
{
    return lists.packets.count;
}

} // namespace gw::gateway
