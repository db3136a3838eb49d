// Which tenant created a Dify resource (task, conversation, workflow run, uploaded file),
// so that another tenant sharing the app cannot use it where Dify itself does not check
// the end user (stop of workflow tasks, workflow run details, file previews, file
// references, checked against the workspace only). The in-process table: bounded, entries
// expire, time is passed in. When it is full, the tenant holding the most records loses
// its oldest (core/fair_fifo): a tenant creating resources in bulk evicts its own records,
// never another's within its share. Flat: one open-addressing array (linear probing, at
// most half full, backward-shift deletion), doubled as records come up to twice the
// capacity (a gateway holding few records does not keep the whole array resident; growing
// moves every record once, under the lock, at most ~15 times), and each tenant's keys in
// insertion order -- a record is a fixed-size key (Dify's IDs are UUIDs: 16 bytes;
// anything else is reduced to a 128-bit hash, kept apart from UUID keys), an interned
// tenant and an expiry: 24 bytes in the array plus 18 in the order, which grows in blocks
// (no allocation per record: a node per record churned the allocator on the data path).
// Once the array passes 2 MiB it is a mapping advised as huge pages (core/huge_pages):
// where the kernel backs it so, a lookup at a random slot rarely walks the page table.
// Thread-safe: one short lock per call.
#pragma once

#include "core/fair_fifo.hpp"
#include "core/huge_pages.hpp"

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gw::core {

enum class owned_kind : std::uint8_t
{
    task,
    conversation,
    workflow_run,
    file,
    message, // a message id (feedback, suggested questions, text-to-audio)
    form,    // a human-input form token
};
const char* kind_name(owned_kind k); // "task", "conversation", "workflow_run", "file", "message", "form"

class ownership_table
{
public:
    explicit ownership_table(std::size_t capacity = 200'000);

    // Records `tenant` as the owner of `id` for `ttl_seconds` from `now` (unix seconds).
    // The first owner stays while its record lasts: another tenant cannot take it over.
    void record(owned_kind kind, std::string_view id, std::string_view tenant, std::int64_t now, std::int64_t ttl_seconds);
    // The owner of `id` at `now`; nullopt when unknown or expired.
    std::optional<std::string> owner(owned_kind kind, std::string_view id, std::int64_t now);
    std::size_t size();
    std::size_t slot_count(); // the array's size now (it grows with the records)

    // kind, UUID-or-hash flag, 16 bytes of ID.
    using key = std::array<std::uint8_t, 18>;
    static key key_of(owned_kind kind, std::string_view id);

private:
    struct slot
    {
        key k;
        std::uint16_t tenant = empty; // index into tenants_
        std::uint32_t expires_at = 0; // unix seconds
    };
    static constexpr std::uint16_t empty = 0xFFFF;

    std::size_t home(const key& k) const;
    std::size_t find(const key& k) const; // the key's slot, or the empty slot where it would go
    void erase_at(std::size_t i);
    std::uint16_t tenant_index(std::string_view tenant);
    void resize_slots(std::size_t n); // n: a power of two above twice the records

    std::mutex m_;
    std::size_t capacity_;
    std::vector<slot, huge_page_allocator<slot>> slots_; // power of two, at least twice the records
    std::size_t mask_ = 0;
    std::size_t max_slots_ = 0; // power of two, at least twice the capacity
    fair_fifo<key> order_;    // each tenant's records, oldest first
    std::vector<std::string> tenants_;
};

} // namespace gw::core
