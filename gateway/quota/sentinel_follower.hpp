// Which master a Redis Sentinel client follows (sans-io, no Asio): the answers it gets
// when it asks a sentinel, and the events the sentinels publish.
//
// An answer is the master's address (SENTINEL get-master-addr-by-name, which names the
// promoted replica as soon as it is promoted) and the configuration epoch it belongs to
// (SENTINEL MASTER; -1 when that was refused). A failover makes a configuration with a
// higher epoch, and a sentinel that has not heard of it (partitioned, or slow to learn)
// still names the old master under the old epoch. So an answer is stale, and the next
// sentinel is asked instead, when its epoch is below the one followed, or when it names
// the master an announcement moved away from under no higher epoch. Should every sentinel
// in turn answer stale (their state was reset, epochs start again), the best of their
// answers is followed.
//
// Announcements (+promoted-slave from the sentinel leading a failover, +switch-master from
// every sentinel at its end) are followed when they move the master in use, or when none
// is known; one that moves another address is out of date or out of order, and makes the
// client ask.
//
// A failover fences the master: when a sentinel starts promoting one of its replicas
// (+failover-state-send-slaveof-noone, published before the replica is told REPLICAOF NO
// ONE), the replica stops taking the master's writes, and whatever the master runs from
// then on is lost once it becomes a replica itself. Until a new master is followed, or
// `failover_fence` passes (a failover that stalls or is aborted), nothing is to be sent.
#pragma once

#include "gateway/quota/redis_slots.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace gw::gateway {

struct sentinel_master
{
    redis_node_address address;
    std::int64_t epoch = -1; // config-epoch; -1: unknown
};
// The replies to SENTINEL get-master-addr-by-name and SENTINEL MASTER (sent together):
// nullopt when the first names no master; the epoch is -1 when the second is not a
// SENTINEL MASTER reply with one (an ACL user allowed only the first command).
std::optional<sentinel_master> parse_sentinel_answer(const redis_value& address, const redis_value& master);

// What a sentinel publishes about master `name` on the channels a client subscribes to.
struct sentinel_event
{
    enum class kind
    {
        promotion_starts, // +failover-state-send-slaveof-noone: `to` is being promoted
        promoted,         // +promoted-slave: `to` is the master now (the leader's view)
        switched,         // +switch-master: the failover ended, `to` is the master
    };
    kind what;
    redis_node_address from, to; // the master before, the replica promoted
};
inline constexpr std::string_view sentinel_channels[] = {"+switch-master", "+promoted-slave", "+failover-state-send-slaveof-noone"};
// nullopt for anything else: another master's events, the subscription's confirmations,
// PING's answers, malformed messages.
std::optional<sentinel_event> parse_sentinel_event(const redis_value& message, std::string_view name);
// The reply SUBSCRIBE gets for its first channel when it is taken (["subscribe", channel, n]).
bool is_subscription_confirmed(const redis_value& reply);

inline constexpr auto failover_fence = std::chrono::seconds(5);

class sentinel_follower
{
public:
    using clock = std::chrono::steady_clock;
    enum class verdict
    {
        follow,   // use master() (it may be the one in use)
        ask_next, // stale: ask the next sentinel, soon
        ask_now,  // an announcement that does not fit: ask a sentinel now
    };
    explicit sentinel_follower(std::size_t sentinels) : stale_from_(sentinels, false) {}

    // The answer of sentinel `index`.
    verdict on_answer(const sentinel_master& answer, std::size_t index);
    // A replica was promoted (`promoted` or `switched` events).
    verdict on_announcement(const redis_node_address& from, const redis_node_address& to);
    // A replica of the master is being promoted: nothing goes to the master until another
    // is followed, or until `now + failover_fence`.
    void on_promotion_start(clock::time_point now) { fenced_until_ = now + failover_fence; }
    bool fenced(clock::time_point now) const { return now < fenced_until_; }
    clock::time_point fence_end() const { return fenced_until_; }
    const std::optional<redis_node_address>& master() const { return master_; }
    std::int64_t epoch() const { return epoch_; } // -1 until an answer carried one

private:
    void use(const redis_node_address& master);

    std::optional<redis_node_address> master_;
    std::optional<redis_node_address> moved_from_; // by the last announcement followed
    std::int64_t epoch_ = -1;
    std::vector<bool> stale_from_; // sentinels that answered stale since the last follow
    std::optional<sentinel_master> best_stale_;
    clock::time_point fenced_until_{};
};

} // namespace gw::gateway
