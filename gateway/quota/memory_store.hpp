// The in-process quota store (quota_store.type = "memory"; also the fallback for
// on_error = "local"). Exact within one process: every worker shares one state object
// per tenant and per app, each behind its own mutex held for a few arithmetic steps and
// never across a suspension point. A tenant's limits are the configured ones, whatever
// the number of workers.
#pragma once

#include "config/gateway_config.hpp"
#include "core/conversation_map.hpp"
#include "gateway/quota/quota.hpp"

#include <functional>
#include <mutex>
#include <unordered_map>

namespace gw::gateway {

struct quota_clocks
{
    std::function<core::nanos()> steady;          // monotonic, for rates
    std::function<std::int64_t()> unix_seconds;   // wall clock, for UTC days
    static quota_clocks system();
};

class memory_quota_store final : public quota_store, public std::enable_shared_from_this<memory_quota_store>
{
public:
    memory_quota_store(const config::gateway_config& cfg, std::shared_ptr<usage_counters> counters, quota_clocks clocks);

    // The store for a reloaded configuration: tenants and apps that remain share their
    // state with this store (tokens in buckets, active requests, the day's usage) and take
    // the new limits; new ones start fresh.
    std::shared_ptr<memory_quota_store> reconfigured(const config::gateway_config& cfg,
                                                     std::shared_ptr<usage_counters> counters) const;

    admission admit_now(const std::string& tenant, const std::string& app, bool generates);
    net::awaitable<admission> admit(const std::string& tenant, const std::string& app, bool generates) override;
    void finish(quota_ticket& t, std::int64_t tokens) override;
    net::awaitable<budget_view> budget(const std::string& tenant) override;
    void record_owner(core::owned_kind kind, std::string_view id, const std::string& tenant) override;
    net::awaitable<std::optional<std::string>> owner_of(core::owned_kind kind, const std::string& id) override;
    std::optional<std::string> owner_now(core::owned_kind kind, const std::string& id);
    void remember_conversation(const std::string& tenant, const std::string& key, const std::string& conversation_id) override;
    net::awaitable<std::optional<std::string>> conversation_of(const std::string& key) override;
    std::optional<std::string> conversation_now(const std::string& key);

    // A tenant's limits and what is left of them now (for /metrics); nullopt for a tenant
    // this store does not know.
    std::optional<tenant_quota_view> quota_view(const std::string& tenant);
    // The app's current per-request token estimate (from its recent usage).
    std::int64_t estimate(const std::string& app);
    // Feeds a finished request's usage into the app's estimate.
    void observe_usage(const std::string& app, std::int64_t tokens);
    std::int64_t today() const { return core::utc_day(clocks_.unix_seconds()); }
    const quota_clocks& clocks() const { return clocks_; }

private:
    memory_quota_store(std::shared_ptr<usage_counters> counters, quota_clocks clocks)
        : counters_(std::move(counters)), clocks_(std::move(clocks))
    {
    }
    void build(const config::gateway_config& cfg, const memory_quota_store* previous);

    struct tenant_state
    {
        std::mutex m;
        std::optional<core::token_bucket> bucket;
        int max_concurrent = 0;
        int active = 0;
        std::optional<core::token_budget> budget;
    };
    struct app_state
    {
        std::mutex m;
        int max_concurrent = 0;
        int active = 0;
        core::usage_estimator estimator;
    };

    // Fixed after construction: names map to slots in the vectors.
    std::unordered_map<std::string, std::uint32_t> tenant_slots_, app_slots_;
    std::vector<std::shared_ptr<tenant_state>> tenants_;
    std::vector<std::shared_ptr<app_state>> apps_;
    std::vector<usage_counters::counts*> counts_; // [tenant slot * apps + app slot]; null: app not allowed
    std::shared_ptr<usage_counters> counters_;
    quota_clocks clocks_;
    std::shared_ptr<core::ownership_table> owners_; // shared with reconfigured stores
    std::shared_ptr<core::conversation_map> conversations_; // the same
    std::int64_t ownership_ttl_s_ = 0;
};

// Seconds until the next UTC midnight (Retry-After for quota_exceeded).
std::int64_t seconds_to_utc_midnight(std::int64_t unix_seconds);

} // namespace gw::gateway
