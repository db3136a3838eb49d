// Redis Cluster routing facts (sans-io): the hash slot of a key (CRC16 of its hash tag, as
// the cluster specification defines it), MOVED/ASK redirections, and the slot map read from
// CLUSTER SLOTS. The store's keys carry hash tags ({t:<tenant>}, {a:<app>}) so that every
// script touches one slot; ownership records ({o:<kind>:<id>}) are hashed on themselves.
#pragma once

#include "gateway/quota/resp_reader.hpp"

#include <array>
#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gw::gateway {

inline constexpr std::uint16_t redis_slot_count = 16384;

// A whole string of decimal digits as `Int`; nullopt for anything else (empty, a sign
// where Int has none, trailing bytes, out of range).
template <typename Int> std::optional<Int> parse_decimal(std::string_view s)
{
    Int v{};
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return v;
}

std::uint16_t redis_key_slot(std::string_view key);

struct redis_node_address
{
    std::string host;
    std::uint16_t port = 0;
    bool operator==(const redis_node_address&) const = default;
    std::string text() const;
};

// "MOVED <slot> <host>:<port>" (the slot lives there now) or "ASK <slot> <host>:<port>"
// (this one command goes there, preceded by ASKING). An empty host means the node that
// answered, whose address the caller knows.
struct redis_redirect
{
    bool ask = false;
    std::uint16_t slot = 0;
    redis_node_address to;
};
std::optional<redis_redirect> parse_redis_redirect(std::string_view error);

class redis_slot_map
{
public:
    // Reads a CLUSTER SLOTS reply from the node at `asked`; false (map unchanged) when it
    // is not one. Masters only: the store writes on every call.
    bool load(const redis_value& reply, redis_node_address asked);
    // Index into nodes() of the master serving `slot`; -1 when no node is known for it.
    int node_for(std::uint16_t slot) const { return slots_[slot]; }
    // A MOVED redirection: `slot` is served by `to` from now on. Returns its node index.
    int move(std::uint16_t slot, const redis_node_address& to);
    // The node index of `address`, added if new.
    int node_index(const redis_node_address& address);
    // Node `index` is at `address` from now on (Sentinel: the master moved).
    void set_node(int index, const redis_node_address& address) { nodes_.at(static_cast<std::size_t>(index)) = address; }
    const std::vector<redis_node_address>& nodes() const { return nodes_; }
    bool empty() const { return nodes_.empty(); }

private:
    std::vector<redis_node_address> nodes_;
    std::array<std::int16_t, redis_slot_count> slots_ = filled();
    static std::array<std::int16_t, redis_slot_count> filled()
    {
        std::array<std::int16_t, redis_slot_count> a{};
        a.fill(-1);
        return a;
    }
};

} // namespace gw::gateway
