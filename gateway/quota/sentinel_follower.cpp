#include "gateway/quota/sentinel_follower.hpp"

#include <charconv>
#include <vector>

namespace gw::gateway {

namespace {

template <typename Int> std::optional<Int> number(std::string_view s)
{
    Int v{};
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return v;
}

std::optional<redis_node_address> address(std::string_view host, std::string_view port)
{
    auto p = number<std::uint16_t>(port);
    if (host.empty() || !p || *p == 0) return std::nullopt;
    return redis_node_address{std::string(host), *p};
}

// The space-separated words of a message, up to one more than `expected` (enough to tell
// that there are too many).
std::vector<std::string_view> words_of(std::string_view text, std::size_t expected)
{
    std::vector<std::string_view> words;
    while (!text.empty() && words.size() <= expected) {
        auto space = text.find(' ');
        words.push_back(text.substr(0, space));
        text = space == std::string_view::npos ? std::string_view{} : text.substr(space + 1);
    }
    return words;
}

bool all_strings(const redis_value& v)
{
    for (const auto& e : v.elements)
        if (e.type != redis_value::kind::string) return false;
    return true;
}

} // namespace

std::optional<sentinel_master> parse_sentinel_master(const redis_value& reply)
{
    const auto& f = reply.elements;
    if (reply.type != redis_value::kind::array || f.size() % 2 != 0 || !all_strings(reply)) return std::nullopt;
    const std::string *ip = nullptr, *port = nullptr, *epoch = nullptr;
    for (std::size_t i = 0; i < f.size(); i += 2) {
        if (f[i].str == "ip") ip = &f[i + 1].str;
        else if (f[i].str == "port") port = &f[i + 1].str;
        else if (f[i].str == "config-epoch") epoch = &f[i + 1].str;
    }
    if (!ip || !port || !epoch) return std::nullopt;
    auto at = address(*ip, *port);
    auto e = number<std::int64_t>(*epoch);
    if (!at || !e || *e < 0) return std::nullopt;
    return sentinel_master{*at, *e};
}

std::optional<master_switch> parse_switch_master(const redis_value& message, std::string_view name)
{
    const auto& m = message.elements;
    if (message.type != redis_value::kind::array || m.size() != 3 || !all_strings(message)) return std::nullopt;
    if (m[0].str != "message" || m[1].str != "+switch-master") return std::nullopt;
    const auto words = words_of(m[2].str, 5);
    if (words.size() != 5 || words[0] != name) return std::nullopt;
    auto from = address(words[1], words[2]);
    auto to = address(words[3], words[4]);
    if (!from || !to) return std::nullopt;
    return master_switch{*from, *to};
}

bool is_switch_subscription(const redis_value& reply)
{
    const auto& e = reply.elements;
    return reply.type == redis_value::kind::array && e.size() == 3 && e[0].type == redis_value::kind::string &&
           e[0].str == "subscribe" && e[1].type == redis_value::kind::string && e[1].str == "+switch-master";
}

bool is_promotion_of_replica(const redis_value& message, std::string_view name)
{
    const auto& m = message.elements;
    if (message.type != redis_value::kind::array || m.size() != 3 || !all_strings(message)) return false;
    if (m[0].str != "message" || m[1].str != "+failover-state-send-slaveof-noone") return false;
    const auto words = words_of(m[2].str, 8);
    return words.size() == 8 && words[0] == "slave" && words[4] == "@" && words[5] == name;
}

sentinel_follower::verdict sentinel_follower::on_answer(const sentinel_master& answer)
{
    if (answer.epoch < epoch_ && ++stale_in_a_row_ < sentinels_) return verdict::ask_next;
    stale_in_a_row_ = 0;
    epoch_ = answer.epoch;
    if (master_ != answer.address) fenced_until_ = {}; // a new master: the fence is over
    master_ = answer.address;
    return verdict::follow;
}

sentinel_follower::verdict sentinel_follower::on_announcement(const master_switch& s)
{
    if (master_ == s.to) return verdict::follow; // late: polling got there first
    if (master_ && *master_ != s.from) return verdict::ask_now;
    master_ = s.to;
    fenced_until_ = {};
    if (epoch_ >= 0) ++epoch_;
    return verdict::follow;
}

} // namespace gw::gateway
