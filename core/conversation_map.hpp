// The OpenAI front's memory of conversations in this process: which Dify conversation a
// history continues. Keys are digests (a tenant's app, end user and history, hashed by the
// caller), values Dify conversation ids. Bounded and expiring (time is passed in): when it
// is full, the tenant holding the most entries loses its oldest (core/fair_fifo), so one
// tenant's traffic never makes another's clients lose their conversations. Thread-safe
// with one short lock per call. Replicas share the same map through the quota store's
// Redis, when there is one.
#pragma once

#include "core/fair_fifo.hpp"

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace gw::core {

class conversation_map
{
public:
    explicit conversation_map(std::size_t capacity = 100'000) : capacity_(capacity) {}

    // `key` (of `tenant`'s) now continues `conversation_id`, for `ttl_seconds` from `now`
    // (unix seconds).
    void remember(
        std::string_view tenant,
        std::string_view key,
        std::string_view conversation_id,
        std::int64_t now,
        std::int64_t ttl_seconds
    );
    // The conversation `key` continues at `now`; nullopt when unknown or expired.
    std::optional<std::string> find(std::string_view key, std::int64_t now);
    std::size_t size();

private:
    struct entry
    {
        std::string conversation_id;
        std::int64_t expires_at = 0;
        std::uint64_t generation = 0; // which remember() wrote it (the order may hold stale ones)
    };
    std::size_t tenant_index(std::string_view tenant);

    std::mutex m_;
    std::size_t capacity_;
    std::unordered_map<std::string, entry> entries_;
    fair_fifo<std::pair<std::string, std::uint64_t>> order_; // per tenant, oldest first: key, generation
    std::vector<std::string> tenants_;
    std::uint64_t next_generation_ = 0;
};

} // namespace gw::core
