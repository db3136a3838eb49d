// One worker thread's world: its io_context, its upstream pools and per-worker state.
// Sessions accepted onto a worker run only on its io_context, so nothing here is locked.
#pragma once

#include "gateway/ops/metrics.hpp"
#include "gateway/ops/span_exporter.hpp"
#include "gateway/proxy/tenants.hpp"
#include "gateway/quota/memory_store.hpp"
#include "gateway/upstream/pool.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <vector>

namespace gw::gateway {

// A connection's registration with its worker, so a drain can close idle keep-alive
// connections at once and tell busy ones to close after their response.
struct session_entry
{
    client_socket* stream = nullptr;
    bool idle = true; // waiting for the next request
    // When the wait must end (watch_idle; a drain brings it forward); max once the sweep
    // has cut it off.
    std::chrono::steady_clock::time_point idle_until = std::chrono::steady_clock::time_point::max();
};

class worker
{
public:
    ~worker();
    worker(
        std::shared_ptr<const tenant_directory> tenants,
        const std::map<std::string, std::shared_ptr<net::ssl::context>>& upstream_tls,
        std::uint64_t seed,
        std::shared_ptr<usage_counters> usage,
        std::shared_ptr<memory_quota_store> local_quota
    );

    net::io_context& context() { return ctx_; }
    const tenant_directory& tenants() const { return *tenants_; }
    // The configuration new requests use; a request keeps the snapshot it started with.
    std::shared_ptr<const tenant_directory> tenants_snapshot() const { return tenants_; }
    // The pool of an upstream by its metric_names id (app_handle::upstream_id). An upstream a
    // reload removed keeps its stopped pool here: requests still on the old configuration
    // get a clear failure from it.
    std::shared_ptr<upstream_pool> pool(std::uint32_t upstream_id) const
    {
        return pool_by_id_.at(upstream_id);
    }
    const std::map<std::string, std::shared_ptr<upstream_pool>>& pools() const { return pools_; }

    // Hot reload, on this worker's thread: new requests see `tenants`; upstreams whose
    // settings did not change keep their pool (and its connections), others get a new one
    // while requests in flight finish on the old. Quota state lives in the stores.
    void reconfigure(
        std::shared_ptr<const tenant_directory> tenants,
        const std::map<std::string, std::shared_ptr<net::ssl::context>>& upstream_tls,
        std::shared_ptr<usage_counters> usage,
        std::shared_ptr<memory_quota_store> local_quota,
        std::shared_ptr<quota_store> quotas
    );

    // The app's next Dify key (round-robin per worker).
    const std::string& next_api_key(const app_handle& app);
    // A new request id: 32 hex digits.
    std::string new_request_id();
    // 64 random bits (trace and span ids).
    std::uint64_t random64() { return rng_(); }
    // Where this worker's finished spans go (exported only when tracing is configured).
    span_exporter& tracer() { return *tracer_; }
    // Uniform in [0, 1), for retry jitter.
    double random01() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }
    // Clocks: monotonic (rates, breakers) and Unix seconds (Retry-After dates).
    core::nanos now() const { return local_quota_->clocks().steady(); }
    std::int64_t unix_seconds() const { return local_quota_->clocks().unix_seconds(); }

    // The quota store requests are admitted by (the shared memory store, or this
    // worker's Redis store); the local store also keeps per-app usage estimates.
    quota_store& quotas() { return *quotas_; }
    void set_quotas(std::shared_ptr<quota_store> q) { quotas_ = std::move(q); }
    memory_quota_store& local_quota() { return *local_quota_; }
    usage_counters& usage() { return *usage_; }

    bool draining() const { return draining_; }
    // Stop taking requests: busy connections close after their response (which says
    // `Connection: close`), idle ones once idle for `idle_grace` (a request already on its
    // way on one is still served).
    void begin_drain(std::chrono::milliseconds idle_grace);
    // Closes every upstream pool's idle connections.
    void stop_pools();
    // Drain timeout: streams still open end now with the gateway's error event; idle
    // connections close.
    void abort_streams();
    bool aborting() const { return aborting_; }
    // SSE relays in progress (their upstream connections), for abort_streams().
    std::set<upstream_connection*>& relays() { return relays_; }
    // Scratch memory of this worker's SSE relays: the bytes a relay reads from Dify, and
    // the event bytes it parses out of them. Shared by every stream of the worker, so an
    // open stream holds no read buffer while it waits; a relay uses them only between two
    // suspensions (nothing may wait holding a view into them).
    std::span<char> relay_read_scratch() { return {relay_scratch_.data(), relay_scratch_size}; }
    std::span<char> relay_event_scratch() { return {relay_scratch_.data() + relay_scratch_size, relay_scratch_size}; }

