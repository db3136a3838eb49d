// Per-worker pool of keep-alive HTTP/1.1 connections to one upstream (plain or TLS with
// SNI and peer + host-name verification). No pipelining: one request per connection at a
// time. A connection goes back to the pool only when its exchange ended cleanly and the
// caller says so; otherwise it is closed. Requests open at most `max_connecting` connections
// at once; others wait for one of them or a release. With `preconnect_ratio` above 1 the pool also opens
// connections ahead of demand (core::preconnect_plan): each runs as a task of its own and
// joins the idle list when ready. Not thread-safe: used on its worker's executor.
#pragma once

#include "config/gateway_config.hpp"
#include "core/address_cache.hpp"
#include "core/preconnect.hpp"
#include "core/retry.hpp"
#include "gateway/net.hpp"
#include "gateway/recycled_blocks.hpp"
#include "gateway/upstream/tls_socket.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>

namespace gw::gateway {

using clock = std::chrono::steady_clock;

// One upstream connection: plain() for http upstreams (a Beast stream, whose deadlines
// Beast's HTTP operations honour), tls() for https ones (a TLS socket with deadlines of its
// own); socket() is the TCP socket of either.
class upstream_connection
{
public:
    upstream_connection(net::any_io_executor ex, net::ssl::context* tls, std::shared_ptr<tls_session_slot> sessions = nullptr);

    bool is_tls() const { return tls_ != nullptr; }
    net::ip::tcp::socket& socket() { return tls_ ? tls_->socket() : plain_->socket(); }
    beast::tcp_stream& plain() { return *plain_; }
    tls_socket& tls() { return *tls_; }
    beast::flat_buffer& buffer() { return buffer_; }

    // The deadline of the connection's reads and writes (either kind of stream).
    void expires_at(clock::time_point t);
    void expires_after(clock::duration d) { expires_at(clock::now() + d); }
    void expires_never();

    // Connects to the first reachable of `endpoints` and (TLS) handshakes within `timeout`.
    net::awaitable<error_code> connect(const config::upstream_config& u, std::chrono::milliseconds timeout,
                                       std::vector<net::ip::tcp::endpoint> endpoints);
    // False when the peer has closed or sent unexpected bytes while the connection was idle.
    bool looks_alive();
    void close();

    clock::time_point idle_since{};
    std::uint64_t requests = 0;

private:
    std::unique_ptr<beast::tcp_stream> plain_; // http upstreams
    std::unique_ptr<tls_socket> tls_;          // https upstreams
    beast::flat_buffer buffer_;
};

// True when two upstream settings can share connections and breaker state.
bool same_connection_settings(const config::upstream_config& a, const config::upstream_config& b);

// A TLS client context for an upstream's settings (CA file or system store, verification).
std::shared_ptr<net::ssl::context> make_upstream_tls(const config::upstream_config& u);

// Made with std::make_shared: tasks it starts (connections opened ahead) hold it.
class upstream_pool : public std::enable_shared_from_this<upstream_pool>
{
public:
    upstream_pool(net::any_io_executor ex, const config::upstream_config& cfg, std::shared_ptr<net::ssl::context> tls);
    ~upstream_pool();

    // A borrowed connection, back in its pool when the lease ends however it ends:
    // closed, unless give_back(true) said it can be reused. The pool must outlive the
    // lease (whoever acquires holds the pool's shared_ptr for longer).
    class lease
    {
    public:
        lease() = default;
        lease(upstream_pool* pool, std::unique_ptr<upstream_connection> conn, bool reused)
            : pool_(pool), conn_(std::move(conn)), reused_(reused)
        {
        }
        lease(lease&& other) noexcept = default;
        lease& operator=(lease&& other) noexcept
        {
            give_back(false);
            pool_ = other.pool_;
            conn_ = std::move(other.conn_);
            reused_ = other.reused_;
            return *this;
        }
        ~lease() { give_back(false); }
        lease(const lease&) = delete;
        lease& operator=(const lease&) = delete;

        upstream_connection& operator*() const { return *conn_; }
        upstream_connection* operator->() const { return conn_.get(); }
        bool reused() const { return reused_; } // came from the idle list (may turn out dead)
        // Returns the connection now (kept for reuse when `reusable`); the lease is empty after.
        void give_back(bool reusable)
        {
            if (conn_) pool_->release(std::move(conn_), reusable);
        }

    private:
        upstream_pool* pool_ = nullptr;
        std::unique_ptr<upstream_connection> conn_;
        bool reused_ = false;
    };

    // An idle connection, or one being opened ahead of demand that nobody else waits for,
    // or a new one while fewer than max_connections are open, or the first one released
    // before `deadline` (then error::timeout).
    net::awaitable<std::tuple<error_code, lease>> acquire(clock::time_point deadline);

private:
    // Takes a connection back (a lease's give_back): kept for reuse when `reusable`, else closed.
    void release(std::unique_ptr<upstream_connection> conn, bool reusable);

public:
    // Closes idle connections and stops the reaper (shutdown).
    void stop();

