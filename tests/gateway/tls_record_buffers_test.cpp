// OpenSSL's record buffers recycled per thread: what OpenSSL's allocator hands out and
// takes back, through OpenSSL's own entry points (CRYPTO_malloc / CRYPTO_free).
#include "gateway/upstream/tls_record_buffers.hpp"

#include <gtest/gtest.h>
#include <openssl/crypto.h>
#include <thread>
#include <vector>

namespace gw::gateway {
namespace {

constexpr std::size_t read_buffer_size = 16712;  // what OpenSSL 3.0 asks for a TLS read buffer
constexpr std::size_t write_buffer_size = 16584; // and for a write buffer

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool sanitized = true; // OpenSSL keeps its own allocator: the sanitizer sees its buffers
#else
constexpr bool sanitized = false;
#endif

TEST(TlsRecordBuffers, InstalledBeforeOpenSslsFirstAllocation)
{
    EXPECT_EQ(tls_record_buffers_recycled(), !sanitized);
    EXPECT_FALSE(tls_record_buffers_refused()) << "nothing to warn about at start, in any build";
}

// Where OpenSSL keeps its own allocator (sanitizer builds) nothing is ever kept: the
// tests below check that too.
std::size_t kept_if_recycled(std::size_t n)
{
    return tls_record_buffers_recycled() ? n : 0;
}

// Runs `body` on a thread of its own: a fresh, empty list (this thread's may be full from
// the TLS tests before).
template <typename Body> void on_new_thread(Body body)
{
    std::thread t(body);
    t.join();
}

TEST(TlsRecordBuffers, AFreedRecordBufferServesTheNextRecord)
{
    on_new_thread([] {
        void* first = OPENSSL_malloc(read_buffer_size);
        ASSERT_NE(first, nullptr);
        static_cast<char*>(first)[read_buffer_size - 1] = 'x'; // the whole size is usable
        OPENSSL_free(first);
        EXPECT_EQ(tls_record_blocks_kept(), kept_if_recycled(1));
        void* second = OPENSSL_malloc(write_buffer_size); // any record buffer size takes it
        if (tls_record_buffers_recycled()) EXPECT_EQ(second, first);
        EXPECT_EQ(tls_record_blocks_kept(), 0u);
        OPENSSL_free(second);
    });
}

TEST(TlsRecordBuffers, OtherSizesGoToMallocAsUsual)
{
    on_new_thread([] {
        for (std::size_t n :
             {std::size_t{40}, tls_record_block_floor, tls_record_block_size + 64, std::size_t{64 * 1024}}) {
            void* p = OPENSSL_malloc(n);
            ASSERT_NE(p, nullptr) << n;
            OPENSSL_free(p);
            EXPECT_EQ(tls_record_blocks_kept(), 0u) << n;
        }
        // A block grown to the class's size by realloc, on a thread that never asked for a
        // record buffer, is freed: only a thread that asked for one keeps blocks (its list
        // is then emptied when it ends).
        void* p = OPENSSL_malloc(100);
        p = OPENSSL_realloc(p, tls_record_block_size);
        ASSERT_NE(p, nullptr);
        OPENSSL_free(p);
        EXPECT_EQ(tls_record_blocks_kept(), 0u);
    });
}

TEST(TlsRecordBuffers, AThreadKeepsABoundedNumberAndGivesThemBackWhenItEnds)
{
    std::size_t kept_in_thread = 0;
    on_new_thread([&] {
        std::vector<void*> blocks;
        for (std::size_t i = 0; i < tls_record_blocks_per_thread + 5; ++i)
            blocks.push_back(OPENSSL_malloc(read_buffer_size));
        for (void* b : blocks)
            OPENSSL_free(b);
        kept_in_thread = tls_record_blocks_kept();
    });
    // Kept only because the thread's closer was registered at its first record-sized
    // allocation: the closer frees them as the thread ends.
    EXPECT_EQ(kept_in_thread, kept_if_recycled(tls_record_blocks_per_thread));
}

} // namespace
} // namespace gw::gateway
