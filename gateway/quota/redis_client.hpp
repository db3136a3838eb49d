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
#pragma once

#include "config/gateway_config.hpp"
#include "config/redis_url.hpp"
#include "gateway/net.hpp"
#include "gateway/quota/redis_connection.hpp"
#include "gateway/quota/redis_slots.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace gw::gateway {

using config::redis_target;

struct redis_client_options
{
    redis_target target;
    std::shared_ptr<net::ssl::context> tls; // rediss://
    std::string tls_name;                   // verified and sent as SNI for every node ("" = each node's host)
    bool verify_tls = true;
    std::chrono::milliseconds timeout{20};  // a call's deadline when it names none
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

    net::any_io_executor ex_;
    redis_client_options options_;
    mode mode_ = mode::unknown;
    redis_slot_map slots_; // node 0 is the URL's node
    std::vector<node_state> nodes_;
    bool refreshing_ = false;
    clock::time_point next_refresh_{};
};

} // namespace gw::gateway
