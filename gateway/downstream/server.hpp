// The gateway process: N workers (each one thread, one io_context, its own pools), one
// listener accepting onto the workers in turn, a keep-alive session coroutine per
// connection, and a graceful drain (stop accepting, let in-flight requests and streams
// finish up to server.drain_timeout_ms, then close).
#pragma once

#include "config/gateway_config.hpp"
#include "gateway/ops/admin.hpp"
#include "gateway/downstream/connection_limits.hpp"
#include "gateway/quota/redis_link.hpp"
#include "gateway/worker.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace gw::gateway {

class server
{
public:
    // Binds server.listen (throws std::runtime_error with a clear message on failure).
    // `config_path` (optional) is what SIGHUP and POST /admin/reload re-read. `clocks` are
    // what rates, breakers and retry waits measure time with (tests move them on).
    explicit server(std::shared_ptr<const config::gateway_config> cfg, std::string config_path = "",
                    quota_clocks clocks = quota_clocks::system());
    ~server();

    boost::asio::ip::tcp::endpoint endpoint() const { return endpoint_; }
    boost::asio::ip::tcp::endpoint admin_endpoint() const { return admin_->endpoint(); }
    std::size_t worker_count() const { return workers_.size(); }

    // Starts the worker threads and the accept loop.
    void start();
    // Begins the drain; safe from any thread and from signal handlers' completion.
    void drain();
    // Hot reload (SIGHUP, POST /admin/reload): validates `config_path`; if valid, new
    // requests on every worker use it while requests in flight finish on the old one.
    // Returns the problems (empty = reloaded). server/admin/quota_store changes need a
    // restart and are kept. Safe from any thread that is not a worker.
    std::vector<std::string> reload(const std::string& config_path);
    // Blocks until every worker has stopped (after a drain).
    void wait();

    // New upstream connections opened so far, over all workers (reads worker counters
    // by posting to each worker; call from a thread that is not a worker).
    std::uint64_t upstream_connects();
    // The Prometheus text of all workers' metrics (GET /metrics). Not from a worker other
    // than the admin listener's.
    std::string scrape();

    // Upstream connect attempts (successful or not), over all workers.
    std::uint64_t upstream_connect_attempts();

private:
    net::awaitable<void> accept_loop();
    net::awaitable<void> finish_drain();
    net::awaitable<void> wait_for_drain_event(std::chrono::steady_clock::time_point until);
    void wake_drain(); // from any worker: finish_drain looks again
    int active_sessions() const;
    net::awaitable<void> flush_link(std::shared_ptr<redis_link> link, std::chrono::steady_clock::time_point deadline);
    net::awaitable<void> flush_spans(worker* w);
    void stop_workers();

    std::shared_ptr<const config::gateway_config> cfg_;
    std::shared_ptr<usage_counters> usage_;              // replaced by reload(): read only there
    std::shared_ptr<store_counters> store_counters_;     // the same for the process's life: scrape() reads it
    std::shared_ptr<memory_quota_store> local_quota_;
    std::vector<std::unique_ptr<worker>> workers_;
    std::vector<std::shared_ptr<redis_link>> redis_links_; // per worker (Redis store only), kept across reloads
    std::vector<std::thread> threads_;
    std::vector<net::executor_work_guard<net::io_context::executor_type>> guards_;
    std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
    // server.* caps, fixed at start (server settings need a restart; reload() swaps cfg_
    // on another thread, so the accept loop never reads it).
    std::shared_ptr<connection_limits> limits_;
    int max_per_worker_ = 0;
    std::chrono::milliseconds drain_timeout_{0};
    std::chrono::milliseconds drain_idle_grace_{0};
    std::unique_ptr<admin_listener> admin_;
    boost::asio::ip::tcp::endpoint endpoint_;
    std::size_t next_worker_ = 0;
    std::atomic<bool> draining_{false};
    std::unique_ptr<net::steady_timer> drain_wake_; // on worker 0; after workers_: destroyed before them
    std::atomic<std::size_t> links_flushed_{0};
    std::atomic<std::size_t> spans_flushed_{0};
    std::mutex reload_mutex_;
    std::string config_path_;
};

} // namespace gw::gateway
