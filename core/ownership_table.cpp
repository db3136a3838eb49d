#include "core/ownership_table.hpp"

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
    }
    return "unknown";
}

namespace {

int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1; // IDs arrive lower-cased
}

// 8-4-4-4-12 lower-case hex into 16 bytes; false for anything else.
bool parse_uuid(std::string_view id, std::uint8_t* out)
{
    if (id.size() != 36) return false;
    std::size_t byte = 0;
    for (std::size_t i = 0; i < id.size();) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (id[i] != '-') return false;
            ++i;
            continue;
        }
        int hi = hex_value(id[i]), lo = hex_value(id[i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[byte++] = static_cast<std::uint8_t>(hi * 16 + lo);
        i += 2;
    }
    return byte == 16;
}

std::uint64_t fnv1a(std::string_view s, std::uint64_t h)
{
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
    return h;
}

} // namespace

ownership_table::ownership_table(std::size_t capacity) : capacity_(capacity)
{
    entries_.reserve(std::min<std::size_t>(capacity_, 65'536));
}

ownership_table::key ownership_table::key_of(owned_kind kind, std::string_view id)
{
    key k{};
    k[0] = static_cast<std::uint8_t>(kind);
    if (parse_uuid(id, k.data() + 2)) {
        k[1] = 1;
    } else { // not a UUID: a 128-bit hash stands in (Dify does not make such IDs)
        std::uint64_t a = fnv1a(id, 0xcbf29ce484222325ULL), b = fnv1a(id, 0x84222325cbf29ce4ULL ^ id.size());
        std::memcpy(k.data() + 2, &a, 8);
        std::memcpy(k.data() + 10, &b, 8);
    }
    return k;
}

std::size_t ownership_table::key_hash::operator()(const key& k) const noexcept
{
    std::uint64_t a, b;
    std::memcpy(&a, k.data() + 2, 8);
    std::memcpy(&b, k.data() + 10, 8);
    return static_cast<std::size_t>(a ^ (b * 0x9e3779b97f4a7c15ULL) ^ (static_cast<std::uint64_t>(k[0]) << 56));
}

std::uint32_t ownership_table::tenant_index(std::string_view tenant)
{
    for (std::size_t i = 0; i < tenants_.size(); ++i)
        if (tenants_[i] == tenant) return static_cast<std::uint32_t>(i);
    tenants_.emplace_back(tenant);
    return static_cast<std::uint32_t>(tenants_.size() - 1);
}

void ownership_table::record(owned_kind kind, std::string_view id, std::string_view tenant, std::int64_t now,
                             std::int64_t ttl_seconds)
{
    if (id.empty() || capacity_ == 0) return;
    const auto k = key_of(kind, id);
    const std::int64_t expires_at = now + ttl_seconds;
    std::lock_guard lock(m_);
    const auto who = tenant_index(tenant);
    auto it = entries_.find(k);
    if (it != entries_.end()) {
        if (it->second.tenant == who)
            it->second.expires_at = expires_at; // the owner's use extends it
        else if (it->second.expires_at <= now)
            it->second = entry{who, expires_at}; // the old record had expired
        return;
    }
    while (entries_.size() >= capacity_ && !order_.empty()) {
        entries_.erase(order_.front());
        order_.pop_front();
    }
    entries_.emplace(k, entry{who, expires_at});
    order_.push_back(k);
}

std::optional<std::string> ownership_table::owner(owned_kind kind, std::string_view id, std::int64_t now)
{
    const auto k = key_of(kind, id);
    std::lock_guard lock(m_);
    auto it = entries_.find(k);
    if (it == entries_.end() || it->second.expires_at <= now) return std::nullopt;
    return tenants_[it->second.tenant];
}

std::size_t ownership_table::size()
{
    std::lock_guard lock(m_);
    return entries_.size();
}

} // namespace gw::core
