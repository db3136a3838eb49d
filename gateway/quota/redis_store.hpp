// The shared quota store (quota_store.type = "redis"): exact across gateway replicas.
// Admission is one pipelined round trip of two atomic Lua scripts (tenant: rate bucket,
// concurrency lease, token reservation; app: concurrency lease; see redis_scripts.hpp),
// sent to both slots' nodes at once on a Cluster. A tenant's admissions made while one of
// its batches is in flight wait for it and then go as one batch (group commit): under
// load Redis runs one script per round trip instead of one per request, and an idle
// tenant's admission goes at once. Everything after admission leaves the
// request path through the worker's redis_link: the settlement and lease release when a
// request ends, ownership records, lease renewals while it runs.
// When Redis is slow or down (quota_store.timeout_ms), quota_store.on_error decides:
// allow (admit unchecked), deny (503), or local (this process's memory store).
#pragma once

#include "config/gateway_config.hpp"
#include "core/call_coalescer.hpp"
#include "gateway/quota/memory_store.hpp"
#include "gateway/quota/redis_link.hpp"

#include <string>
#include <unordered_map>
#include <vector>

namespace gw::gateway {

class redis_quota_store final : public quota_store, public std::enable_shared_from_this<redis_quota_store>
{
public:
    // One per worker and configuration: `link` is the worker's (its executor's) link.
    redis_quota_store(std::shared_ptr<redis_link> link, std::shared_ptr<const config::gateway_config> cfg,
                      std::shared_ptr<usage_counters> counters, std::shared_ptr<memory_quota_store> local);

    net::awaitable<admission> admit(const std::string& tenant, const std::string& app, bool generates) override;
    // Ownership lives under dify-gateway:{o:<kind>:<id>} (SET NX EX), each record hashed on
    // itself; a lookup that finds none there reads the key earlier gateways wrote
    // (dify-gateway:{o}:<kind>:<id>). Every record is also kept in the local store, which
    // answers while Redis cannot.
    void record_owner(core::owned_kind kind, std::string_view id, const std::string& tenant) override;
    net::awaitable<std::optional<std::string>> owner_of(core::owned_kind kind, const std::string& id) override;
    void remember_conversation(const std::string& tenant, const std::string& key, const std::string& conversation_id) override;
    net::awaitable<std::optional<std::string>> conversation_of(const std::string& key) override;
    void finish(quota_ticket& t, std::int64_t tokens) override;
    net::awaitable<budget_view> budget(const std::string& tenant) override;

    static std::string tenant_key(const std::string& tenant, std::string_view part);
    static std::string app_key(const std::string& app);
    static std::string app_cancelled_key(const std::string& app);
    redis_link& link() { return *link_; }

private:
    // An admission waiting for, or in, its tenant's batch (core::call_coalescer).
    struct pending_admission
    {
        std::string app;
        std::string lease;
        std::int64_t estimate = 0;
        bool generates = false;
        redis_client::clock::time_point deadline{};
        // Filled when the batch is answered: the tenant script's verdict for this lease,
        // then the app script's if the app has a concurrency limit (or the batch's error).
        // Owned by the waiting caller: expired once it gave up and went.
        std::weak_ptr<redis_call> call;
    };
    // A batch's turn in its tenant's group: end() hands over to the batch that waited (if
    // any); a turn that ends otherwise releases the group.
    class batch_turn
    {
    public:
        batch_turn(redis_quota_store& store, const std::string& tenant) : store_(store), tenant_(tenant) {}
        ~batch_turn();
        batch_turn(const batch_turn&) = delete;
        batch_turn& operator=(const batch_turn&) = delete;
        std::vector<pending_admission> end()
        {
            ended_ = true;
            return store_.admissions_.done(tenant_);
        }

    private:
        redis_quota_store& store_;
        const std::string& tenant_;
        bool ended_ = false;
    };
    // Sends `batch`, then every batch of `tenant` that waited for it, until none did.
    static net::awaitable<void> send_admissions(std::shared_ptr<redis_quota_store> self, std::string tenant,
                                                std::vector<pending_admission> batch);
    net::awaitable<void> send_admission_batch(const std::string& tenant, std::vector<pending_admission> batch);
    // An admission's replies: their shape, and the admission they say.
    static bool well_formed(const std::vector<redis_value>& replies, bool app_limited);
    admission decide(const std::string& tenant, const std::string& app, bool generates, const std::string& lease,
                     const std::vector<redis_value>& replies);
    void give_back_after_failure(const std::string& tenant, const std::string& app, const std::string& lease, const error_code& ec,
                                 bool generates);
    net::awaitable<admission> on_store_error(const std::string& tenant, const std::string& app, bool generates, const std::string& lease);
    redis_client::clock::time_point deadline() const;

    // What a tenant's (an app's) calls name in Redis, made once for this config: its keys,
    // and the script arguments its limits give.
    struct tenant_names
    {
        std::string rate, active, tokens, cancelled;
        std::vector<std::string> limits; // rate, burst, max_concurrent, tokens_per_day, lease TTL (ms)
    };
    struct app_names
    {
        std::string active, cancelled, max_concurrent;
    };
    const tenant_names& names_of_tenant(const std::string& tenant) const { return tenant_names_.at(tenant); }
    const app_names& names_of_app(const std::string& app) const { return app_names_.at(app); }

    std::shared_ptr<redis_link> link_;
    std::shared_ptr<const config::gateway_config> cfg_holder_; // the config this store was made for
    const config::gateway_config& cfg_;
    std::shared_ptr<usage_counters> counters_;
    std::shared_ptr<memory_quota_store> local_;
    std::unordered_map<std::string, tenant_names> tenant_names_;
    std::unordered_map<std::string, app_names> app_names_;
    std::string lease_ttl_ms_;  // as the admission scripts take it
    std::string ownership_ttl_; // seconds, as SET's EX takes them
    std::uint64_t lease_counter_ = 0;
    core::call_coalescer<pending_admission> admissions_; // grouped by tenant
    bool failing_ = false; // the last admission could not use Redis
    std::string lease_prefix_;
};

} // namespace gw::gateway
