#include "gateway/quota/sentinel_follower.hpp"

#include <algorithm>

namespace gw::gateway {

namespace {

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

std::optional<redis_node_address> address(std::string_view host, std::string_view port)
{
    auto p = parse_decimal<std::uint16_t>(port);
    if (host.empty() || !p || *p == 0) return std::nullopt;
    return redis_node_address{std::string(host), *p};
}

bool strings(const redis_value& v, std::size_t count)
{
    if (v.type != redis_value::kind::array || v.elements.size() != count) return false;
    return std::all_of(v.elements.begin(), v.elements.end(), [](const redis_value& e) { return e.type == redis_value::kind::string; });
}

} // namespace

std::optional<sentinel_master> parse_sentinel_answer(const redis_value& addr, const redis_value& master)
{
    if (!strings(addr, 2)) return std::nullopt; // nil: no master of that name; an error
    auto at = address(addr.elements[0].str, addr.elements[1].str);
    if (!at) return std::nullopt;
    sentinel_master answer{*at, -1};
    const auto& f = master.elements;
    if (master.type == redis_value::kind::array && f.size() % 2 == 0 && strings(master, f.size()))
        for (std::size_t i = 0; i < f.size(); i += 2)
            if (f[i].str == "config-epoch")
                if (auto e = parse_decimal<std::int64_t>(f[i + 1].str); e && *e >= 0) answer.epoch = *e;
    return answer;
}

std::optional<sentinel_event> parse_sentinel_event(const redis_value& message, std::string_view name)
{
    if (!strings(message, 3) || message.elements[0].str != "message") return std::nullopt;
    const auto& channel = message.elements[1].str;
    if (channel == "+switch-master") {
        // <name> <old host> <old port> <new host> <new port>
        const auto w = words_of(message.elements[2].str, 5);
        if (w.size() != 5 || w[0] != name) return std::nullopt;
        auto from = address(w[1], w[2]), to = address(w[3], w[4]);
        if (!from || !to) return std::nullopt;
        return sentinel_event{sentinel_event::kind::switched, *from, *to};
    }
    const bool starts = channel == "+failover-state-send-slaveof-noone";
    if (!starts && channel != "+promoted-slave") return std::nullopt;
    // slave <host:port> <host> <port> @ <name> <master host> <master port>
    const auto w = words_of(message.elements[2].str, 8);
    if (w.size() != 8 || w[0] != "slave" || w[4] != "@" || w[5] != name) return std::nullopt;
    auto to = address(w[2], w[3]), from = address(w[6], w[7]);
    if (!from || !to) return std::nullopt;
    return sentinel_event{starts ? sentinel_event::kind::promotion_starts : sentinel_event::kind::promoted, *from, *to};
}

bool is_subscription_confirmed(const redis_value& reply)
{
    const auto& e = reply.elements;
    return reply.type == redis_value::kind::array && e.size() == 3 && e[0].type == redis_value::kind::string &&
           e[0].str == "subscribe";
}

sentinel_follower::verdict sentinel_follower::on_answer(const sentinel_master& answer, std::size_t index)
{
    const bool stale = (answer.epoch >= 0 && answer.epoch < epoch_) || (moved_from_ && answer.address == *moved_from_ && answer.epoch <= epoch_);
    if (stale && index < stale_from_.size()) {
        stale_from_[index] = true;
        if (!best_stale_ || answer.epoch > best_stale_->epoch) best_stale_ = answer;
        if (!std::all_of(stale_from_.begin(), stale_from_.end(), [](bool b) { return b; })) return verdict::ask_next;
        // Every sentinel in turn: their state was reset. The best of them is followed.
        epoch_ = best_stale_->epoch;
        moved_from_.reset();
        use(best_stale_->address);
        return verdict::follow;
    }
    if (answer.epoch > epoch_) {
        epoch_ = answer.epoch;
        if (moved_from_ && answer.address != *moved_from_) moved_from_.reset(); // a newer configuration settles it
    }
    use(answer.address);
    return verdict::follow;
}

sentinel_follower::verdict sentinel_follower::on_announcement(const redis_node_address& from, const redis_node_address& to)
{
    if (master_ == to) return verdict::follow; // late: already there
    if (master_ && *master_ != from) return verdict::ask_now;
    moved_from_ = from;
    use(to);
    return verdict::follow;
}

void sentinel_follower::use(const redis_node_address& master)
{
    if (master_ != master) fenced_until_ = {}; // a new master: the fence is over
    master_ = master;
    std::fill(stale_from_.begin(), stale_from_.end(), false);
    best_stale_.reset();
}

} // namespace gw::gateway
