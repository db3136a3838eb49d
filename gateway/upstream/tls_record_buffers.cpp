// OpenSSL's record buffers, recycled per thread (see the header).
#include "gateway/upstream/tls_record_buffers.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <malloc.h>
#include <openssl/crypto.h>
#include <sys/prctl.h>

namespace gw::gateway {

namespace {

// Trivially destructible, so that it can still be read when OpenSSL frees its per-thread
// state after the thread's C++ destructors have run (`closed` is set by then).
struct block_list
{
    void* blocks[tls_record_blocks_per_thread];
    std::size_t count;
    bool closed;
};
constinit thread_local block_list free_blocks{};

// Empties the thread's list when the thread ends. Made on the first block kept.
struct list_closer
{
    bool armed = false;
    ~list_closer()
    {
        auto& l = free_blocks;
        while (l.count > 0)
            std::free(l.blocks[--l.count]);
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

void* allocate(std::size_t n, const char* f, int line)
{
    {
        char nm[17] = {};
        prctl(PR_GET_NAME, nm);
        if (getenv("TRB") && !strncmp(nm, "gw-worker", 9)) fprintf(stderr, "A %zu %s:%d\n", n, f, line);
    }
    if (n <= tls_record_block_floor || n > tls_record_block_size) return std::malloc(n);
    auto& l = free_blocks;
    if (l.count > 0) return l.blocks[--l.count];
    return std::malloc(tls_record_block_size);
}

void* reallocate(void* p, std::size_t n, const char* f, int line)
{
    {
        char nm[17] = {};
        prctl(PR_GET_NAME, nm);
        if (getenv("TRB") && !strncmp(nm, "gw-worker", 9)) fprintf(stderr, "R %zu %s:%d\n", n, f, line);
    }
    return std::realloc(p, n);
}

void release(void* p, const char*, int)
{
    if (!p) return;
    auto& l = free_blocks;
    if (!l.closed && l.count < tls_record_blocks_per_thread && is_record_block(p)) {
        closer.armed = true;
        l.blocks[l.count++] = p;
        return;
    }
    std::free(p);
}

bool installed = false;

// Before every static constructor of the program (priority 101), so before Asio's OpenSSL
// initialisation; OpenSSL's libraries have no allocating constructors of their own.
[[gnu::constructor(101)]] void install()
{
    installed = ::CRYPTO_set_mem_functions(allocate, reallocate, release) == 1;
}

} // namespace

bool tls_record_buffers_recycled()
{
    return installed;
}

std::size_t tls_record_blocks_kept()
{
    return free_blocks.count;
}

} // namespace gw::gateway
