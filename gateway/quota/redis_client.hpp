// An Asio-native Redis client for one worker: standalone Redis or Redis Cluster, plain or
// TLS. Each node gets one multiplexed connection (redis_connection) that concurrent
// callers share, so a call never waits for a free connection: it waits only for its
// replies, within its own deadline. hiredis only parses RESP (commands are written by
// append_redis_command); all socket I/O is Asio's.
//
// The first call asks the URL's node for CLUSTER SLOTS: a node without cluster support
// makes this a standalone client; otherwise commands are routed by the hash slot of
// their first key, MOVED updates the slot and triggers a refresh of the whole map, ASK
// sends one command with ASKING, TRYAGAIN (a slot migrating under a multi-key script) waits
// briefly and resends. A redirected command was not executed, so resending it cannot count
// anything twice. A failed node connect backs off (50 ms growing to 200 ms) and calls to
// it fail fast meanwhile.
//
// With Redis Sentinel (options.sentinels) the client is standalone, and its node is the
// master the sentinels name: a watcher coroutine asks them (in turn, until one answers)
// from start() or the first call (calls wait for the answer within their deadlines), then every
// second, and at once (at most every 100 ms) when a call to the master fails or is refused
// as READONLY (a former master that became a replica); a sentinel that still names the
// doubted master hands the next question to the next sentinel. While none names a master
// the questions slow down to one every 2 s. A question asks for the master's address
// and its configuration epoch (SENTINEL get-master-addr-by-name and SENTINEL MASTER, one
// round trip): an answer from a sentinel behind the configuration followed is passed over
// (sentinel_follower). The client also subscribes to every sentinel's failover events
// (a connection each, PINGed at each question, replaced when it fails or stalls): it
// follows +promoted-slave (from the sentinel leading the failover) and +switch-master as
// they come rather than up to a poll later, and from +failover-state-send-slaveof-noone
// (the leader is about to promote a replica of the master in use) until the new master is
// followed, at most 5 s, it sends nothing to the old one, whose writes the new master would
// never see: calls wait for the new master within their deadlines and fail with
// failing_over (nothing sent). A sentinel that refuses the subscription (an ACL user
// without the channels) is logged, and the failovers it leads are followed by asking.
// A new address closes the old connection; calls
// meanwhile fail and the store's on_error decides. Sentinels are verified by their
// configured host names, the master by tls_server_name or the address a sentinel gave.
// The watcher holds the client weakly and ends with close().
#pragma once

#include "config/gateway_config.hpp"
#include "config/redis_url.hpp"
#include "gateway/net.hpp"
#include "gateway/quota/redis_connection.hpp"
#include "gateway/quota/redis_slots.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace gw::gateway {

using config::redis_target;
class sentinel_follower;
struct sentinel_master;

struct redis_client_options
{
    redis_target target;
    std::shared_ptr<net::ssl::context> tls; // rediss://
    std::string tls_name;                   // verified and sent as SNI for every node ("" = each node's host)
    bool verify_tls = true;
    std::chrono::milliseconds timeout{20};  // a call's deadline when it names none
    // Redis Sentinel: the sentinels to ask for the master named target.host, and their
    // credentials (db unused). Empty: target is the node itself.
    std::vector<redis_node_address> sentinels;
    config::redis_target sentinel_session;
    // How often the sentinels are asked besides announcements (a subscription silent for
    // three of these is replaced). Not configurable: tests lengthen or shorten it.
    std::chrono::milliseconds sentinel_poll{1000};
};

// The client TLS context for `cfg` (nullptr for redis://); throws on unreadable files.
std::shared_ptr<net::ssl::context> make_redis_tls(const config::quota_store_config& cfg);
redis_client_options redis_options(const config::quota_store_config& cfg, std::shared_ptr<net::ssl::context> tls);

class redis_client : public std::enable_shared_from_this<redis_client>
{
public:
    using command = std::vector<std::string>;
    using clock = redis_connection::clock;

    redis_client(net::any_io_executor ex, redis_client_options options);
    ~redis_client();
    redis_client(const redis_client&) = delete;
    redis_client& operator=(const redis_client&) = delete;

    // Sends `commands` (pipelined: one round trip per node they go to) and returns their
    // replies in order; error replies are values, not errors. The caller keeps `commands`
    // alive until the call returns (it awaits it at once).
    net::awaitable<std::tuple<error_code, std::vector<redis_value>>> exec(const std::vector<command>& commands);
    net::awaitable<std::tuple<error_code, std::vector<redis_value>>> exec(const std::vector<command>& commands, clock::time_point deadline);

