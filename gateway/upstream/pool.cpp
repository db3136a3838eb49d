#include "gateway/upstream/pool.hpp"

#include "gateway/ops/spawn.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/error.hpp>

#include <algorithm>
#include <openssl/err.h>
#include <malloc.h>
#include <sys/socket.h>

namespace gw::gateway {

namespace ssl = net::ssl;
using tcp = net::ip::tcp;

constexpr auto probe_after = std::chrono::seconds(1);
// Connections opened ahead of demand at once, per pool: a burst's spares come in steps
// rather than as hundreds of handshakes (and address lookups) at the same moment.
constexpr int max_opening_ahead = 16;
// How long found upstream addresses are fresh, and how soon a failed lookup is tried again.
constexpr auto resolve_ttl = std::chrono::seconds(30);
constexpr auto lookup_retry_after = std::chrono::seconds(1);

namespace {

net::awaitable<std::tuple<error_code, std::vector<tcp::endpoint>>> resolve(net::any_io_executor ex, std::string host, std::string port)
{
    tcp::resolver resolver(ex);
    auto [ec, results] = co_await resolver.async_resolve(host, port, use_nothrow);
    std::vector<tcp::endpoint> found;
    if (!ec)
        for (const auto& r : results) found.push_back(r.endpoint());
    co_return std::tuple{ec, std::move(found)};
}

} // namespace

upstream_connection::upstream_connection(net::any_io_executor ex, ssl::context* tls, std::shared_ptr<tls_session_slot> sessions)
{
    if (tls)
        tls_ = std::make_unique<tls_socket>(tcp::socket(ex), *tls, std::move(sessions));
    else
        plain_ = std::make_unique<beast::tcp_stream>(ex);
}

void upstream_connection::expires_at(clock::time_point t)
{
    if (tls_)
        tls_->expires_at(t);
    else
        plain_->expires_at(t);
}

void upstream_connection::expires_never()
{
    if (tls_)
        tls_->expires_never();
    else
        plain_->expires_never();
}

net::awaitable<error_code> upstream_connection::connect(const config::upstream_config& u, std::chrono::milliseconds timeout,
                                                       std::vector<tcp::endpoint> endpoints)
{
    if (!tls_) {
        plain_->expires_after(timeout);
        auto [cec, ep] = co_await plain_->async_connect(endpoints, use_nothrow);
        plain_->expires_never();
        if (cec) co_return cec;
    } else {
        // The deadline cancels the connect under way, and no further address is tried after it.
        tls_->expires_after(timeout);
        const auto in_time = [this](const error_code&, const tcp::endpoint&) { return !tls_->expired(); };
        auto [cec, ep] = co_await net::async_connect(tls_->socket(), endpoints, in_time, use_nothrow);
        const bool late = tls_->expired();
        tls_->expires_never();
        if (late) {
            close(); // the deadline only cancelled the connect: the socket does not stay open
            co_return error_code(beast::error::timeout);
        }
        if (cec) co_return cec;
    }
    error_code ignored;
    socket().set_option(tcp::no_delay(true), ignored);
    if (tls_) {
        if (!tls_->set_peer(u.host, u.verify_tls))
            co_return error_code(static_cast<int>(::ERR_get_error()), net::error::get_ssl_category());
        tls_->expires_after(timeout);
        auto [hec] = co_await tls_->async_handshake(use_nothrow);
        tls_->expires_never();
        if (hec) co_return hec;
    }
    co_return error_code{};
}

bool upstream_connection::looks_alive()
{
    auto& sock = socket();
    if (!sock.is_open()) return false;
    if (tls_ && tls_->holds_unread_bytes()) return false; // read already, nobody asked for them
    char byte;
    auto n = ::recv(sock.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    // 0: the peer closed; >0: bytes nobody asked for (a stray response or TLS alert).
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

void upstream_connection::close()
{
    error_code ignored;
    socket().shutdown(tcp::socket::shutdown_both, ignored);
    socket().close(ignored);
}

bool same_connection_settings(const config::upstream_config& a, const config::upstream_config& b)
{
    // What the pool and its breaker use; the relay's settings (max_sse_event_bytes,
    // stream_idle_timeout_ms) are read from the request's own configuration.
    return a.url == b.url && a.ca_file == b.ca_file && a.verify_tls == b.verify_tls && a.max_connections == b.max_connections &&
           a.max_connecting == b.max_connecting && a.preconnect_ratio == b.preconnect_ratio &&
           a.idle_timeout_ms == b.idle_timeout_ms && a.connect_timeout_ms == b.connect_timeout_ms &&
           a.response_timeout_ms == b.response_timeout_ms && a.retry == b.retry && a.circuit_breaker == b.circuit_breaker;
}

std::shared_ptr<ssl::context> make_upstream_tls(const config::upstream_config& u)
{
    if (!u.tls) return nullptr;
    auto ctx = make_client_tls(u.ca_file, u.verify_tls);
    enable_session_resumption(*ctx);
    return ctx;
}

upstream_pool::upstream_pool(net::any_io_executor ex, const config::upstream_config& cfg, std::shared_ptr<ssl::context> tls)
    : breaker(cfg.circuit_breaker.failures, cfg.circuit_breaker.open_ms),
      budget(cfg.retry.budget_percent),
      ex_(ex),
      cfg_(cfg),
      tls_(std::move(tls)),
      reaper_(ex),
      // A peak counts for one to two windows: at most as long as a spare may idle.
      preconnect_plan_(cfg.preconnect_ratio, cfg.max_connections,
                       std::min<clock::duration>(std::chrono::seconds(10), cfg.idle_timeout_ms / 2)),
      lookup_(resolve),
      addresses_(resolve_ttl, lookup_retry_after)
{
    net::co_spawn(ex_, reap_idle(), log_failure("idle connection reaper"));
}

void upstream_pool::set_address_lookup(address_lookup lookup, std::chrono::nanoseconds ttl)
{
    lookup_ = std::move(lookup);
    addresses_ = core::address_cache<tcp::endpoint>(ttl, lookup_retry_after);
}

upstream_pool::~upstream_pool()
{
    *alive_ = false;
}

net::awaitable<std::tuple<error_code, upstream_pool::lease>> upstream_pool::acquire(clock::time_point deadline)
{
    bool waited_for_connecting = false;
    for (;;) {
        if (stopped_) co_return std::tuple{error_code(net::error::operation_aborted), lease{}};
        while (!idle_.empty()) {
            auto conn = std::move(idle_.back());
            idle_.pop_back();
            auto idle_for = clock::now() - conn->idle_since;
            bool expired = idle_for >= cfg_.idle_timeout_ms;
            // A connection idle for less than probe_after skips the liveness probe (a syscall
            // per request on a busy pool); if the server did close it, the request fails before
            // any response byte and is retried once on a fresh connection (forward()).
            if (!expired && (idle_for < probe_after || conn->looks_alive())) {
                ++leased_;
                preconnect();
                co_return std::tuple{error_code{}, lease{this, std::move(conn), true}};
            }
            conn->close();
            --open_;
        }
        // A connection being opened ahead will be ready sooner than one started now: wait for
        // one of them (one each) rather than open another.
        const bool claim = opening_ahead_ > claims_;
        if (!claim && open_ < cfg_.max_connections && connecting_ < cfg_.max_connecting) {
            ++open_;
            ++connect_attempts;
            auto alive = alive_;
            // Counted while this frame opens the connection, however it ends. Its end lets a
            // request waiting for a free slot try again when the pool has room (woken when
            // it is full, a waiter would only go to the back of the line).
            struct opening
            {
                upstream_pool* pool;
                std::shared_ptr<bool> alive;
                ~opening()
                {
                    if (!*alive) return;
                    --pool->connecting_;
                    if (pool->open_ < pool->cfg_.max_connections) pool->wake_one_slot_waiter();
                }
            } counted{this, alive};
            ++connecting_;
            auto conn = std::make_unique<upstream_connection>(ex_, tls_.get(), sessions_);
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
            const auto connect_by = clock::now() + std::min(cfg_.connect_timeout_ms, std::max(left, std::chrono::milliseconds(1)));
            auto [rec, addresses] = co_await endpoints(connect_by);
            if (!*alive) co_return std::tuple{error_code(net::error::operation_aborted), lease{}};
            if (stopped_) {
                --open_;
                co_return std::tuple{error_code(net::error::operation_aborted), lease{}};
            }
            error_code ec = rec;
            if (!ec) {
                auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(connect_by - clock::now());
                ec = co_await conn->connect(cfg_, std::max(timeout, std::chrono::milliseconds(1)), std::move(addresses));
                if (!*alive) co_return std::tuple{error_code(net::error::operation_aborted), lease{}};
                if (ec)
                    addresses_.on_connect_failed(); // the address may have moved: the next one asks first
                else
                    addresses_.on_connected();
            }
            if (ec) {
                --open_; // the slot goes to a waiter as this frame ends (`counted`)
                co_return std::tuple{ec, lease{}};
            }
            count_connect(*conn);
            ++leased_;
            preconnect();
            co_return std::tuple{error_code{}, lease{this, std::move(conn), false}};
        }
        // Wait for a release (the pool is full), for a connection being opened to be ready
        // (max_connecting are), or for the claimed connection opened ahead (woken when it is
        // ready or has failed; then the loop takes it or connects).
        if (!claim && open_ < cfg_.max_connections && !waited_for_connecting) {
            waited_for_connecting = true; // held back by max_connecting alone
            ++connecting_limit_waits;
        }
        net::steady_timer waiter(ex_);
        waiter.expires_at(deadline);
        bool woken = false; // set by whoever takes it off the list to wake it
        // Listed while this frame waits, however it ends (also destroyed unresumed at
        // shutdown): a release must never wake a timer that is gone.
        struct waiting
        {
            upstream_pool* pool;
            net::steady_timer* timer;
            std::shared_ptr<bool> alive;
            ~waiting()
            {
                if (*alive) pool->unlist(timer);
            }
        } listed{this, &waiter, alive_};
        waiters_.push_back({&waiter, claim, &woken});
        if (claim) {
            ++claims_;
            preconnect(); // a claim is demand too
        }
        auto [ec] = co_await waiter.async_wait(use_nothrow);
        if (!*listed.alive) co_return std::tuple{error_code(net::error::operation_aborted), lease{}};
        // Deadline passed, unless woken as it passed (the wake's cancel came too late to
        // change the result, but what it woke this one for is there: look once more).
        if (!ec && !woken) co_return std::tuple{error_code(beast::error::timeout), lease{}};
    }
}

net::awaitable<std::tuple<error_code, std::vector<tcp::endpoint>>> upstream_pool::endpoints(clock::time_point connect_by)
{
    const auto now = clock::now();
    const auto step = addresses_.on_use(now.time_since_epoch());
    if (step.start_lookup) {
        ++lookups_;
        // co_spawn may run the lookup to its end right here (a resolver that answers at once).
        net::co_spawn(ex_, look_up(shared_from_this()), log_failure("upstream address lookup"));
    }
    if (step.wait && addresses_.looking_up()) {
        // Woken (cancelled) when the lookup ends; listed while this frame waits, however it
        // ends: a lookup must never cancel a timer that is gone. With addresses to fall back
        // on, it waits half of the time left, so that the connect to them has the other half.
        net::steady_timer timer(ex_);
        timer.expires_at(addresses_.addresses().empty() ? connect_by : now + (connect_by - now) / 2);
        struct waiting
        {
            upstream_pool* pool;
            net::steady_timer* timer;
            std::shared_ptr<bool> alive;
            ~waiting()
            {
                if (*alive) std::erase(pool->lookup_waiters_, timer);
            }
        } listed{this, &timer, alive_};
        lookup_waiters_.push_back(&timer);
        co_await timer.async_wait(use_nothrow);
        if (!*listed.alive) co_return std::tuple{error_code(net::error::operation_aborted), std::vector<tcp::endpoint>{}};
    }
    if (!addresses_.addresses().empty()) co_return std::tuple{error_code{}, addresses_.addresses()};
    // No address yet: the lookup failed, or it is still running at `connect_by`.
    const error_code ec = addresses_.looking_up() || !lookup_error_ ? error_code(beast::error::timeout) : lookup_error_;
    co_return std::tuple{ec, std::vector<tcp::endpoint>{}};
}

net::awaitable<void> upstream_pool::look_up(std::shared_ptr<upstream_pool> self)
{
    // However the lookup ends (an exception, or this frame destroyed unresumed at
    // shutdown), the cache hears of it and the waiters are woken: otherwise no lookup
    // would ever start again.
    struct ending
    {
        upstream_pool& pool;
        bool reported = false;
        ~ending()
        {
            if (reported) return;
            pool.addresses_.on_lookup({}, clock::now().time_since_epoch());
            pool.lookup_error_ = net::error::host_not_found;
            for (auto* waiter : pool.lookup_waiters_) waiter->cancel();
        }
    } end{*self};
    const auto port = std::to_string(self->cfg_.port);
    auto [ec, found] = co_await self->lookup_(self->ex_, self->cfg_.host, port);
    if (!ec && found.empty()) ec = net::error::host_not_found;
    if (ec) found.clear();
    const bool had_failed = self->addresses_.failed_lookups() > 0;
    self->addresses_.on_lookup(found, clock::now().time_since_epoch());
    self->lookup_error_ = ec;
    end.reported = true;
    if (ec && !had_failed)
        spdlog::warn("upstream {}: address lookup failed ({}); {}", self->cfg_.host, ec.message(),
                     self->addresses_.addresses().empty() ? "no address to connect to" : "connecting to the addresses found before");
    else if (!ec && had_failed)
        spdlog::info("upstream {}: address lookup works again", self->cfg_.host);
    for (auto* waiter : self->lookup_waiters_) waiter->cancel();
}

void upstream_pool::release(std::unique_ptr<upstream_connection> conn, bool reusable)
{
    if (!conn) return;
    --leased_;
    const bool kept = reusable && !stopped_ && conn->socket().is_open();
    if (kept) {
        conn->idle_since = clock::now();
        conn->expires_never(); // an idle connection has no deadline
        conn->buffer().clear();
        idle_.push_back(std::move(conn));
    } else {
        conn->close();
        --open_;
    }
    preconnect(); // before a waiter is woken: while one waits, a freed slot is the waiter's
    // A connection back in the idle list goes to the longest waiter; a freed slot to the
    // longest waiter for a slot (a claimant's connection is still being opened).
    if (kept)
        wake_one_waiter();
    else
        wake_one_slot_waiter();
}

void upstream_pool::count_connect(upstream_connection& conn)
{
    ++connects_;
    if (conn.is_tls() && conn.tls().resumed()) ++resumed_;
}

void upstream_pool::preconnect()
{
    if (!preconnect_plan_.enabled() || stopped_) return;
    const auto now = clock::now().time_since_epoch();
    preconnect_plan_.leased(leased_ + claims_, now); // requests waiting for one opened ahead are demand too
    if (static_cast<int>(waiters_.size()) > claims_) return; // requests wait for a free slot: a slot freed is theirs
    if (breaker.current() != core::circuit_breaker::state::closed) return; // the breaker's probe decides first
    const int n = std::min({preconnect_plan_.to_open(open_, now), cfg_.max_connections - open_,
                            max_opening_ahead - opening_ahead_});
    for (int i = 0; i < n; ++i) {
        ++open_; // counted from now, so the plan and acquire() see it as opening
        ++opening_ahead_;
        net::co_spawn(ex_, open_ahead(shared_from_this()), log_failure("upstream preconnect"));
    }
}

// A connection opened ahead of demand: idle when ready, for the longest waiter if one waits
// (requests that found none idle claimed it meanwhile). A failure pauses preconnecting for
// a while and is not the breaker's business: requests that connect on their own report
// what the upstream does.
net::awaitable<void> upstream_pool::open_ahead([[maybe_unused]] std::shared_ptr<upstream_pool> self)
{
    auto conn = std::make_unique<upstream_connection>(ex_, tls_.get(), sessions_);
    const auto connect_by = clock::now() + cfg_.connect_timeout_ms;
    auto [rec, addresses] = co_await endpoints(connect_by);
    error_code ec = rec;
    if (!ec) {
        auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(connect_by - clock::now());
        ec = co_await conn->connect(cfg_, std::max(timeout, std::chrono::milliseconds(1)), std::move(addresses));
        if (ec)
            addresses_.on_connect_failed();
        else
            addresses_.on_connected();
    }
    --opening_ahead_;
    if (ec || stopped_) {
        if (ec) {
            ++preconnect_failures_;
            preconnect_plan_.failed(clock::now().time_since_epoch());
            spdlog::debug("upstream {}: a connection opened ahead of demand failed: {}", cfg_.host, ec.message());
        }
        conn->close();
        --open_;
        wake_unbacked_claims(); // a claimant of this one connects in the freed slot
        wake_one_slot_waiter();
        co_return;
    }
    count_connect(*conn);
    ++preconnects_;
    conn->idle_since = clock::now();
    idle_.push_back(std::move(conn));
    wake_one_waiter(); // the longest waiter takes it, whether it claimed this one or not
    wake_unbacked_claims();
    preconnect(); // the next step of a burst's spares, if more are wanted
}

void upstream_pool::wake_unbacked_claims()
{
    // The newest claims go first: the longest-waiting claimants keep theirs.
    for (auto it = waiters_.end(); it != waiters_.begin() && claims_ > opening_ahead_;) {
        --it;
        if (!it->claims) continue;
        auto next = std::next(it);
        wake(it); // it looks again: connects itself, or waits for a free slot
        it = next;
    }
}

upstream_pool::waiter_list::iterator upstream_pool::unlist(waiter_list::iterator it)
{
    if (it->claims) --claims_;
    return waiters_.erase(it);
}

void upstream_pool::wake(waiter_list::iterator it)
{
    *it->woken = true;
    it->timer->cancel(); // its frame resumes later and looks again
    unlist(it);
}

void upstream_pool::wake_one_waiter()
{
    if (!waiters_.empty()) wake(waiters_.begin());
}

void upstream_pool::wake_one_slot_waiter()
{
    // Claimants are not woken: the connection each claimed is still coming.
    auto it = std::find_if(waiters_.begin(), waiters_.end(), [](const waiter& w) { return !w.claims; });
    if (it != waiters_.end()) wake(it);
}

void upstream_pool::unlist(net::steady_timer* timer)
{
    auto it = std::find_if(waiters_.begin(), waiters_.end(), [timer](const waiter& w) { return w.timer == timer; });
    if (it != waiters_.end()) unlist(it);
}

void upstream_pool::stop()
{
    stopped_ = true;
    reaper_.cancel();
    for (auto& c : idle_) c->close();
    open_ -= static_cast<int>(idle_.size());
    idle_.clear();
    while (!waiters_.empty()) wake_one_waiter();
    for (auto* waiter : lookup_waiters_) waiter->cancel(); // they see the pool stopped
}

net::awaitable<void> upstream_pool::reap_idle()
{
    auto alive = alive_;
    const auto idle_timeout = cfg_.idle_timeout_ms;
    auto period = std::max(std::chrono::milliseconds(100), idle_timeout / 4);
    while (*alive && !stopped_) {
        reaper_.expires_after(period);
        co_await reaper_.async_wait(use_nothrow); // cancelled at stop: the checks below end the loop
        if (!*alive || stopped_) co_return;
        auto now = clock::now();
        bool closed_any = false;
        // Oldest first: close those idle too long or closed by the peer.
        while (!idle_.empty() && (now - idle_.front()->idle_since >= idle_timeout || !idle_.front()->looks_alive())) {
            idle_.front()->close();
            idle_.pop_front();
            --open_;
            closed_any = true;
        }
        // The pool just went quiet after load: hand the allocator's free memory back to the
        // system (glibc keeps it in per-thread arenas otherwise). Rare, and off the data path.
        if (closed_any && open_ == 0) ::malloc_trim(0);
    }
}

} // namespace gw::gateway
