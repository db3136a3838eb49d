#include "gateway/quota/redis_slots.hpp"

#include <charconv>

namespace gw::gateway {

namespace {

// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as Redis Cluster uses.
std::uint16_t crc16(std::string_view data)
{
    std::uint16_t crc = 0;
    for (unsigned char byte : data) {
        crc ^= static_cast<std::uint16_t>(byte) << 8;
        for (int bit = 0; bit < 8; ++bit)
            crc = (crc & 0x8000) ? static_cast<std::uint16_t>((crc << 1) ^ 0x1021) : static_cast<std::uint16_t>(crc << 1);
    }
    return crc;
}


} // namespace

std::uint16_t redis_key_slot(std::string_view key)
{
    // Only the part between the first '{' and the next '}' counts, if it is not empty.
    if (auto open = key.find('{'); open != std::string_view::npos) {
        auto close = key.find('}', open + 1);
        if (close != std::string_view::npos && close > open + 1) key = key.substr(open + 1, close - open - 1);
    }
    return crc16(key) % redis_slot_count;
}

std::string redis_node_address::text() const
{
    return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::optional<redis_redirect> parse_redis_redirect(std::string_view error)
{
    redis_redirect r;
    if (error.starts_with("MOVED "))
        error.remove_prefix(6);
    else if (error.starts_with("ASK ")) {
        r.ask = true;
        error.remove_prefix(4);
    } else
        return std::nullopt;
    auto space = error.find(' ');
    if (space == std::string_view::npos) return std::nullopt;
    auto slot = parse_decimal<std::uint16_t>(error.substr(0, space));
    auto endpoint = error.substr(space + 1);
    auto colon = endpoint.rfind(':');
    if (!slot || *slot >= redis_slot_count || colon == std::string_view::npos) return std::nullopt;
    auto port = parse_decimal<std::uint16_t>(endpoint.substr(colon + 1));
    if (!port || *port == 0) return std::nullopt;
    auto host = endpoint.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    r.slot = *slot;
    r.to = {std::string(host), *port};
    return r;
}

int redis_slot_map::node_index(const redis_node_address& address)
{
    for (std::size_t i = 0; i < nodes_.size(); ++i)
        if (nodes_[i] == address) return static_cast<int>(i);
    nodes_.push_back(address);
    return static_cast<int>(nodes_.size() - 1);
}

int redis_slot_map::move(std::uint16_t slot, const redis_node_address& to)
{
    int index = node_index(to);
    slots_[slot] = static_cast<std::int16_t>(index);
    return index;
}

bool redis_slot_map::load(const redis_value& reply, redis_node_address asked)
{
    // [[start, end, [host, port, id, ...] (master), [replica]...], ...]
    if (reply.type != redis_value::kind::array || reply.elements.empty()) return false;
    struct range
    {
        std::uint16_t first, last;
        redis_node_address master;
    };
    std::vector<range> ranges;
    for (const auto& r : reply.elements) {
        if (r.type != redis_value::kind::array || r.elements.size() < 3) return false;
        const auto& from = r.elements[0];
        const auto& to = r.elements[1];
        const auto& master = r.elements[2];
        if (from.type != redis_value::kind::integer || to.type != redis_value::kind::integer || from.integer < 0 ||
            to.integer < from.integer || to.integer >= redis_slot_count)
            return false;
        if (master.type != redis_value::kind::array || master.elements.size() < 2 ||
            master.elements[0].type != redis_value::kind::string || master.elements[1].type != redis_value::kind::integer ||
            master.elements[1].integer <= 0 || master.elements[1].integer > 65535)
            return false;
        redis_node_address address{master.elements[0].str, static_cast<std::uint16_t>(master.elements[1].integer)};
        if (address.host.empty()) address.host = asked.host; // "the node you asked"
        if (address.host == "?") return false;                // an endpoint the node does not know
        ranges.push_back({static_cast<std::uint16_t>(from.integer), static_cast<std::uint16_t>(to.integer), std::move(address)});
    }
    slots_ = filled();
    for (const auto& r : ranges) {
        int index = node_index(r.master);
        for (int s = r.first; s <= r.last; ++s) slots_[s] = static_cast<std::int16_t>(index);
    }
    return true;
}

} // namespace gw::gateway
