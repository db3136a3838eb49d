// Which master a Redis Sentinel client follows (sans-io, no Asio): the answers it gets
// when it asks a sentinel, and the +switch-master announcements it hears.
//
// Sentinels agree on a master by configuration epoch: a failover makes a configuration
// with a higher epoch, and a sentinel that has not heard of it yet (partitioned, or slow to
// learn) still names the old master under the old epoch. So an answer below the epoch
// followed is stale and not followed: the next sentinel is asked instead. Should every
// sentinel in turn answer below it (their state was reset, and epochs start again), the
// answer is followed.
// An announcement carries no epoch. It is followed when it moves the master the client
// uses (or none is known yet), and then the epoch followed rises by one (a failover's
// epoch is above the one it replaces); an announcement about another address is out of
// date or out of order, and makes the client ask.
//
// A failover fences the master: when a sentinel starts promoting one of its replicas
// (+failover-state-send-slaveof-noone, published before the replica is told REPLICAOF NO
// ONE), the replica stops taking the master's writes, so whatever the master runs from
// then on is lost once it becomes a replica itself. Until a new master is followed, or
// `failover_fence` passes (a failover that stalls or is aborted), nothing is sent: calls
// wait for the new master within their deadlines, and on_error decides for admissions.
#pragma once

#include "gateway/quota/redis_slots.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace gw::gateway {

// A sentinel's view of a master (SENTINEL MASTER <name>).
struct sentinel_master
{
    redis_node_address address;
    std::int64_t epoch = 0; // config-epoch
};
// The reply to SENTINEL MASTER <name> (RESP2: field, value, field, value…): nullopt when
// it is not one with an address and an epoch (an error: the sentinel knows no such master).
std::optional<sentinel_master> parse_sentinel_master(const redis_value& reply);

// A message published on +switch-master (["message", "+switch-master", "<name> <old host>
// <old port> <new host> <new port>"]) about master `name`; nullopt for anything else
// (another master, the subscription's confirmation, PING's answer, a malformed message).
struct master_switch
{
    redis_node_address from, to;
};
std::optional<master_switch> parse_switch_master(const redis_value& message, std::string_view name);
// The reply SUBSCRIBE +switch-master gets when it is taken (["subscribe", channel, count]).
bool is_switch_subscription(const redis_value& reply);
// A message published on +failover-state-send-slaveof-noone ("slave <host:port> <host>
// <port> @ <name> <master host> <master port>") about a replica of master `name`.
bool is_promotion_of_replica(const redis_value& message, std::string_view name);

inline constexpr auto failover_fence = std::chrono::seconds(5);

class sentinel_follower
{
public:
    enum class verdict
    {
        follow,   // use master() (it may be the one in use)
        ask_next, // stale: ask the next sentinel, soon
        ask_now,  // an announcement that does not fit: ask a sentinel now
    };
    using clock = std::chrono::steady_clock;
    explicit sentinel_follower(std::size_t sentinels) : sentinels_(sentinels) {}

    verdict on_answer(const sentinel_master& answer);
    verdict on_announcement(const master_switch& s);
    // A replica of the master is being promoted: nothing goes to the master until another
    // is followed, or until `now + failover_fence`.
    void on_promotion(clock::time_point now) { fenced_until_ = now + failover_fence; }
    bool fenced(clock::time_point now) const { return now < fenced_until_; }
    const std::optional<redis_node_address>& master() const { return master_; }
    std::int64_t epoch() const { return epoch_; } // -1 until an answer came

private:
    std::size_t sentinels_;
    std::optional<redis_node_address> master_;
    std::int64_t epoch_ = -1;
    std::size_t stale_in_a_row_ = 0;
    clock::time_point fenced_until_{};
};

} // namespace gw::gateway