    std::list<session_entry>& sessions() { return sessions_; }
    // A session began waiting for its next request, for `limit`, until `entry.idle_until`.
    // One sweep per worker keeps every connection's idle limit, not a timer per connection
    // (which costs each wait a timer's set-up and cancellation, and each connection its
    // memory): it runs at the earliest deadline among the idle sessions, cancels the reads
    // of those past theirs (the read ends with operation_aborted, as when a drain wakes
    // them) and sets itself for the next. A sweep visits every session of the worker, so
    // sweeps are a gap apart at least (an eighth of the limit, 10 ms to 1 s): connections
    // that open and fall silent one after another do not make the worker visit them all
    // for each, and a connection is cut off within a gap after its limit. Called on this
    // worker's thread.
    void watch_idle(const session_entry& entry, std::chrono::milliseconds limit);
    // This worker's metrics: written only on its thread.
    metrics_shard& metrics() { return metrics_; }
    std::atomic<int> active_sessions{0};
    // Called on this worker's thread each time one of its sessions ends (the server's
    // drain waits on it instead of polling). Set before the worker runs; cleared (nullptr)
    // once its thread has stopped, before the worker goes.
    void on_session_end(std::function<void()> hook) { session_end_hook_ = std::move(hook); }
    void session_ended()
    {
        if (session_end_hook_) session_end_hook_();
    }

private:
    // Declared before ctx_, so they outlive it: coroutine frames still suspended when the
    // context is destroyed (a drain that timed out) unregister from them as they go.
    std::list<session_entry> sessions_;
    std::set<upstream_connection*> relays_;
    static constexpr std::size_t relay_scratch_size = 16 * 1024; // a TLS record's most
    std::vector<char> relay_scratch_ = std::vector<char>(2 * relay_scratch_size);
    metrics_shard metrics_;
    std::function<void()> session_end_hook_;
    // Before ctx_, like the members above: request frames destroyed with the context still
    // hand it spans (it takes none once closed: ~worker closes it, and its timer goes,
    // before the context).
    std::unique_ptr<span_exporter> tracer_;
    net::io_context ctx_{1};
    std::shared_ptr<const tenant_directory> tenants_;
    std::map<std::string, std::shared_ptr<upstream_pool>> pools_;
    std::vector<std::shared_ptr<upstream_pool>> pool_by_id_; // by metric_names upstream id
    std::vector<std::size_t> key_cursor_;                    // by metric_names app id
    void index_pools();
    std::mt19937_64 rng_;
    std::shared_ptr<usage_counters> usage_;
    std::shared_ptr<memory_quota_store> local_quota_;
    std::shared_ptr<quota_store> quotas_;
    bool draining_ = false;
    bool aborting_ = false;
    void sweep_idle();
    void arm_idle_sweep(std::chrono::steady_clock::time_point at);
    std::optional<net::steady_timer> idle_sweep_; // after ctx_: destroyed before it
    std::chrono::steady_clock::time_point idle_sweep_at_ =
        std::chrono::steady_clock::time_point::max(); // max: not set
    std::chrono::steady_clock::time_point last_idle_sweep_{};
    std::chrono::milliseconds idle_sweep_gap_{1000}; // an eighth of the last limit watched
};

// A session's registration with its worker, held from the session's start to its end
// however it ends (an exception included): counted in active_sessions (the drain waits
// for none) and listed in sessions() (the drain wakes it while idle).
class session_registration
{
public:
    session_registration(worker& w, client_socket& stream) : w_(w)
    {
        ++w_.active_sessions;
        it_ = w_.sessions().insert(w_.sessions().end(), session_entry{&stream, true});
    }
    ~session_registration()
    {
        w_.sessions().erase(it_);
        --w_.active_sessions;
        w_.session_ended();
    }
    session_registration(const session_registration&) = delete;
    session_registration& operator=(const session_registration&) = delete;
    session_entry& entry() { return *it_; }

private:
    worker& w_;
    std::list<session_entry>::iterator it_;
};

} // namespace gw::gateway
