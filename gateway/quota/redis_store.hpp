// The shared quota store (quota_store.type = "redis"): exact across gateway replicas.
// Admission is one pipelined round trip of two atomic Lua scripts (tenant: rate bucket,
// concurrency leases, token reservation; app: concurrency leases), run with EVALSHA
// (EVAL when Redis lost its script cache) and timed by Redis' own TIME. Keys carry hash
// tags ({t:<tenant>}, {a:<app>}) so each script touches one Cluster slot. Concurrency is
// held as leases in sorted sets that expire, so a crashed replica cannot leak slots.
// Settlement is a second, fire-and-forget round trip when the request ends.
// When Redis is slow or down (quota_store.timeout_ms), quota_store.on_error decides:
// allow (admit unchecked), deny (503), or local (this process's memory store).
#pragma once

#include "config/gateway_config.hpp"
#include "gateway/quota/memory_store.hpp"
#include "gateway/quota/redis_client.hpp"

namespace gw::gateway {

class redis_quota_store final : public quota_store, public std::enable_shared_from_this<redis_quota_store>
{
public:
    // One per worker: `ex` is the worker's executor.
    redis_quota_store(net::any_io_executor ex, std::shared_ptr<const config::gateway_config> cfg,
                      std::shared_ptr<usage_counters> counters, std::shared_ptr<memory_quota_store> local);

    net::awaitable<admission> admit(const std::string& tenant, const std::string& app, bool generates) override;
    // Ownership lives under dify-gateway:{o}:<kind>:<id> (SET NX EX); every record is also
    // kept in the local store, which answers while Redis cannot.
    void record_owner(core::owned_kind kind, const std::string& id, const std::string& tenant) override;
    net::awaitable<std::optional<std::string>> owner_of(core::owned_kind kind, const std::string& id) override;
    void finish(quota_ticket& t, std::int64_t tokens) override;
    net::awaitable<budget_view> budget(const std::string& tenant) override;

    static std::string tenant_key(const std::string& tenant, std::string_view part);
    static std::string app_key(const std::string& app);
    redis_client& client() { return client_; }

private:
    net::awaitable<admission> on_store_error(const std::string& tenant, const std::string& app, bool generates);
    net::awaitable<std::tuple<error_code, std::vector<redis_value>>> run_scripts(std::vector<redis_client::command> calls);
    static net::awaitable<void> settle(std::shared_ptr<redis_quota_store> self, std::vector<redis_client::command> calls);

    net::any_io_executor ex_;
    std::shared_ptr<const config::gateway_config> cfg_holder_; // the config this store was made for
    const config::gateway_config& cfg_;
    std::shared_ptr<usage_counters> counters_;
    std::shared_ptr<memory_quota_store> local_;
    redis_client client_;
    std::uint64_t lease_counter_ = 0;
    bool failing_ = false; // the last admission could not use Redis
    std::string lease_prefix_;
};

} // namespace gw::gateway
