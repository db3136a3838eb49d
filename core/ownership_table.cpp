#include "core/ownership_table.hpp"

#include "core/text.hpp"

#include <algorithm>
#include <cstring>

namespace gw::core {

const char* kind_name(owned_kind k)
{
    switch (k) {
    case owned_kind::task: return "task";
    case owned_kind::conversation: return "conversation";
    case owned_kind::workflow_run: return "workflow_run";
    case owned_kind::file: return "file";
    case owned_kind::message: return "message";
    case owned_kind::form: return "form";
    }
    return "unknown";
}

namespace {

std::uint64_t fnv1a(std::string_view s, std::uint64_t h)
{
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
    return h;
}

constexpr std::size_t first_slots = 1024; // the array's size before records come

} // namespace

ownership_table::ownership_table(std::size_t capacity) : capacity_(std::min<std::size_t>(capacity, 1u << 30))
{
    max_slots_ = 16;
    while (max_slots_ < 2 * capacity_) max_slots_ *= 2;
    resize_slots(std::min(max_slots_, first_slots));
}

void ownership_table::resize_slots(std::size_t n)
{
    decltype(slots_) old(n);
    old.swap(slots_);
    mask_ = n - 1;
    for (const auto& s : old)
        if (s.tenant != empty) slots_[find(s.k)] = s;
}

ownership_table::key ownership_table::key_of(owned_kind kind, std::string_view id)
{
    key k{};
    k[0] = static_cast<std::uint8_t>(kind);
    if (auto uuid = parse_canonical_uuid(id)) {
        std::memcpy(k.data() + 2, uuid->data(), uuid->size());
        k[1] = 1;
    } else { // not a UUID: a 128-bit hash stands in (Dify does not make such IDs)
        std::uint64_t a = fnv1a(id, 0xcbf29ce484222325ULL), b = fnv1a(id, 0x84222325cbf29ce4ULL ^ id.size());
        std::memcpy(k.data() + 2, &a, 8);
        std::memcpy(k.data() + 10, &b, 8);
    }
    return k;
}

std::size_t ownership_table::home(const key& k) const
{
    std::uint64_t a, b;
    std::memcpy(&a, k.data() + 2, 8);
    std::memcpy(&b, k.data() + 10, 8);
    std::uint64_t h = (a ^ (b * 0x9e3779b97f4a7c15ULL) ^ (static_cast<std::uint64_t>(k[0]) << 56)) * 0xff51afd7ed558ccdULL;
    return static_cast<std::size_t>(h >> 17) & mask_;
}

std::size_t ownership_table::find(const key& k) const
{
    std::size_t i = home(k);
    while (slots_[i].tenant != empty && slots_[i].k != k) i = (i + 1) & mask_;
    return i;
}

void ownership_table::erase_at(std::size_t i)
{
    slots_[i].tenant = empty;
    // Backward shift: pull later entries of the probe run into the hole when their home
    // position allows it, so that lookups never stop early at a hole.
    for (std::size_t j = (i + 1) & mask_; slots_[j].tenant != empty; j = (j + 1) & mask_) {
        std::size_t h = home(slots_[j].k);
        bool movable = i <= j ? (h <= i || h > j) : (h <= i && h > j);
        if (!movable) continue;
        slots_[i] = slots_[j];
        slots_[j].tenant = empty;
        i = j;
    }
}

std::uint16_t ownership_table::tenant_index(std::string_view tenant)
{
    for (std::size_t i = 0; i < tenants_.size(); ++i)
        if (tenants_[i] == tenant) return static_cast<std::uint16_t>(i);
    tenants_.emplace_back(tenant);
    return static_cast<std::uint16_t>(std::min<std::size_t>(tenants_.size() - 1, empty - 1));
}

void ownership_table::record(owned_kind kind, std::string_view id, std::string_view tenant, std::int64_t now,
                             std::int64_t ttl_seconds)
{
    if (id.empty() || capacity_ == 0) return;
    const auto k = key_of(kind, id);
    const auto expires_at = static_cast<std::uint32_t>(std::clamp<std::int64_t>(now + ttl_seconds, 0, UINT32_MAX));
    std::lock_guard lock(m_);
    const auto who = tenant_index(tenant);
    if (2 * (order_.size() + 1) > slots_.size() && slots_.size() < max_slots_) resize_slots(2 * slots_.size());
    // The key's slot and, in a full table, the slot of the record likely to make room are
    // two cache misses in a large array: both are fetched at once (a slot may straddle two
    // lines; its first one is what the probe reads first).
    __builtin_prefetch(&slots_[home(k)]);
    if (order_.size() == capacity_) __builtin_prefetch(&slots_[home(order_.next_from_largest())]);
    auto i = find(k);
    if (slots_[i].tenant != empty) {
        if (slots_[i].tenant == who)
            slots_[i].expires_at = expires_at; // the owner's use extends it
        else if (slots_[i].expires_at <= now)
            slots_[i] = slot{k, who, expires_at}; // the old record had expired
        return;
    }
    while (order_.size() == capacity_) { // the oldest record of the tenant holding the most goes
        auto [owner, oldest] = order_.pop_from_largest();
        const auto at = find(oldest);
        if (slots_[at].tenant != empty && slots_[at].tenant != owner) { // taken over since: its new owner's now
            order_.push(slots_[at].tenant, oldest);
            continue;
        }
        erase_at(at);
        i = find(k); // the shift may have moved the hole
    }
    slots_[i] = slot{k, who, expires_at};
    order_.push(who, k);
}

std::optional<std::string> ownership_table::owner(owned_kind kind, std::string_view id, std::int64_t now)
{
    const auto k = key_of(kind, id);
    std::lock_guard lock(m_);
    const auto& s = slots_[find(k)];
    if (s.tenant == empty || s.expires_at <= now) return std::nullopt;
    return tenants_[s.tenant];
}

std::size_t ownership_table::size()
{
    std::lock_guard lock(m_);
    return order_.size();
}

std::size_t ownership_table::slot_count()
{
    std::lock_guard lock(m_);
    return slots_.size();
}

} // namespace gw::core
