#include "gateway/downstream/server.hpp"

#include "config/loader.hpp"
#include "core/text.hpp"
#include "gateway/ops/logging.hpp"
#include "gateway/downstream/session.hpp"
#include "gateway/quota/redis_store.hpp"

#include "gateway/ops/spawn.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>

#include <spdlog/spdlog.h>

#include <atomic>
#include <future>
#include <random>

#include <pthread.h>

namespace gw::gateway {

using tcp = net::ip::tcp;

namespace {

// Hands the worker's batch of access lines to the logger once a second (on its thread).
net::awaitable<void> flush_access_log_every_second()
{
    net::steady_timer tick(co_await net::this_coro::executor);
    for (;;) {
        tick.expires_after(std::chrono::seconds(1));
        auto [ec] = co_await tick.async_wait(use_nothrow);
        if (ec) co_return;
        flush_access_log();
    }
}

std::map<std::string, std::shared_ptr<net::ssl::context>> upstream_tls_contexts(const config::gateway_config& cfg)
{
    std::map<std::string, std::shared_ptr<net::ssl::context>> out;
    for (const auto& [name, u] : cfg.upstreams) {
        try {
            out[name] = make_upstream_tls(u);
        } catch (const std::exception& e) {
            throw std::runtime_error("upstreams." + name + ": cannot set up TLS: " + e.what());
        }
    }
    return out;
}

} // namespace

server::server(std::shared_ptr<const config::gateway_config> cfg, std::string config_path, quota_clocks clocks)
    : cfg_(std::move(cfg)), config_path_(std::move(config_path))
{
    int n = cfg_->server.threads > 0 ? cfg_->server.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    auto tenants = std::make_shared<const tenant_directory>(cfg_);
    auto tls = upstream_tls_contexts(*cfg_);
    std::map<std::string, std::vector<std::string>> tenant_apps;
    for (const auto& [name, t] : cfg_->tenants) tenant_apps[name] = t.apps;
    usage_ = std::make_shared<usage_counters>(tenant_apps);
    store_counters_ = usage_->store();
    local_quota_ = std::make_shared<memory_quota_store>(*cfg_, usage_, std::move(clocks));
    std::random_device rd;
    for (int i = 0; i < n; ++i)
        workers_.push_back(std::make_unique<worker>(tenants, tls, (std::uint64_t(rd()) << 32) ^ rd(), usage_, local_quota_));
    drain_wake_ = std::make_unique<net::steady_timer>(workers_[0]->context());
    for (auto& w : workers_)
        w->on_session_end([this] {
            if (draining_.load() && active_sessions() == 0) wake_drain();
        });
    if (cfg_->quota_store.type == config::store_kind::redis) {
        auto redis_tls = make_redis_tls(cfg_->quota_store);
        for (auto& w : workers_) {
            auto link = std::make_shared<redis_link>(w->context().get_executor(), redis_options(cfg_->quota_store, redis_tls),
                                                     cfg_->quota_store.lease_ttl_s, usage_->store());
            link->start();
            redis_links_.push_back(link);
            w->set_quotas(std::make_shared<redis_quota_store>(link, cfg_, usage_, local_quota_));
        }
    }

    auto hp = core::parse_host_port(cfg_->server.listen);
    if (!hp) throw std::runtime_error("server.listen: not HOST:PORT");
    error_code ec;
    auto address = net::ip::make_address(hp->host, ec);
    if (ec) throw std::runtime_error("server.listen: \"" + hp->host + "\" is not an IP address");
    tcp::endpoint ep(address, hp->port);
    limits_ = std::make_shared<connection_limits>(cfg_->server.max_connections_per_client, cfg_->server.trusted_proxies);
    max_per_worker_ = cfg_->server.max_connections_per_worker;
    drain_timeout_ = cfg_->server.drain_timeout_ms;
    drain_idle_grace_ = cfg_->server.drain_idle_grace_ms;
    acceptor_ = std::make_unique<tcp::acceptor>(workers_[0]->context());
    acceptor_->open(ep.protocol());
    acceptor_->set_option(tcp::acceptor::reuse_address(true));
    acceptor_->bind(ep, ec);
    if (ec) throw std::runtime_error("server.listen: cannot bind " + cfg_->server.listen + ": " + ec.message());
    acceptor_->listen(net::socket_base::max_listen_connections);
    endpoint_ = acceptor_->local_endpoint();
    admin_ = std::make_unique<admin_listener>(
        *workers_[0], cfg_->admin, [this] { return !draining_.load(); },
        [this]() -> std::vector<std::string> {
            if (config_path_.empty()) return {"this gateway was not started from a config file"};
            return reload(config_path_);
        },
        [this] { return scrape(); }
    );
}

server::~server()
{
    if (!threads_.empty()) {
        stop_workers();
        wait();
    }
    // Session frames still suspended end when their worker's context goes, one worker
    // after another: none may reach back into this server or its other workers.
    for (auto& w : workers_) w->on_session_end(nullptr);
}

void server::start()
{
    for (auto& w : workers_) guards_.push_back(net::make_work_guard(w->context()));
    net::co_spawn(workers_[0]->context(), accept_loop(), log_failure("accept loop"));
    admin_->start();
    for (auto& w : workers_) net::co_spawn(w->context(), flush_access_log_every_second(), log_failure("access log flush"));
    for (std::size_t i = 0; i < workers_.size(); ++i) {
        auto name = "gw-worker-" + std::to_string(i); // top -H, perf and ps -L show it
        threads_.emplace_back([ctx = &workers_[i]->context(), name = std::move(name)] {
            pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
            ctx->run();
            flush_access_log(); // this worker's last lines
        });
    }
}

net::awaitable<void> server::accept_loop()
{
    net::steady_timer backoff(acceptor_->get_executor());
    for (;;) {
        // The next worker with room (server.max_connections_per_worker); when all are full
        // the connection is accepted on the first and turned away.
        worker* chosen = nullptr;
        for (std::size_t i = 0; i < workers_.size() && !chosen; ++i) {
            auto& candidate = *workers_[next_worker_++ % workers_.size()];
            if (candidate.active_sessions.load() < max_per_worker_) chosen = &candidate;
        }
        auto& w = chosen ? *chosen : *workers_[0];
        auto [ec, socket] = co_await acceptor_->async_accept(w.context(), use_nothrow);
        if (!acceptor_->is_open()) co_return;
        if (ec) {
            spdlog::warn("accept failed: {}", ec.message());
            backoff.expires_after(std::chrono::milliseconds(100)); // e.g. out of file descriptors: do not spin
            co_await backoff.async_wait(use_nothrow);
            continue;
        }
        error_code ignored;
        auto remote = socket.remote_endpoint(ignored);
        std::string peer = ignored ? std::string("-") : remote.address().to_string();
        auto slot = chosen ? limits_->try_open(peer) : nullptr;
        if (!slot) {
            turn_away(std::move(socket), chosen ? "Too many connections from this address." : "The gateway is at its connection limit.");
            continue;
        }
        socket.set_option(tcp::no_delay(true), ignored);
        net::co_spawn(w.context(), session(std::move(socket), &w, std::move(peer), std::move(slot)), log_failure("connection"));
    }
}

void server::drain()
{
    if (draining_.exchange(true)) return;
    net::post(workers_[0]->context(), [this] {
        error_code ignored;
        acceptor_->close(ignored);
        for (auto& w : workers_) net::post(w->context(), [wp = w.get(), grace = drain_idle_grace_] { wp->begin_drain(grace); });
        net::co_spawn(workers_[0]->context(), finish_drain(), log_failure("drain"));
    });
}

int server::active_sessions() const
{
    int active = 0;
    for (const auto& w : workers_) active += w->active_sessions.load();
    return active;
}

void server::wake_drain()
{
    net::post(workers_[0]->context(), [this] { drain_wake_->cancel(); }); // the timer lives on worker 0
}

net::awaitable<void> server::wait_for_drain_event(clock::time_point until)
{
    drain_wake_->expires_at(until);
    co_await drain_wake_->async_wait(use_nothrow); // wake_drain() cancels it
}

// Runs on worker 0. Waits for events (the last session ending, the last flush done), not
// by polling; a wake-up that comes early only makes a loop look again.
net::awaitable<void> server::finish_drain()
{
    const auto deadline = clock::now() + drain_timeout_;
    // Phase 1: in-flight requests and streams finish by themselves.
    while (active_sessions() > 0 && clock::now() < deadline) co_await wait_for_drain_event(deadline);
    // Phase 2: streams still open end with the gateway's error event; a short grace for that.
    if (int left = active_sessions(); left > 0) {
        spdlog::warn("drain timeout: ending {} connections still open", left);
        for (auto& w : workers_) net::post(w->context(), [wp = w.get()] { wp->abort_streams(); });
        const auto grace = clock::now() + std::chrono::seconds(2);
        while (active_sessions() > 0 && clock::now() < grace) co_await wait_for_drain_event(grace);
    }
    // Phase 3: the last settlements and lease releases reach Redis, the last spans their
    // collector.
    const auto flush_deadline = clock::now() + std::chrono::seconds(2);
    for (std::size_t i = 0; i < redis_links_.size(); ++i)
        net::co_spawn(workers_[i]->context(), flush_link(redis_links_[i], flush_deadline), log_failure("final quota store flush"));
    for (auto& w : workers_) net::co_spawn(w->context(), flush_spans(w.get()), log_failure("final span export"));
    auto flushed = [this] { return links_flushed_.load() == redis_links_.size() && spans_flushed_.load() == workers_.size(); };
    while (!flushed() && clock::now() < flush_deadline) co_await wait_for_drain_event(flush_deadline);
    stop_workers();
}

net::awaitable<void> server::flush_link(std::shared_ptr<redis_link> link, clock::time_point deadline)
{
    co_await link->flush(deadline);
    if (++links_flushed_ == redis_links_.size()) wake_drain();
}

net::awaitable<void> server::flush_spans(worker* w)
{
    co_await w->tracer().flush();
    if (++spans_flushed_ == workers_.size()) wake_drain();
}

void server::stop_workers()
{
    net::post(workers_[0]->context(), [this] { admin_->stop(); });
    for (std::size_t i = 0; i < workers_.size(); ++i)
        net::post(workers_[i]->context(), [wp = workers_[i].get(), link = i < redis_links_.size() ? redis_links_[i] : nullptr] {
            if (link) link->stop();
            wp->stop_pools();
            wp->context().stop();
        });
    for (auto& g : guards_) g.reset();
}

void server::wait()
{
    for (auto& t : threads_)
        if (t.joinable()) t.join();
    threads_.clear();
}

std::uint64_t server::upstream_connects()
{
    std::uint64_t total = 0;
    for (auto& w : workers_) {
        auto f = net::post(w->context(), net::use_future([wp = w.get()] {
            std::uint64_t n = 0;
            for (const auto& [name, p] : wp->pools()) n += p->connects_total();
            return n;
        }));
        total += f.get();
    }
    return total;
}

std::string server::scrape()
{
    // Each worker's shard is copied on its own thread (the caller's inline).
    auto snapshot = [](worker* w) {
        std::pair<metrics_shard, std::vector<upstream_view>> out{w->metrics(), {}};
        for (const auto& [name, p] : w->pools()) {
            const auto idle = static_cast<std::int64_t>(p->idle());
            out.second.push_back({name, p->connects_total(), p->leased(), idle, p->open() - idle - p->leased(),
                                  p->breaker.current() == core::circuit_breaker::state::open, p->resumed_total(),
                                  p->connect_attempts, p->connecting_limit_waits, p->preconnects_total(),
                                  p->preconnect_failures_total()});
        }
        return out;
    };
    metrics_shard total;
    std::map<std::string, upstream_view> upstreams;
    auto on_first_worker = [](worker* w) { // its configuration and local store, read on its thread
        std::vector<tenant_quota_line> lines;
        const auto& cfg = w->tenants().config();
        const bool exact = cfg.quota_store.type == config::store_kind::memory;
        for (const auto& [name, t] : cfg.tenants) {
            auto view = w->local_quota().quota_view(name);
            if (!view) continue;
            if (t.rate) view->rate_per_second = t.rate->requests_per_second;
            lines.push_back({name, *view, exact});
        }
        return lines;
    };
    auto* first = workers_.front().get();
    auto quotas = first->context().get_executor().running_in_this_thread()
                      ? on_first_worker(first)
                      : net::post(first->context(), net::use_future([first, &on_first_worker] { return on_first_worker(first); })).get();
    for (auto& w : workers_) {
        auto part = w->context().get_executor().running_in_this_thread()
                        ? snapshot(w.get())
                        : net::post(w->context(), net::use_future([wp = w.get(), &snapshot] { return snapshot(wp); })).get();
        total.add(part.first);
        for (const auto& u : part.second) {
            auto& sum = upstreams[u.name];
            sum.name = u.name;
            sum.connects += u.connects;
            sum.resumed += u.resumed;
            sum.connect_waits += u.connect_waits;
            sum.connecting_limit_waits += u.connecting_limit_waits;
            sum.preconnects += u.preconnects;
            sum.preconnect_failures += u.preconnect_failures;
            sum.active += u.active;
            sum.idle += u.idle;
            sum.connecting += u.connecting;
            sum.circuit_open = sum.circuit_open || u.circuit_open;
        }
    }
    std::vector<upstream_view> views;
    for (auto& [name, u] : upstreams) views.push_back(u);
    return render_metrics(total, views, *store_counters_, quotas); // not usage_: reload() replaces it on another thread
}

std::vector<std::string> server::reload(const std::string& config_path)
{
    std::lock_guard lock(reload_mutex_);
    auto loaded = config::load_config_file(config_path);
    if (!loaded.ok()) {
        spdlog::error("reload of {} rejected; the current configuration stays in force:", config_path);
        for (const auto& p : loaded.problems) spdlog::error("  {}", p);
        return loaded.problems;
    }
    auto next = std::move(*loaded.config);
    // What the process was started with stays until a restart.
    auto keep = [&](auto config::gateway_config::*section, const char* name) {
        if (!(next.*section == (*cfg_).*section)) spdlog::warn("reload: {} changes need a restart; keeping the current", name);
        next.*section = (*cfg_).*section;
    };
    keep(&config::gateway_config::server, "server");
    keep(&config::gateway_config::admin, "admin");
    keep(&config::gateway_config::quota_store, "quota_store");
    auto cfg = std::make_shared<const config::gateway_config>(std::move(next));
    std::map<std::string, std::shared_ptr<net::ssl::context>> tls;
    try {
        tls = upstream_tls_contexts(*cfg);
    } catch (const std::exception& e) {
        spdlog::error("reload of {} rejected: {}", config_path, e.what());
        return {e.what()};
    }
    auto tenants = std::make_shared<const tenant_directory>(cfg);
    std::map<std::string, std::vector<std::string>> tenant_apps;
    for (const auto& [name, t] : cfg->tenants) tenant_apps[name] = t.apps;
    auto usage = std::make_shared<usage_counters>(tenant_apps, usage_.get());
    auto local = local_quota_->reconfigured(*cfg, usage);
    // Every worker switches before reload() returns, so the next request sees the new
    // config. The calling worker (POST /admin/reload runs on one) switches inline.
    std::vector<std::future<void>> switched;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
        auto& w = workers_[i];
        std::shared_ptr<quota_store> quotas = local;
        if (cfg->quota_store.type == config::store_kind::redis) quotas = std::make_shared<redis_quota_store>(redis_links_[i], cfg, usage, local);
        if (w->context().get_executor().running_in_this_thread())
            w->reconfigure(tenants, tls, usage, local, quotas);
        else
            switched.push_back(net::post(w->context(), net::use_future([wp = w.get(), tenants, tls, usage, local, quotas] {
                wp->reconfigure(tenants, tls, usage, local, quotas);
            })));
    }
    for (auto& f : switched) f.wait();
    cfg_ = cfg;
    usage_ = usage;
    local_quota_ = local;
    spdlog::info("configuration reloaded from {} ({} tenants, {} apps, {} upstreams)", config_path, cfg->tenants.size(),
                 cfg->apps.size(), cfg->upstreams.size());
    return {};
}

std::uint64_t server::upstream_connect_attempts()
{
    std::uint64_t total = 0;
    for (auto& w : workers_) {
        auto f = net::post(w->context(), net::use_future([wp = w.get()] {
            std::uint64_t n = 0;
            for (const auto& [name, p] : wp->pools()) n += p->connect_attempts;
            return n;
        }));
        total += f.get();
    }
    return total;
}

} // namespace gw::gateway
