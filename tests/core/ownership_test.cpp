// Ownership records (expiry, first owner, capacity) and which IDs a request names.
#include "core/dify_routes.hpp"
#include "core/fair_fifo.hpp"
#include "core/huge_pages.hpp"
#include "core/ownership_table.hpp"
#include "core/user_rewrite.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <new>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

namespace gw::core {
namespace {

TEST(OwnershipTable, FirstOwnerStaysUntilItsRecordExpires)
{
    ownership_table t;
    t.record(owned_kind::task, "t1", "alpha", 1000, 60);
    EXPECT_EQ(t.owner(owned_kind::task, "t1", 1001), "alpha");
    EXPECT_FALSE(t.owner(owned_kind::conversation, "t1", 1001)) << "kinds are separate";
    t.record(owned_kind::task, "t1", "beta", 1010, 60);
    EXPECT_EQ(t.owner(owned_kind::task, "t1", 1011), "alpha") << "another tenant cannot take it over";
    t.record(owned_kind::task, "t1", "alpha", 1050, 60);
    EXPECT_EQ(t.owner(owned_kind::task, "t1", 1100), "alpha") << "the owner's use extends it";
    EXPECT_FALSE(t.owner(owned_kind::task, "t1", 1110)) << "expired";
    t.record(owned_kind::task, "t1", "beta", 1120, 60);
    EXPECT_EQ(t.owner(owned_kind::task, "t1", 1121), "beta") << "an expired record can be taken";
    t.record(owned_kind::task, "", "beta", 1120, 60);
    EXPECT_EQ(t.size(), 1u) << "empty ids are not recorded";
}

TEST(OwnershipTable, TheOldestRecordsGoFirstAtCapacity)
{
    ownership_table t(3);
    for (int i = 0; i < 5; ++i) t.record(owned_kind::file, "f" + std::to_string(i), "alpha", 0, 100);
    EXPECT_EQ(t.size(), 3u);
    EXPECT_FALSE(t.owner(owned_kind::file, "f0", 1));
    EXPECT_FALSE(t.owner(owned_kind::file, "f1", 1));
    EXPECT_EQ(t.owner(owned_kind::file, "f4", 1), "alpha");
}

TEST(OwnershipTable, ATenantFillingTheTableEvictsItsOwnRecordsOnly)
{
    ownership_table t(100);
    for (int i = 0; i < 10; ++i) t.record(owned_kind::conversation, "b" + std::to_string(i), "beta", 0, 100);
    for (int i = 0; i < 10'000; ++i) t.record(owned_kind::conversation, "a" + std::to_string(i), "alpha", 0, 100);
    EXPECT_EQ(t.size(), 100u);
    for (int i = 0; i < 10; ++i)
        EXPECT_EQ(t.owner(owned_kind::conversation, "b" + std::to_string(i), 1), "beta") << "beta's records stay";
    EXPECT_EQ(t.owner(owned_kind::conversation, "a9999", 1), "alpha");
    EXPECT_FALSE(t.owner(owned_kind::conversation, "a0", 1)) << "alpha's oldest went";
    // Beta growing past alpha's share makes beta the one that gives way.
    for (int i = 10; i < 80; ++i) t.record(owned_kind::conversation, "b" + std::to_string(i), "beta", 0, 100);
    EXPECT_EQ(t.size(), 100u);
    EXPECT_FALSE(t.owner(owned_kind::conversation, "b0", 1));
    EXPECT_EQ(t.owner(owned_kind::conversation, "b79", 1), "beta");
    EXPECT_EQ(t.owner(owned_kind::conversation, "a9999", 1), "alpha") << "alpha keeps its newest half";
}

// The array starts small and doubles as records come, every record kept through each
// growth; it never grows past twice the capacity.
TEST(OwnershipTable, TheArrayGrowsWithTheRecordsUpToTheCapacity)
{
    ownership_table t(20'000);
    const auto first = t.slot_count();
    EXPECT_LE(first, 1024u) << "a gateway holding few records keeps a small array";
    for (int i = 0; i < 10'000; ++i)
        t.record(owned_kind::conversation, (i % 2 ? "a" : "b") + std::to_string(i), i % 2 ? "alpha" : "beta", 0, 100);
    EXPECT_GE(t.slot_count(), 20'000u) << "at most half full";
    EXPECT_LT(t.slot_count(), 65'536u);
    for (int i = 0; i < 10'000; ++i)
        ASSERT_EQ(t.owner(owned_kind::conversation, (i % 2 ? "a" : "b") + std::to_string(i), 1), i % 2 ? "alpha" : "beta") << i;
    for (int i = 10'000; i < 50'000; ++i) t.record(owned_kind::task, "t" + std::to_string(i), "alpha", 0, 100);
    EXPECT_EQ(t.size(), 20'000u);
    EXPECT_EQ(t.slot_count(), 65'536u) << "the power of two at least twice the capacity, no more";
    EXPECT_EQ(t.owner(owned_kind::task, "t49999", 1), "alpha");
    EXPECT_EQ(t.owner(owned_kind::conversation, "b0", 1), "beta") << "beta's records stay while alpha evicts its own";
}

// Records survive the array's growths from the heap into its own mapping (1.5 MiB, then
// 3 and 6 MiB of slots) and the evictions within it.
TEST(OwnershipTable, ALargeArrayKeepsRecordsThroughGrowthAndEviction)
{
    ownership_table t(100'000);
    for (int i = 0; i < 150'000; ++i)
        t.record(owned_kind::message, (i % 4 ? "a" : "b") + std::to_string(i), i % 4 ? "alpha" : "beta", 0, 100);
    EXPECT_EQ(t.size(), 100'000u);
    EXPECT_EQ(t.slot_count(), 262'144u) << "6 MiB of slots";
    for (int i = 0; i < 150'000; i += 4)
        ASSERT_EQ(t.owner(owned_kind::message, "b" + std::to_string(i), 1), "beta") << i << ": beta holds fewer";
    EXPECT_FALSE(t.owner(owned_kind::message, "a1", 1)) << "alpha's oldest went";
    EXPECT_EQ(t.owner(owned_kind::message, "a149999", 1), "alpha");
}

// Pages of [p, p + bytes) that are mapped (mincore refuses an unmapped page with ENOMEM).
std::size_t mapped_pages(const void* p, std::size_t bytes)
{
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    std::size_t n = 0;
    unsigned char resident = 0;
    for (std::size_t at = 0; at < bytes; at += page)
        if (::mincore(static_cast<char*>(const_cast<void*>(p)) + at, page, &resident) == 0) ++n;
    return n;
}

// Blocks of 2 MiB and more are mappings of their own, aligned to 2 MiB and unmapped whole;
// under AddressSanitizer every block comes from operator new instead, where it is watched
// (a wrong size given back is then ASan's report).
TEST(HugePageAllocator, LargeBlocksAreAlignedMappingsUnmappedWholeOutsideAddressSanitizer)
{
    using allocator = huge_page_allocator<std::uint64_t>;
    constexpr std::size_t word = sizeof(std::uint64_t);
    EXPECT_EQ(allocator::mapped(huge_page_size / word), !address_sanitizer);
    EXPECT_FALSE(allocator::mapped(huge_page_size / word - 1)) << "below 2 MiB: the heap";
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    for (std::size_t bytes : {huge_page_size, huge_page_size + word, 3 * huge_page_size + 5 * word}) {
        const std::size_t n = bytes / word;
        const std::size_t whole = (bytes + huge_page_size - 1) / huge_page_size * huge_page_size;
        allocator a;
        auto* p = a.allocate(n);
        std::fill(p, p + n, std::uint64_t{7}); // every element writable
        EXPECT_EQ(p[n - 1], 7u);
        if (!allocator::mapped(n)) {
            a.deallocate(p, n);
            continue;
        }
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % huge_page_size, 0u) << bytes;
        EXPECT_EQ(mapped_pages(p, whole), whole / page) << bytes << ": the block, rounded up to huge pages";
        a.deallocate(p, n);
        EXPECT_EQ(mapped_pages(p, whole), 0u) << bytes << ": unmapped whole";
    }
}

TEST(HugePageAllocator, AVectorGrowsFromTheHeapIntoMappings)
{
    using words = std::vector<std::uint64_t, huge_page_allocator<std::uint64_t>>;
    words v(10, 3);
    v.resize(3 * huge_page_size / sizeof(std::uint64_t) + 5, 7); // into a mapping
    v.back() = 9;
    v.push_back(11); // into a larger mapping, the old one unmapped
    if (huge_page_allocator<std::uint64_t>::mapped(v.capacity())) {
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(v.data()) % huge_page_size, 0u);
    }
    EXPECT_EQ(v.front(), 3u);
    EXPECT_EQ(v[10], 7u);
    EXPECT_EQ(v[v.size() - 2], 9u);
    EXPECT_EQ(v.back(), 11u);
}

TEST(HugePageAllocator, ACountThatWouldWrapIsRefused)
{
    huge_page_allocator<std::uint64_t> a;
    EXPECT_THROW((void)a.allocate(SIZE_MAX / 4), std::bad_array_new_length);
}

// What the ownership table prefetches is what it will evict: the oldest entry of the
// owner holding the most, the first such owner on a tie.
TEST(FairFifo, NextFromLargestIsWhatPopFromLargestReturns)
{
    fair_fifo<int> f;
    f.push(1, 10);
    f.push(0, 20);
    f.push(1, 11);
    f.push(0, 21);
    for (int round = 0; round < 3; ++round) {
        const int next = f.next_from_largest();
        EXPECT_EQ(f.pop_from_largest().second, next) << round;
    }
    EXPECT_EQ(f.size(), 1u);
    f.push(2, 30);
    f.push(2, 31);
    f.push(2, 32);
    f.erase_if([](std::size_t, int k) { return k == 30; });
    EXPECT_EQ(f.next_from_largest(), 31) << "owner 2's oldest left after the erase";
}

TEST(OwnershipTable, UuidsAndOtherIdsNeverShareAKey)
{
    ownership_table t;
    const std::string uuid = "3f2b9c1e-7d44-4a8b-9e2f-5c6a1b0d8e73";
    t.record(owned_kind::workflow_run, uuid, "alpha", 0, 100);
    t.record(owned_kind::workflow_run, "not-a-uuid", "beta", 0, 100);
    EXPECT_EQ(t.owner(owned_kind::workflow_run, uuid, 1), "alpha");
    EXPECT_EQ(t.owner(owned_kind::workflow_run, "not-a-uuid", 1), "beta");
    EXPECT_FALSE(t.owner(owned_kind::task, uuid, 1));
    EXPECT_NE(ownership_table::key_of(owned_kind::file, uuid), ownership_table::key_of(owned_kind::file, "3f2b9c1e7d444a8b9e2f5c6a1b0d8e73"));
}

TEST(OwnershipTable, AgreesWithASimpleModelUnderChurn)
{
    // Random records over a small pool of IDs in a small table: every lookup agrees with
    // a straightforward model (map + each tenant's insertion order; the tenant holding the
    // most loses its oldest), through evictions and shifts.
    ownership_table t(64);
    std::map<std::string, std::pair<std::string, std::int64_t>> model; // id -> tenant, expiry
    std::vector<std::string> tenants;                                   // in order of first record
    std::vector<std::deque<std::string>> order;                         // per tenant
    std::uint64_t seed = 42;
    auto next = [&] { return seed = seed * 6364136223846793005ULL + 1442695040888963407ULL; };
    for (int step = 0; step < 20'000; ++step) {
        std::int64_t now = step / 10;
        char id[40];
        std::snprintf(id, sizeof id, "%08x-0000-4000-8000-%012x", static_cast<unsigned>(next() >> 40) % 300, 7u);
        std::string tenant = (next() >> 33) % 2 ? "alpha" : "beta";
        std::int64_t ttl = 5 + static_cast<std::int64_t>((next() >> 33) % 50);
        if ((next() >> 33) % 3) {
            t.record(owned_kind::file, id, tenant, now, ttl);
            auto known = std::find(tenants.begin(), tenants.end(), tenant);
            if (known == tenants.end()) {
                tenants.push_back(tenant);
                order.emplace_back();
                known = tenants.end() - 1;
            }
            const auto who = static_cast<std::size_t>(known - tenants.begin());
            auto it = model.find(id);
            if (it != model.end()) {
                if (it->second.first == tenant)
                    it->second.second = now + ttl;
                else if (it->second.second <= now)
                    it->second = {tenant, now + ttl};
            } else {
                while (model.size() == 64) { // the largest holder's oldest; a record taken over moves to its owner
                    std::size_t largest = 0;
                    for (std::size_t i = 1; i < order.size(); ++i)
                        if (order[i].size() > order[largest].size()) largest = i;
                    const auto oldest = order[largest].front();
                    order[largest].pop_front();
                    const auto owner = static_cast<std::size_t>(
                        std::find(tenants.begin(), tenants.end(), model.at(oldest).first) - tenants.begin()
                    );
                    if (owner != largest) {
                        order[owner].push_back(oldest);
                        continue;
                    }
                    model.erase(oldest);
                }
                model[id] = {tenant, now + ttl};
                order[who].push_back(id);
            }
        } else {
            auto it = model.find(id);
            std::optional<std::string> expected;
            if (it != model.end() && it->second.second > now) expected = it->second.first;
            ASSERT_EQ(t.owner(owned_kind::file, id, now), expected) << "step " << step;
        }
    }
    EXPECT_EQ(t.size(), model.size());
}

TEST(JsonReferences, ConversationAndEveryUploadedFile)
{
    json_references refs;
    auto out = rewrite_json_user(R"({"query": "q", "conversation_id": "C1", "user": "u",
        "files": [{"transfer_method": "local_file", "upload_file_id": "F1"}],
        "inputs": {"doc": {"transfer_method": "local_file", "upload_file_id": "F2"}, "list": [[{"upload_file_id": "F3"}]],
                   "not_a_ref": {"upload_file_id": null}}})",
                                 "alpha", nullptr, &refs);
    ASSERT_TRUE(out);
    EXPECT_EQ(refs.conversation_id, "C1");
    EXPECT_EQ(refs.message_id, "");
    EXPECT_EQ(refs.upload_file_ids, (std::vector<std::string>{"F1", "F2", "F3"}));
}

} // namespace
} // namespace gw::core
