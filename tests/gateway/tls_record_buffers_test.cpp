// OpenSSL's record buffers and per-record small blocks recycled per thread: what OpenSSL's
// allocator hands out and takes back, through OpenSSL's own entry points (CRYPTO_malloc /
// CRYPTO_free).
#include "gateway/upstream/tls_record_buffers.hpp"
#include "core/sanitizers.hpp"

#include <gtest/gtest.h>
#include <openssl/crypto.h>
#include <thread>
#include <vector>

namespace gw::gateway {
namespace {

constexpr std::size_t read_buffer_size = 16712;  // what OpenSSL 3.0 asks for a TLS read buffer
constexpr std::size_t write_buffer_size = 16584; // and for a write buffer

constexpr bool sanitized = core::address_sanitizer || core::thread_sanitizer; // OpenSSL then keeps its own allocator

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
        if (tls_record_buffers_recycled()) {
            EXPECT_EQ(second, first);
        }
        EXPECT_EQ(tls_record_blocks_kept(), 0u);
        OPENSSL_free(second);
    });
}

TEST(TlsRecordBuffers, AFreedPacketBlockServesTheNextRecordsPacket)
{
    on_new_thread([] {
        void* first = OPENSSL_zalloc(tls_packet_block_size); // a WPACKET's sub-packet state
        ASSERT_NE(first, nullptr);
        OPENSSL_free(first);
        EXPECT_EQ(tls_packet_blocks_kept(), kept_if_recycled(1));
        auto* second = static_cast<unsigned char*>(OPENSSL_zalloc(tls_packet_block_floor + 1));
        ASSERT_NE(second, nullptr);
        if (tls_record_buffers_recycled()) {
            EXPECT_EQ(static_cast<void*>(second), first);
        }
        for (std::size_t i = 0; i <= tls_packet_block_floor; ++i) EXPECT_EQ(second[i], 0) << "zalloc zeroes a kept block";
        EXPECT_EQ(tls_packet_blocks_kept(), 0u);
        OPENSSL_free(second);
        EXPECT_EQ(tls_record_blocks_kept(), 0u) << "the record list is another";
    });
}

TEST(TlsRecordBuffers, OtherSizesGoToMallocAsUsual)
{
    on_new_thread([] {
        for (std::size_t n : {tls_packet_block_floor, tls_packet_block_size + 1, tls_record_block_floor,
                              tls_record_block_size + 64, std::size_t{64 * 1024}}) {
            void* p = OPENSSL_malloc(n);
            ASSERT_NE(p, nullptr) << n;
            OPENSSL_free(p);
            EXPECT_EQ(tls_record_blocks_kept(), 0u) << n;
            EXPECT_EQ(tls_packet_blocks_kept(), 0u) << n;
        }
        // A block grown to the class's size by realloc, on a thread that never asked for a
        // block of a kept class, is freed: only a thread that asked for one keeps blocks (its
        // lists are then emptied when it ends).
        void* p = OPENSSL_malloc(100);
        p = OPENSSL_realloc(p, tls_record_block_size);
        ASSERT_NE(p, nullptr);
        OPENSSL_free(p);
        EXPECT_EQ(tls_record_blocks_kept(), 0u);
    });
}

// On a thread of its own: `count` blocks of `size` taken and freed; what its list then keeps.
std::size_t kept_after_freeing(std::size_t count, std::size_t size, std::size_t (*kept)())
{
    std::size_t kept_in_thread = 0;
    on_new_thread([&] {
        std::vector<void*> blocks;
        for (std::size_t i = 0; i < count; ++i) blocks.push_back(OPENSSL_malloc(size));
        for (void* b : blocks) OPENSSL_free(b);
        kept_in_thread = kept();
    });
    return kept_in_thread;
}

TEST(TlsRecordBuffers, AThreadKeepsABoundedNumberAndGivesThemBackWhenItEnds)
{
    // Kept only because the thread's closer was registered at its first allocation of a kept
    // class: the closer frees them as the thread ends.
    EXPECT_EQ(kept_after_freeing(tls_record_blocks_per_thread + 5, read_buffer_size, tls_record_blocks_kept),
              kept_if_recycled(tls_record_blocks_per_thread));
    EXPECT_EQ(kept_after_freeing(tls_packet_blocks_per_thread + 5, tls_packet_block_size, tls_packet_blocks_kept),
              kept_if_recycled(tls_packet_blocks_per_thread));
}

} // namespace
} // namespace gw::gateway