    std::uint64_t connects_total() const { return connects_; } // preconnects included
    std::uint64_t resumed_total() const { return resumed_; }
    std::uint64_t preconnects_total() const { return preconnects_; }
    std::uint64_t preconnect_failures_total() const { return preconnect_failures_; }

    // Resilience state of this upstream on this worker.
    core::circuit_breaker breaker;
    core::retry_budget budget;
    // Requests that found no idle connection and connected, successful or not (no attempts
    // while the circuit is open; connections opened ahead are not attempts).
    std::uint64_t connect_attempts = 0;
    // Requests that waited because max_connecting connections were being opened (once per
    // request): the sign that new connections are asked for faster than that many set-ups allow.
    std::uint64_t connecting_limit_waits = 0;
    // Finds a host's addresses: the system's resolver unless a test substitutes its own.
    using address_lookup = std::function<net::awaitable<std::tuple<error_code, std::vector<net::ip::tcp::endpoint>>>(
        net::any_io_executor ex, std::string host, std::string port)>;
    // Before the first acquire; `ttl`: how long found addresses are fresh (core::address_cache).
    void set_address_lookup(address_lookup lookup, std::chrono::nanoseconds ttl);
    std::uint64_t address_lookups_total() const { return lookups_; }

    int open() const { return open_; }
    int connecting() const { return connecting_; } // being opened by requests (max_connecting)
    int leased() const { return leased_; }
    std::size_t idle() const { return idle_.size(); }
    const config::upstream_config& config() const { return cfg_; }

private:
    net::awaitable<void> reap_idle();
    // The addresses to connect to by `connect_by` (core::address_cache decides when to look
    // them up; one lookup at a time, which asio runs on a helper thread). A caller that must
    // wait for the lookup waits until `connect_by` when it has no address, or half of the
    // time left when it has addresses to fall back on; then it takes what the cache has.
    net::awaitable<std::tuple<error_code, std::vector<net::ip::tcp::endpoint>>> endpoints(clock::time_point connect_by);
    // One lookup; `self` keeps the pool alive until the resolver answers.
    static net::awaitable<void> look_up(std::shared_ptr<upstream_pool> self);
    void wake_one_waiter();
    void wake_one_slot_waiter(); // the first waiting for a free slot (not a claimant)
    void unlist(net::steady_timer* timer); // a waiter that ends without being woken
    // Wakes the first claimants while more wait than connections are being opened ahead
    // (one ended and went to a longer waiter, or failed).
    void wake_unbacked_claims();
    // Starts the connections the preconnect plan wants beyond those open (after every
    // acquire and release), at most max_opening_ahead at once; none while requests wait
    // for a free slot (they come first), the circuit is not closed or the pool stopped.
    void preconnect();
    // One connection opened ahead of demand; `self` keeps the pool alive while it connects
    // (a reload may drop a pool whose preconnects are under way).
    net::awaitable<void> open_ahead(std::shared_ptr<upstream_pool> self);
    // A new connection's TLS session and counters.
    void count_connect(upstream_connection& conn);

    net::any_io_executor ex_;
    config::upstream_config cfg_;
    std::shared_ptr<net::ssl::context> tls_;
    std::shared_ptr<tls_session_slot> sessions_ = std::make_shared<tls_session_slot>(); // resumption, this worker
    std::deque<std::unique_ptr<upstream_connection>> idle_; // back = most recently used
    struct waiter
    {
        net::steady_timer* timer;
        bool claims; // waits for a connection being opened ahead, not for a free slot
        bool* woken; // in the waiting frame: set when taken off the list to be woken
    };
    // Nodes from the recycled blocks: a saturated pool lists a waiter per request.
    using waiter_list = std::list<waiter, block_allocator<waiter>>;
    waiter_list waiters_; // FIFO
    int claims_ = 0;      // listed waiters that claim a connection being opened ahead
    void wake(waiter_list::iterator it);
    waiter_list::iterator unlist(waiter_list::iterator it); // the claims count follows
    net::steady_timer reaper_;
    int open_ = 0;   // idle + leased + connecting
    int connecting_ = 0; // being opened by acquire() (not ahead), at most max_connecting
    int leased_ = 0; // held by leases
    int opening_ahead_ = 0; // preconnects under way (in open_)
    core::preconnect_plan preconnect_plan_;
    std::uint64_t connects_ = 0;
    std::uint64_t resumed_ = 0;
    std::uint64_t preconnects_ = 0;
    std::uint64_t preconnect_failures_ = 0;
    address_lookup lookup_;
    core::address_cache<net::ip::tcp::endpoint> addresses_;
    error_code lookup_error_;                      // of the last lookup
    std::vector<net::steady_timer*> lookup_waiters_; // callers waiting for the running lookup
    std::uint64_t lookups_ = 0;
    bool stopped_ = false;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

} // namespace gw::gateway
