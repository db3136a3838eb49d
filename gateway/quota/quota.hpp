// Per-tenant quotas: the admission decision a request gets before any
// upstream work, and the ticket that holds its concurrency slots and token reservation
// until it ends. A ticket settles exactly once: with the tokens Dify reported, or its
// fallback when none were (0 if the request never reached Dify, else the reservation).
#pragma once

#include "core/ownership_table.hpp"
#include "core/token_bucket.hpp"
#include "core/token_budget.hpp"
#include "gateway/net.hpp"
#include "gateway/recycled_blocks.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gw::gateway {

enum class quota_reason
{
    rate,               // token bucket empty
    tenant_concurrency, // tenant max_concurrent reached
    app_concurrency,    // app max_concurrent reached
    tokens,             // tokens_per_day spent
    store_unavailable,  // quota store failed and on_error = deny
};
inline constexpr std::size_t quota_reason_count = 5;
const char* reason_name(quota_reason r);

class quota_store;

// What a request holds while it runs. Destruction releases its slots and settles it.
// Made and freed once per admitted request, from the thread's recycled blocks.
class quota_ticket final : public recycled_allocation<quota_ticket>
{
public:
    // `tenant` and `app` must outlive the ticket (the stores pass their configuration's names).
    quota_ticket(std::shared_ptr<quota_store> store, const std::string& tenant, const std::string& app);
    ~quota_ticket();
    quota_ticket(const quota_ticket&) = delete;
    quota_ticket& operator=(const quota_ticket&) = delete;

    // Settles with the tokens Dify reported (first call wins).
    void charge(std::int64_t tokens);
    // From now on an unsettled ticket is charged its reservation (the request reached Dify).
    void reached_upstream() { fallback_ = reservation.amount; }
    // What reached Dify generated nothing and is sent again (a turn restarted as a new
    // conversation): only the new sending can make the ticket charge its reservation.
    void not_reached() { fallback_ = 0; }

    const std::string& tenant() const { return *tenant_; }
    const std::string& app() const { return *app_; }

    core::reservation reservation;   // tokens held back (generate endpoints only)
    bool holds_tenant_slot = false;
    bool holds_app_slot = false;
    std::string lease;               // Redis: the concurrency lease id
    std::uint32_t tenant_slot = 0;   // memory store: where the tenant's and app's state live
    std::uint32_t app_slot = 0;

private:
    std::shared_ptr<quota_store> store_;
    const std::string* tenant_;
    const std::string* app_;
    std::int64_t fallback_ = 0;
    bool settled_ = false;
};

struct admission
{
    std::optional<quota_reason> refused;       // empty: admitted
    std::optional<core::rate_decision> rate;   // for tenants with a rate: the headers
    std::int64_t retry_after_seconds = 0;      // when refused
    std::unique_ptr<quota_ticket> ticket;      // when admitted
};

// Process-wide figures of the shared store (all workers), kept across reloads.
struct store_counters
{
    std::atomic<std::uint64_t> errors{0};         // calls that failed (admission, lookups, write batches)
    std::atomic<std::int64_t> writes_pending{0};  // background writes waiting or being retried
    std::atomic<std::uint64_t> writes_retried{0}; // background writes sent again after a failure
    std::atomic<std::uint64_t> writes_dropped{0}; // given up (Redis away for minutes, or the queue full)
};

// Requests, refusals and tokens per (tenant, app) in this process, for /admin/usage.
class usage_counters
{
public:
    struct counts
    {
        std::atomic<std::uint64_t> requests{0};
        std::array<std::atomic<std::uint64_t>, quota_reason_count> refused{};
        std::atomic<std::int64_t> tokens_day{0};
        std::atomic<std::int64_t> tokens{0}; // on tokens_day
    };
    // Built once for every configured (tenant, app) pair; lookups never insert. With
    // `previous` (a config reload), pairs that existed keep their counts.
    usage_counters(const std::map<std::string, std::vector<std::string>>& tenant_apps, const usage_counters* previous = nullptr);
    counts* find(const std::string& tenant, const std::string& app);
    // The same by metric_names pair id (the request path: no lookup by name).
    counts* find(std::uint32_t pair) { return pair < by_pair_.size() ? by_pair_[pair] : nullptr; }
    void add_tokens(const std::string& tenant, const std::string& app, std::int64_t day, std::int64_t tokens);
    static void add_tokens(counts& c, std::int64_t day, std::int64_t tokens);
    std::atomic<std::uint64_t>& store_errors() { return store_->errors; }
    const std::shared_ptr<store_counters>& store() const { return store_; }

private:
    std::map<std::pair<std::string, std::string>, std::shared_ptr<counts>> counts_;
    std::vector<counts*> by_pair_; // by metric_names pair id; null for pairs not configured
    std::shared_ptr<store_counters> store_ = std::make_shared<store_counters>();
};

// A tenant's quotas as this process's store sees them (-1: no such limit).
struct tenant_quota_view
{
    double rate_per_second = -1, burst = -1;
    double rate_remaining = -1; // tokens in the bucket
    std::int64_t max_concurrent = -1, concurrent_remaining = -1;
    std::int64_t tokens_per_day = -1, tokens_remaining = -1;
};

// The budget view of a tenant for /admin/usage.
struct budget_view
{
    std::int64_t used = 0;
    std::int64_t remaining = -1; // -1: no daily limit
};

class quota_store
{
public:
    virtual ~quota_store() = default;
    // Decides whether `tenant` may send a request to `app` now; `generates` = the request
    // starts an LLM generation (only those are held to tokens_per_day).
    virtual net::awaitable<admission> admit(const std::string& tenant, const std::string& app, bool generates) = 0;
    // Called once per ticket: release its slots, settle its reservation with `tokens`.
    virtual void finish(quota_ticket& t, std::int64_t tokens) = 0;
    // Today's token use of a tenant (may ask the shared store).
    virtual net::awaitable<budget_view> budget(const std::string& tenant) = 0;
    // Records that `tenant` created `id` (kept quota_store.ownership_ttl_s). Off the request
    // path: the write completes in the background.
    virtual void record_owner(core::owned_kind kind, std::string_view id, const std::string& tenant) = 0;
    // The tenant that created `id`; nullopt when unknown (never recorded, expired, or the
    // shared store is unreachable and this replica has no record).
    virtual net::awaitable<std::optional<std::string>> owner_of(core::owned_kind kind, const std::string& id) = 0;
    // The OpenAI front's conversations: `key` (a digest of tenant, app, end user and the
    // history so far; `tenant`'s) continues Dify conversation `conversation_id`; kept
    // quota_store.ownership_ttl_s, written off the request path.
    virtual void
    remember_conversation(const std::string& tenant, const std::string& key, const std::string& conversation_id) = 0;
    // nullopt when unknown, expired, or the shared store is unreachable and this replica
    // has no record.
    virtual net::awaitable<std::optional<std::string>> conversation_of(const std::string& key) = 0;
};

} // namespace gw::gateway
