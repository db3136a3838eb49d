// OpenSSL's record buffers, recycled per thread (see the header).
#include "gateway/upstream/tls_record_buffers.hpp"
#include "gateway/sanitizers.hpp"

#include <cstdlib>
#include <malloc.h>
#include <openssl/crypto.h>

namespace gw::gateway {

namespace {

// Trivially destructible, so that it can still be read when OpenSSL frees its per-thread
// state after the thread's C++ destructors have run (`closed` is set by then).
struct block_list
{
    void* blocks[tls_record_blocks_per_thread];
    std::size_t count;
    bool armed;  // the list_closer below is registered: blocks may be kept
    bool closed; // the thread is ending: nothing more is kept
};
constinit thread_local block_list free_blocks{};

// Empties the thread's list when the thread ends. Registered when the thread first asks
// for a record-sized block, in its normal run: a thread that never did keeps nothing, so
// a block freed only during its teardown (after C++ destructors ran) cannot be stranded.
struct list_closer
{
    list_closer() { free_blocks.armed = true; }
    ~list_closer()
    {
        auto& l = free_blocks;
        while (l.count > 0) std::free(l.blocks[--l.count]);
        l.closed = true;
    }
};
thread_local list_closer closer;

// A block at least tls_record_block_size long and not much longer: one this file made,
// or one of that size made elsewhere (either serves any request up to the block size).
bool is_record_block(void* p)
{
    const std::size_t usable = ::malloc_usable_size(p);
    return usable >= tls_record_block_size && usable < tls_record_block_size + 64;
}

void* allocate(std::size_t n, const char*, int)
{
    if (n <= tls_record_block_floor || n > tls_record_block_size) return std::malloc(n);
    auto& l = free_blocks;
    if (!l.armed && !l.closed) (void)&closer; // first use on this thread: registers the closer
    if (l.count > 0) return l.blocks[--l.count];
    return std::malloc(tls_record_block_size);
}

void* reallocate(void* p, std::size_t n, const char*, int)
{
    return std::realloc(p, n);
}

void release(void* p, const char*, int)
{
    if (!p) return;
    auto& l = free_blocks;
    if (l.armed && !l.closed && l.count < tls_record_blocks_per_thread && is_record_block(p)) {
        l.blocks[l.count++] = p;
        return;
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
    if constexpr (!address_sanitizer && !thread_sanitizer) {
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
    return free_blocks.count;
}

} // namespace gw::gateway
