#include "gateway/worker.hpp"

#include "core/trace_context.hpp"
#include "gateway/ops/metric_names.hpp"

#include <algorithm>

namespace gw::gateway {

worker::worker(
    std::shared_ptr<const tenant_directory> tenants,
    const std::map<std::string, std::shared_ptr<net::ssl::context>>& upstream_tls,
    std::uint64_t seed,
    std::shared_ptr<usage_counters> usage,
    std::shared_ptr<memory_quota_store> local_quota
)
    : tenants_(std::move(tenants)), rng_(seed), usage_(std::move(usage)),
      local_quota_(std::move(local_quota)), quotas_(local_quota_)
{
    for (const auto& [name, u] : tenants_->config().upstreams)
        pools_.emplace(name, std::make_shared<upstream_pool>(ctx_.get_executor(), u, upstream_tls.at(name)));
    index_pools();
    tracer_ = std::make_unique<span_exporter>(ctx_.get_executor());
    tracer_->configure(tenants_->config().tracing, GW_VERSION);
}

worker::~worker()
{
    tracer_->close();
}

void worker::index_pools()
{
    for (const auto& [name, p] : pools_) {
        auto id = metric_names::process().upstream(name);
        if (id >= pool_by_id_.size()) pool_by_id_.resize(id + 1);
        pool_by_id_[id] = p;
    }
}

const std::string& worker::next_api_key(const app_handle& app)
{
    const auto& keys = app.cfg->api_keys;
    if (app.id >= key_cursor_.size()) key_cursor_.resize(app.id + 1);
    return keys[key_cursor_[app.id]++ % keys.size()];
}

std::string worker::new_request_id()
{
    const auto hi = rng_();
    const auto lo = rng_();
    return core::to_hex(core::make_trace_id(hi, lo)); // 32 lower-case hex digits
}

void worker::begin_drain(std::chrono::milliseconds idle_grace)
{
    draining_ = true;
    // Connections idle now close once they have waited idle_grace more (or at their own
    // limit, if sooner); those that become idle from now on wait at most idle_grace
    // themselves (wait_for_request). The idle sweep closes both.
    const auto until = std::chrono::steady_clock::now() + idle_grace;
    for (auto& s : sessions_)
        if (s.idle && s.stream && s.idle_until != std::chrono::steady_clock::time_point::max()) // max: cut off already
            s.idle_until = std::min(s.idle_until, until);
    if (until < idle_sweep_at_) arm_idle_sweep(until);
}

void worker::watch_idle(const session_entry& entry, std::chrono::milliseconds limit)
{
    using std::chrono::milliseconds;
    idle_sweep_gap_ = std::clamp(limit / 8, milliseconds(10), milliseconds(1000));
    // A sweep already set for no later than this deadline checks it when it runs.
    const auto at = std::max(entry.idle_until, last_idle_sweep_ + idle_sweep_gap_);
    if (at < idle_sweep_at_) arm_idle_sweep(at);
}

void worker::arm_idle_sweep(std::chrono::steady_clock::time_point at)
{
    if (!idle_sweep_) idle_sweep_.emplace(ctx_);
    idle_sweep_at_ = at;
    idle_sweep_->expires_at(at); // a sweep set for later is cancelled: its handler returns
    idle_sweep_->async_wait([this](error_code ec) {
        if (!ec) sweep_idle();
    });
}

void worker::sweep_idle()
{
    const auto now = std::chrono::steady_clock::now();
    auto next = std::chrono::steady_clock::time_point::max();
    error_code ignored;
    for (auto& s : sessions_) {
        if (!s.idle || !s.stream) continue;
        if (s.idle_until <= now) {
            s.idle_until = std::chrono::steady_clock::time_point::max(); // cut off once
            s.stream->cancel(ignored);
        } else {
            next = std::min(next, s.idle_until);
        }
    }
    last_idle_sweep_ = now;
    idle_sweep_at_ = std::chrono::steady_clock::time_point::max();
    if (next != std::chrono::steady_clock::time_point::max()) arm_idle_sweep(std::max(next, now + idle_sweep_gap_));
}

void worker::reconfigure(
    std::shared_ptr<const tenant_directory> tenants,
    const std::map<std::string, std::shared_ptr<net::ssl::context>>& upstream_tls,
    std::shared_ptr<usage_counters> usage,
    std::shared_ptr<memory_quota_store> local_quota,
    std::shared_ptr<quota_store> quotas
)
{
    std::map<std::string, std::shared_ptr<upstream_pool>> pools;
    for (const auto& [name, u] : tenants->config().upstreams) {
        auto old = pools_.find(name);
        if (old != pools_.end() && same_connection_settings(old->second->config(), u))
            pools.emplace(name, old->second);
        else
            pools.emplace(
                name, std::make_shared<upstream_pool>(ctx_.get_executor(), u, upstream_tls.at(name))
            );
    }
    for (auto& [name, p] : pools_)
        if (!pools.contains(name) || pools.at(name) != p)
            p->stop(); // idle connections close; leased ones on return
    pools_ = std::move(pools);
    index_pools();
    tracer_->configure(tenants->config().tracing, GW_VERSION);
    tenants_ = std::move(tenants);
    usage_ = std::move(usage);
    local_quota_ = std::move(local_quota);
    quotas_ = std::move(quotas);
}

void worker::abort_streams()
{
    aborting_ = true;
    for (auto* c : relays_)
        c->close(); // each relay then ends with an error event
    error_code ignored;
    for (auto& s : sessions_)
        if (s.idle && s.stream) s.stream->cancel(ignored);
}

void worker::stop_pools()
{
    for (auto& [name, p] : pools_)
        p->stop();
}

} // namespace gw::gateway