    // With Sentinel, starts asking the sentinels for the master now rather than when the
    // first call comes (once; after construction, as it needs the client's shared_ptr).
    void start();
    // Ends every connection (calls in flight fail).
    void close();
    bool in_cluster() const { return mode_ == mode::cluster; }
    std::chrono::milliseconds timeout() const { return options_.timeout; }

private:
    enum class mode { unknown, standalone, cluster };
    struct node_state
    {
        std::shared_ptr<redis_connection> connection;
        clock::time_point retry_at{};
        std::chrono::milliseconds backoff{0};
    };

    net::awaitable<error_code> discover(clock::time_point deadline);
    int node_for(const command& cmd) const;
    // The node's live connection, a new one, or nullptr with `why` (connects backing off,
    // or the connection stalled: nothing sent on it answers).
    std::shared_ptr<redis_connection> connection(int node, error_code& why);
    // One call on one node, waited for; a connection that read nothing for too long goes.
    net::awaitable<error_code> call_node(int node, std::string wire, std::size_t replies, clock::time_point deadline,
                                         std::vector<redis_value>& out);
    // After a failed call: drops a connection that read nothing for too long, and in a
    // cluster asks for a new slot map (a master may have failed over).
    void note_failure(redis_connection& conn, error_code ec);
    net::awaitable<error_code> follow_redirects(const command& cmd, int sent_to, redis_value& reply, clock::time_point deadline);
    void request_refresh();
    static net::awaitable<void> refresh(std::shared_ptr<redis_client> self);

    // Sentinel.
    bool with_sentinels() const { return !options_.sentinels.empty(); }
    // Waits (up to `deadline`) until the watcher has found the master, or the new one while
    // a failover fences the old; starts it first. Fails with no_master or failing_over:
    // nothing was sent.
    net::awaitable<error_code> await_master(clock::time_point deadline);
    // Asks the watcher to ask the sentinels now (a call to the master failed or was refused).
    void doubt_master();
    static net::awaitable<void> watch_sentinels(std::weak_ptr<redis_client> client, std::shared_ptr<net::steady_timer> wake);
    // The master and its epoch from the first sentinel that names it (each gets a second).
    net::awaitable<std::optional<sentinel_master>> ask_sentinels();
    // Asks the watcher to ask a sentinel now (not doubting the master: no rotation).
    void ask_sentinels_soon();
    // `how`: the log's word on where the address came from.
    void use_master(const redis_node_address& master, std::string_view how);
    // Subscribes to every sentinel's failover events (sentinel_channels): PINGs live
    // subscriptions, replaces failed or stalled ones (a sentinel that is down at most once
    // a second; after a refusal, once a minute).
    void keep_subscriptions();
    // A reply on sentinel `sentinel`'s subscription: the confirmation first (anything else:
    // a refusal, logged, and the subscription closed), then the events, followed as
    // sentinel_follower says. Runs inside that connection's reader: it submits nothing on it.
    void on_sentinel_message(std::size_t sentinel, const redis_value& message);
    void wake_watcher();
    redis_endpoint sentinel_endpoint(const redis_node_address& at) const;
    // Closes the connection to the sentinel asked last; the next one is asked next.
    void next_sentinel();

    net::any_io_executor ex_;
    redis_client_options options_;
    mode mode_ = mode::unknown;
    redis_slot_map slots_; // node 0 is the URL's node
    std::vector<node_state> nodes_;
    bool refreshing_ = false;
    clock::time_point next_refresh_{};
    bool closed_ = false;
    // Sentinel: the watcher's timer (cancelled to wake it), the calls waiting until the
    // master is first known, the connection to the sentinel that answered last.
    std::shared_ptr<net::steady_timer> sentinel_wake_;
    std::vector<std::shared_ptr<redis_call>> master_waiters_;
    std::shared_ptr<redis_connection> sentinel_connection_;
    std::unique_ptr<sentinel_follower> follower_;
    struct subscription
    {
        std::shared_ptr<redis_connection> connection;
        bool confirmed = false;
        clock::time_point retry_at{};
    };
    std::vector<subscription> subscriptions_; // one per sentinel
    bool epochs_refused_ = false;             // a sentinel did not answer SENTINEL MASTER (logged once)
    bool ask_soon_ = false; // an answer or announcement that did not fit: ask again without waiting the poll out
    std::size_t sentinel_index_ = 0;
    bool master_doubted_ = false;   // a call failed on the master since the sentinels were asked
    bool sentinel_polling_ = false; // the watcher waits out its second: a doubt may wake it
    bool sentinels_failing_ = false; // none named the master last time (logged once)
};

} // namespace gw::gateway
