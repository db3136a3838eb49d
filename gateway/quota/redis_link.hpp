// One worker's link to the shared Redis store, made once at start and kept across config
// reloads (the quota_store section cannot change without a restart): the client with its
// multiplexed connections, the background writes, and the leases this worker's running
// requests hold.
//
// Background writes (settlements, lease releases, ownership records, lease renewals) leave
// the request path: they are queued (core::write_queue) and ride along with the next
// admission this worker sends (same pipeline, no round trip or write of their own; a
// settlement of the admitted tenant even runs in the admission's script run). While
// admissions flow (one in the last `limits.delay`, 1 ms) a write waits up to that long for
// one; otherwise the flusher coroutine sends it at once, with whatever else queued while
// its previous batch was in flight. A release is never held back longer: it would refuse a
// client that sends its next request at its limit through another replica.
// A batch that fails is retried with backoff for up to five minutes, then counted as
// dropped (so are writes beyond 200,000 waiting in one worker). While batches fail, one
// probe batch every 200 ms finds out when Redis is back, and then everything goes. Every
// write is idempotent (SET NX, ZREM, settlements keyed by lease), so a retry of a batch
// Redis applied in part changes nothing twice. Writes Redis can take as one are merged
// when sent: a tenant's settlements of one day run as one script, releases from one set
// as one ZREM. Leases are renewed every third of their TTL while the request that holds
// them runs.
// Runs on the worker's executor; not thread-safe.
#pragma once

#include "core/write_queue.hpp"
#include "gateway/quota/quota.hpp"
#include "gateway/quota/redis_client.hpp"

#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>

namespace gw::gateway {

class redis_link : public std::enable_shared_from_this<redis_link>
{
public:
    using command = redis_client::command;
    using clock = redis_client::clock;

    redis_link(net::any_io_executor ex, redis_client_options options, std::chrono::milliseconds lease_ttl,
               std::shared_ptr<store_counters> counters, core::write_queue_limits limits = {.delay = std::chrono::milliseconds(1), .max_pending = 200'000});
    ~redis_link();
    // Starts the flusher (once, after construction: it holds a reference).
    void start();
    // Stops the flusher and closes the connections; writes still queued are counted as dropped.
    void stop();

    // Runs `calls` as one pipeline by `deadline`, resending as EVAL what Redis answered
    // NOSCRIPT. Background writes waiting at that moment are sent first, in the same
    // pipeline.
    net::awaitable<std::tuple<error_code, std::vector<redis_value>>> run(std::vector<command> calls, clock::time_point deadline);
    // Queues an idempotent write.
    void write(command cmd);
    // Sends what is queued now, and waits (up to `deadline`) until the queue is empty or
    // only retries remain. For a graceful stop and for tests.
    net::awaitable<void> flush(clock::time_point deadline);

    // A running request's lease, renewed until released. `tenant_key`/`app_key` are the
    // sorted sets holding it ("" = not held there).
    void hold_lease(const std::string& lease, std::string tenant_key, std::string app_key);
    void release_lease(const std::string& lease);

    redis_client& client() { return *client_; }
    std::chrono::milliseconds lease_ttl() const { return lease_ttl_; }

private:
    struct held
    {
        std::string tenant_key, app_key;
    };
    static net::awaitable<void> flush_loop(std::shared_ptr<redis_link> self);
    net::awaitable<void> send_batch(clock::time_point now);
    // `calls` by `deadline`, resending as EVAL what Redis answered NOSCRIPT. The caller
    // keeps `calls` alive until this returns (it awaits it at once).
    net::awaitable<std::tuple<error_code, std::vector<redis_value>>> run_scripts(const std::vector<command>& calls, clock::time_point deadline);
    using entries = std::vector<core::write_queue<command>::entry>;
    // A batch's writes as calls, merged where Redis can take them as one (a tenant's
    // settlements of one day in one script run, lease releases of one key in one ZREM):
    // write i is carried by calls[call_of[i]]. The first write of each call is moved into
    // it (moved[i]; the call's first own_size elements) and taken back only for a retry;
    // the per-item arguments of writes merged into it are copied, and those writes keep
    // their own commands. Calls may follow (an admission's).
    struct merged_writes
    {
        std::vector<command> calls;
        std::vector<std::size_t> call_of;
        std::vector<bool> moved;
        std::vector<std::size_t> own_size; // per call
    };
    static merged_writes merge_writes(entries& batch);
    // The outcome of writes sent: failures (and "not now" replies) are retried later.
    void settle_writes(entries batch, merged_writes& merged, error_code ec, const std::vector<redis_value>& replies, bool count_failure);
    void queue_renewals();
    void wake();
    void update_pending();

    net::any_io_executor ex_;
    std::shared_ptr<redis_client> client_;
    std::chrono::milliseconds lease_ttl_;
    std::shared_ptr<store_counters> counters_;
    core::write_queue<command> queue_;
    net::steady_timer timer_;
    clock::time_point next_renewal_;
    std::unordered_map<std::string, held> leases_;
    std::int64_t reported_pending_ = 0;
    std::uint64_t reported_dropped_ = 0;
    std::uint64_t reported_retried_ = 0;
    std::chrono::milliseconds linger_;     // how long a write may wait for an admission to carry it
    clock::time_point last_admission_{};   // when run() last sent calls
    bool flush_now_ = false;               // a write came while no admission flows: send it now
    bool sending_ = false;
    std::size_t in_flight_ = 0;  // writes sent and not yet heard back from
    bool stopped_ = false;
    bool failing_ = false; // the last batch failed: logged once per outage, writes wait for a probe
    clock::time_point failed_at_{};
};

} // namespace gw::gateway
