// recycled_blocks: a freed block is kept per thread and handed to the next request for its
// size class, up to max_kept per small class, max_kept_large per larger one and
// max_kept_bytes in all; larger blocks and blocks past the caps go back to operator delete;
// a block freed on another thread is kept there. A head's field blocks and a relay's piece
// come from there. Under AddressSanitizer nothing is kept.
#include "gateway/head_fields.hpp"
#include "gateway/recycled_blocks.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/empty_body.hpp>

#include <gtest/gtest.h>

#include <malloc.h>

#include <string>
#include <thread>
#include <vector>

namespace gw::gateway {
namespace {

namespace http = boost::beast::http;
namespace blocks = recycled_blocks;

// What a give back adds to this thread's kept blocks: nothing under AddressSanitizer.
constexpr std::size_t kept(std::size_t blocks_given) { return blocks::keeps_blocks ? blocks_given : 0; }

TEST(RecycledBlocks, AFreedBlockIsHandedToTheNextOfItsSizeClass)
{
    void* a = blocks::take(40);
    const auto before = blocks::kept_on_this_thread();
    blocks::give(a, 40);
    EXPECT_EQ(blocks::kept_on_this_thread(), before + kept(1));
    void* b = blocks::take(33); // 33..48 bytes: one class
    if (blocks::keeps_blocks) {
        EXPECT_EQ(b, a);
    }
    EXPECT_EQ(blocks::kept_on_this_thread(), before);
    void* c = blocks::take(49); // the next class: a new block
    EXPECT_NE(c, b);
    blocks::give(b, 33);
    blocks::give(c, 49);
}

TEST(RecycledBlocks, AtMostMaxKeptBlocksAreKeptPerClassAndLargeOnesNone)
{
    std::vector<void*> many;
    for (std::size_t i = 0; i < blocks::max_kept + 20; ++i) many.push_back(blocks::take(200));
    const auto before = blocks::kept_on_this_thread();
    for (void* p : many) blocks::give(p, 200);
    const auto added = blocks::kept_on_this_thread() - before;
    EXPECT_LE(added, kept(blocks::max_kept));
    // The class may have held some before.
    EXPECT_GE(added, kept(blocks::max_kept - (many.size() - blocks::max_kept)));

    void* big = blocks::take(blocks::largest + 1); // past the largest class: never kept
    const auto with_big = blocks::kept_on_this_thread();
    blocks::give(big, blocks::largest + 1);
    EXPECT_EQ(blocks::kept_on_this_thread(), with_big);
}

TEST(RecycledBlocks, LargerClassesGoIn64ByteStepsUpToARelayPiece)
{
    void* piece = blocks::take(8 * 1024);
    blocks::give(piece, 8 * 1024);
    void* again = blocks::take(8 * 1024 - 63); // 8 KiB - 63 .. 8 KiB: one class
    if (blocks::keeps_blocks) {
        EXPECT_EQ(again, piece);
    }
    void* smaller = blocks::take(8 * 1024 - 64); // the class below: a new block
    EXPECT_NE(smaller, again);
    blocks::give(again, 8 * 1024 - 63);
    blocks::give(smaller, 8 * 1024 - 64);

    const auto before = blocks::kept_on_this_thread();
    {
        recycled_buffer scoped(8 * 1024);
        EXPECT_EQ(scoped.size(), 8u * 1024);
        if (blocks::keeps_blocks) {
            EXPECT_EQ(scoped.data(), piece); // the block given back above
        }
    }
    EXPECT_EQ(blocks::kept_on_this_thread(), before);
}

TEST(RecycledBlocks, ALargerClassKeepsFewerBlocksAndAThreadAtMostMaxKeptBytes)
{
    // Runs on a thread of its own: lists that hold nothing yet.
    std::thread([] {
        auto take_and_give = [](std::size_t count, std::size_t size) {
            std::vector<void*> taken;
            for (std::size_t i = 0; i < count; ++i) taken.push_back(blocks::take(size));
            for (void* p : taken) blocks::give(p, size);
        };
        take_and_give(blocks::max_kept_large + 4, blocks::largest);
        EXPECT_EQ(blocks::kept_bytes_on_this_thread(), kept(blocks::max_kept_large) * blocks::largest);
        // Larger classes full (16 blocks each of 6 to 8 KiB: 3.5 MiB) pass the byte cap.
        for (std::size_t size = 6 * 1024; size <= blocks::largest; size += blocks::large_step)
            take_and_give(blocks::max_kept_large, size);
        EXPECT_LE(blocks::kept_bytes_on_this_thread(), blocks::max_kept_bytes);
        if (blocks::keeps_blocks) {
            EXPECT_GT(blocks::kept_bytes_on_this_thread(), blocks::max_kept_bytes - blocks::largest);
        } else {
            EXPECT_EQ(blocks::kept_bytes_on_this_thread(), 0u);
        }
    }).join(); // its lists are freed as it exits
}

TEST(RecycledBlocks, ARecycledStringReusesTheBlockOfTheLastOne)
{
    const void* first = nullptr;
    {
        recycled_string head;
        head.reserve(489);
        first = head.data();
    }
    recycled_string next;
    next.reserve(480); // the same 16-byte class once the terminator is counted
    if (blocks::keeps_blocks) {
        EXPECT_EQ(static_cast<const void*>(next.data()), first);
    }
}

// A block taken on a thread whose lists are already destroyed (in a later thread_local's
// destructor) and given back on another thread is kept there, in its class: so it must have
// been made at the class's full size, not at the size asked.
TEST(RecycledBlocks, ABlockTakenAfterAThreadsListsAreGoneHasItsClassesSize)
{
    void* late = nullptr;
    std::thread([&late] {
        struct taker
        {
            void** out;
            ~taker() { *out = blocks::take(33); } // runs after the lists' destructor
        };
        thread_local taker t{&late}; // made before the lists, so destroyed after them
        blocks::give(blocks::take(16), 16); // makes this thread's lists
    }).join();
    ASSERT_NE(late, nullptr);
    if (blocks::keeps_blocks) {
        EXPECT_GE(::malloc_usable_size(late), 48u) << "33 bytes are in the class of 33 to 48";
    }
    blocks::give(late, 33);
}

TEST(RecycledBlocks, ABlockFreedOnAnotherThreadIsKeptThere)
{
    void* a = blocks::take(64);
    const auto here = blocks::kept_on_this_thread();
    std::size_t there_before = 0, there_after = 0;
    std::thread other([&] {
        void* warm = blocks::take(16); // makes that thread's lists
        blocks::give(warm, 16);
        there_before = blocks::kept_on_this_thread();
        blocks::give(a, 64);
        there_after = blocks::kept_on_this_thread();
    }); // its lists are freed as it exits (LeakSanitizer would report them otherwise)
    other.join();
    EXPECT_EQ(there_after, there_before + kept(1));
    EXPECT_EQ(blocks::kept_on_this_thread(), here);
}

TEST(RecycledBlocks, ASecondHeadReusesTheBlocksOfTheFirst)
{
    const std::string wire = "POST /v1/chat-messages HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer k\r\n"
                             "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n";
    auto parse = [&] {
        client_request_parser<http::empty_body> p;
        boost::system::error_code ec;
        p.put(boost::asio::buffer(wire), ec);
        EXPECT_TRUE(p.is_header_done()) << ec.message();
        EXPECT_EQ(p.get()[http::field::authorization], "Bearer k");
        return blocks::kept_on_this_thread();
    };
    parse();
    const auto kept_after_first = blocks::kept_on_this_thread();
    const auto kept_while_second = parse(); // its blocks come from those the first gave back
    EXPECT_EQ(kept_while_second + kept(5), kept_after_first); // the target and four fields
    EXPECT_EQ(blocks::kept_on_this_thread(), kept_after_first);
}

} // namespace
} // namespace gw::gateway
