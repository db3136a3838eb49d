#include "gateway/quota/redis_client.hpp"

#include "core/text.hpp"
#include "gateway/ops/spawn.hpp"
#include "gateway/quota/sentinel_follower.hpp"
#include "gateway/upstream/tls_socket.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>

namespace gw::gateway {

namespace {

using namespace std::chrono_literals;

constexpr int max_redirects = 5;
constexpr auto try_again_pause = 10ms; // TRYAGAIN: a migrating slot's keys are split for a moment
constexpr auto min_refresh_interval = 100ms;
// Between connects to a node that refuses them: short, so that service resumes within a
// fifth of a second of Redis' return; a refused loopback or LAN connect costs little.
constexpr auto min_backoff = std::chrono::milliseconds(50);
constexpr auto max_backoff = std::chrono::milliseconds(200);
// Sentinel: how often the sentinels are asked for the master (at most, and while it is
// trusted), and how long one sentinel gets to answer.
constexpr auto min_sentinel_interval = 100ms;
constexpr auto max_sentinel_interval = 2000ms; // while none names the master
constexpr auto sentinel_answer_time = 1000ms;
constexpr auto subscription_retry_interval = std::chrono::minutes(1); // after a sentinel refused SUBSCRIBE

// The key a command is routed by (its first key); nullptr for commands without keys.
const std::string* first_key(const redis_client::command& cmd)
{
    if (cmd.empty()) return nullptr;
    std::string name = cmd[0];
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    if (name == "EVAL" || name == "EVALSHA") return cmd.size() > 3 && cmd[2] != "0" ? &cmd[3] : nullptr;
    for (const char* keyless : {"PING", "CLUSTER", "ASKING", "INFO", "SCRIPT", "AUTH", "SELECT", "TIME", "HELLO"})
        if (name == keyless) return nullptr;
    return cmd.size() > 1 ? &cmd[1] : nullptr;
}

std::string cluster_slots_command()
{
    static const std::string wire = format_redis_command({"CLUSTER", "SLOTS"});
    return wire;
}

} // namespace

std::shared_ptr<net::ssl::context> make_redis_tls(const config::quota_store_config& cfg)
{
    auto target = config::parse_redis_url(cfg.url);
    if (!target || !target->tls) return nullptr;
    auto ctx = make_client_tls(cfg.ca_file, cfg.verify_tls);
    if (!cfg.cert_file.empty()) {
        ctx->use_certificate_chain_file(cfg.cert_file);
        ctx->use_private_key_file(cfg.key_file, net::ssl::context::pem);
    }
    return ctx;
}

redis_client_options redis_options(const config::quota_store_config& cfg, std::shared_ptr<net::ssl::context> tls)
{
    redis_client_options o;
    o.target = config::parse_redis_url(cfg.url).value(); // validated
    o.tls = std::move(tls);
    o.tls_name = cfg.tls_server_name;
    o.verify_tls = cfg.verify_tls;
    o.timeout = cfg.timeout_ms;
    for (const auto& s : cfg.sentinels) {
        auto address = core::parse_host_port(s).value(); // validated
        o.sentinels.push_back({address.host, address.port});
    }
    o.sentinel_session.username = cfg.sentinel_username;
    o.sentinel_session.password = cfg.sentinel_password;
    return o;
}

redis_client::redis_client(net::any_io_executor ex, redis_client_options options)
    : ex_(ex), options_(std::move(options)), follower_(std::make_unique<sentinel_follower>(options_.sentinels.size()))
{
    slots_.node_index({options_.target.host, options_.target.port});
}

redis_client::~redis_client()
{
    close();
}

void redis_client::close()
{
    closed_ = true;
    if (sentinel_wake_) sentinel_wake_->cancel();
    if (sentinel_connection_) sentinel_connection_->close();
    for (auto& sub : subscriptions_)
        if (sub.connection) sub.connection->close();
    for (auto& waiter : std::exchange(master_waiters_, {})) { // callers waiting for a master: none will come
        waiter->ec = redis_errc::closed;
        waiter->done = true;
        if (waiter->on_done) waiter->on_done();
    }
    for (auto& n : nodes_)
        if (n.connection) n.connection->close();
}

std::shared_ptr<redis_connection> redis_client::connection(int node, error_code& why)
{
    if (nodes_.size() <= static_cast<std::size_t>(node)) nodes_.resize(static_cast<std::size_t>(node) + 1);
    auto& s = nodes_[static_cast<std::size_t>(node)];
    if (s.connection && !s.connection->failed()) {
        // Calls older than a deadline and not a byte back: a hung or partitioned Redis. Fail
        // fast rather than pile more calls into it that it would run all at once later.
        auto now = clock::now();
        if (s.connection->stalled(now, std::max(options_.timeout, std::chrono::milliseconds(1000)))) {
            s.connection->close(redis_errc::unresponsive); // a silent peer (packets dropped): connect anew
        } else if (s.connection->stalled(now, options_.timeout)) {
            why = redis_errc::stalled;
            return nullptr;
        } else {
            return s.connection;
        }
    }
    if (s.connection) { // failed: reconnect at once if it had worked, else after a growing pause
        s.backoff = s.connection->was_ready() ? 0ms : std::clamp(s.backoff * 2, min_backoff, max_backoff);
        s.retry_at = s.connection->failed_at() + s.backoff;
        s.connection.reset();
    }
    if (clock::now() < s.retry_at) {
        why = redis_errc::backing_off;
        return nullptr;
    }
    const auto& address = slots_.nodes()[static_cast<std::size_t>(node)];
    redis_endpoint e;
    e.host = address.host;
    e.port = address.port;
    e.session = options_.target;
    e.tls = options_.tls;
    // The URL's host, or the address a sentinel or the cluster named.
    e.tls_name = !options_.tls_name.empty()            ? options_.tls_name
                 : node == 0 && !with_sentinels() ? options_.target.host
                                                  : address.host;
    e.verify = options_.verify_tls;
    e.connect_timeout = std::max(options_.timeout, std::chrono::milliseconds(2000));
    s.connection = redis_connection::open(ex_, std::move(e));
    return s.connection;
}

net::awaitable<error_code> redis_client::call_node(int node, std::string wire, std::size_t replies, clock::time_point deadline,
                                                   std::vector<redis_value>& out)
{
    error_code why;
    auto conn = connection(node, why);
    if (!conn) co_return why;
    auto call = conn->submit(wire, replies);
    auto ec = co_await wait_for(*call, deadline);
    if (ec)
        note_failure(*conn, ec);
    else
        out = std::move(call->replies);
    co_return ec;
}

void redis_client::note_failure(redis_connection& conn, error_code ec)
{
    if (ec == beast::error::timeout && conn.stalled(clock::now(), std::max(options_.timeout, std::chrono::milliseconds(1000))))
        conn.close(redis_errc::unresponsive); // dead peer or a stalled server: the next call connects anew
    if (mode_ == mode::cluster) request_refresh(); // a master may have failed over
    if (with_sentinels()) doubt_master();
}

net::awaitable<error_code> redis_client::discover(clock::time_point deadline)
{
    std::vector<redis_value> replies;
    auto ask = cluster_slots_command(); // named: no braced temporaries in co_await (g++ 12)
    if (auto ec = co_await call_node(0, std::move(ask), 1, deadline, replies)) co_return ec;
    if (mode_ != mode::unknown) co_return error_code{}; // another call finished first
    if (replies[0].is_error()) {
        // Only a node without cluster support is a standalone Redis; LOADING, NOAUTH and
        // the like say nothing yet: the next call asks again.
        if (replies[0].str.find("cluster support disabled") == std::string::npos) co_return redis_errc::protocol;
        mode_ = mode::standalone;
        co_return error_code{};
    }
    if (!slots_.load(replies[0], slots_.nodes()[0])) co_return redis_errc::protocol;
    mode_ = mode::cluster;
    spdlog::info("quota store: Redis Cluster with {} master(s)", slots_.nodes().size());
    co_return error_code{};
}

int redis_client::node_for(const command& cmd) const
{
    if (mode_ != mode::cluster) return 0;
    const auto* key = first_key(cmd);
    if (!key) return 0;
    int node = slots_.node_for(redis_key_slot(*key));
    return node < 0 ? 0 : node; // unknown: any node answers with MOVED
}

net::awaitable<std::tuple<error_code, std::vector<redis_value>>> redis_client::exec(const std::vector<command>& commands)
{
    co_return co_await exec(commands, clock::now() + options_.timeout);
}

net::awaitable<std::tuple<error_code, std::vector<redis_value>>> redis_client::exec(const std::vector<command>& commands,
                                                                                       clock::time_point deadline)
{
    std::vector<redis_value> replies(commands.size());
    for (const auto& cmd : commands)
        if (cmd.empty()) co_return std::tuple{error_code(redis_errc::protocol), std::move(replies)};
    if (mode_ == mode::unknown || (with_sentinels() && follower_->fenced(clock::now()))) {
        error_code ec;
        if (with_sentinels())
            ec = co_await await_master(deadline);
        else
            ec = co_await discover(deadline);
        if (ec) co_return std::tuple{ec, std::move(replies)};
    }
    // One pipelined call per node, all in flight before any is waited for.
    struct group
    {
        int node;
        std::string wire;
        std::vector<std::size_t> positions;
        std::shared_ptr<redis_call> call;
        std::shared_ptr<redis_connection> connection;
    };
    std::vector<group> groups;
    std::vector<int> sent_to(commands.size());
    for (std::size_t i = 0; i < commands.size(); ++i) {
        int node = sent_to[i] = node_for(commands[i]);
        auto g = std::find_if(groups.begin(), groups.end(), [&](const group& x) { return x.node == node; });
        if (g == groups.end()) g = groups.insert(groups.end(), group{node, {}, {}, {}, {}});
        append_redis_command(g->wire, commands[i]);
        g->positions.push_back(i);
    }
    for (auto& g : groups) { // every node reachable, or nothing is sent
        error_code why;
        g.connection = connection(g.node, why);
        if (!g.connection) co_return std::tuple{why, std::move(replies)};
    }
    for (auto& g : groups) g.call = g.connection->submit(g.wire, g.positions.size());
    for (auto& g : groups) {
        if (auto ec = co_await wait_for(*g.call, deadline)) {
            note_failure(*g.connection, ec);
            // Other nodes may have run their part: the caller must not take this for "nothing ran".
            co_return std::tuple{groups.size() > 1 ? error_code(redis_errc::partial) : ec, std::move(replies)};
        }
        for (std::size_t k = 0; k < g.positions.size(); ++k) replies[g.positions[k]] = std::move(g.call->replies[k]);
    }
    if (mode_ == mode::standalone) {
        for (const auto& r : replies) {
            if (!r.is_error()) continue;
            if (with_sentinels()) {
                if (r.str.find("READONLY") != std::string::npos) doubt_master(); // a former master, now a replica
            } else if (r.str.starts_with("MOVED")) {
                mode_ = mode::unknown; // it became a cluster: ask again
            }
        }
    } else {
        for (std::size_t i = 0; i < commands.size(); ++i)
            if (replies[i].is_error())
                if (auto ec = co_await follow_redirects(commands[i], sent_to[i], replies[i], deadline))
                    co_return std::tuple{commands.size() > 1 ? error_code(redis_errc::partial) : ec, std::move(replies)};
    }
    co_return std::tuple{error_code{}, std::move(replies)};
}

net::awaitable<error_code> redis_client::follow_redirects(const command& cmd, int sent_to, redis_value& reply, clock::time_point deadline)
{
    int hops = 0;
    bool asking = false; // the node sent to imports the slot: each resend there needs ASKING
    for (;;) {
        bool try_again = reply.is_error() && reply.str.starts_with("TRYAGAIN");
        auto redirect = reply.is_error() ? parse_redis_redirect(reply.str) : std::nullopt;
        if (!try_again && !redirect) co_return error_code{}; // a result, or Redis' own error: the caller's to read
        if (redirect && ++hops > max_redirects) co_return redis_errc::redirected;
        // TRYAGAIN until the slot's keys have all moved; redirections that bounce (nodes
        // told of a new owner one after the other) after a pause too. Within the deadline.
        if (try_again || hops > 1) {
            if (clock::now() + try_again_pause >= deadline) co_return beast::error::timeout;
            net::steady_timer pause(ex_);
            pause.expires_after(try_again_pause);
            co_await pause.async_wait(use_nothrow);
        }
        int node = sent_to;
        if (redirect) {
            auto to = redirect->to;
            if (to.host.empty()) to.host = slots_.nodes()[static_cast<std::size_t>(sent_to)].host;
            asking = redirect->ask;
            if (asking) {
                node = slots_.node_index(to);
            } else {
                node = slots_.move(redirect->slot, to);
                request_refresh(); // one moved slot is seldom alone
            }
        }
        std::string wire = asking ? format_redis_command({"ASKING"}) : std::string();
        std::size_t expected = asking ? 2 : 1;
        append_redis_command(wire, cmd);
        std::vector<redis_value> replies;
        if (auto ec = co_await call_node(node, std::move(wire), expected, deadline, replies)) co_return ec;
        reply = std::move(replies.back());
        sent_to = node;
    }
}

void redis_client::request_refresh()
{
    if (refreshing_ || clock::now() < next_refresh_) return;
    refreshing_ = true;
    net::co_spawn(ex_, refresh(shared_from_this()), log_failure("redis cluster slot refresh"));
}

// Asks the nodes, in turn, for the current slot map until one answers.
net::awaitable<void> redis_client::refresh(std::shared_ptr<redis_client> self)
{
    auto deadline = clock::now() + std::max(self->options_.timeout, std::chrono::milliseconds(1000));
    for (std::size_t node = 0; node < self->slots_.nodes().size(); ++node) {
        std::vector<redis_value> replies;
        auto ask = cluster_slots_command();
        auto ec = co_await self->call_node(static_cast<int>(node), std::move(ask), 1, deadline, replies);
        if (!ec && self->slots_.load(replies[0], self->slots_.nodes()[node])) break;
        if (clock::now() >= deadline) break;
    }
    self->refreshing_ = false;
    self->next_refresh_ = clock::now() + min_refresh_interval;
}

// ---- Sentinel ----------------------------------------------------------------------

void redis_client::start()
{
    if (!with_sentinels() || sentinel_wake_ || closed_) return;
    sentinel_wake_ = std::make_shared<net::steady_timer>(ex_);
    net::co_spawn(ex_, watch_sentinels(weak_from_this(), sentinel_wake_), log_failure("redis sentinel watch"));
}

net::awaitable<error_code> redis_client::await_master(clock::time_point deadline)
{
    start(); // if nothing did yet
    // Calls that gave up are dropped here, so that an outage of every sentinel does not
    // pile them up.
    std::erase_if(master_waiters_, [](const std::shared_ptr<redis_call>& c) { return c.use_count() == 1; });
    const bool fenced = follower_->fenced(clock::now());
    auto mine = std::make_shared<redis_call>();
    master_waiters_.push_back(mine);
    // While fenced, until the fence ends at the latest: a failover that stalled or was
    // aborted leaves the master in use again.
    auto ec = co_await wait_for(*mine, fenced ? std::min(deadline, follower_->fence_end()) : deadline);
    if (ec == beast::error::timeout && fenced && mode_ == mode::standalone && !follower_->fenced(clock::now()) && clock::now() < deadline)
        co_return error_code{};
    // The cause, not the wait (nothing was sent).
    if (ec == beast::error::timeout) ec = fenced ? redis_errc::failing_over : redis_errc::no_master;
    co_return ec;
}

void redis_client::doubt_master()
{
    master_doubted_ = true;
    wake_watcher();
}

void redis_client::ask_sentinels_soon()
{
    ask_soon_ = true;
    wake_watcher();
}

void redis_client::wake_watcher()
{
    if (sentinel_polling_ && sentinel_wake_) sentinel_wake_->cancel();
}

net::awaitable<void> redis_client::watch_sentinels(std::weak_ptr<redis_client> client, std::shared_ptr<net::steady_timer> wake)
{
    auto pause = min_sentinel_interval; // grows while no sentinel names the master
    std::chrono::milliseconds poll{};
    if (auto self = client.lock()) poll = self->options_.sentinel_poll;
    for (;;) {
        {
            auto self = client.lock();
            if (!self || self->closed_) co_return;
            const bool doubted = std::exchange(self->master_doubted_, false);
            auto master = co_await self->ask_sentinels();
            if (self->closed_) co_return;
            const auto& name = self->options_.target.host;
            if (master) {
                if (std::exchange(self->sentinels_failing_, false)) spdlog::info("quota store: a sentinel names master {} again", name);
                // The master failed or refused a write, and this sentinel still names it: it
                // may be behind (a partition's minority). The next sentinel is asked next.
                const bool still_named = doubted && self->mode_ == mode::standalone && self->slots_.nodes()[0] == master->address;
                if (self->follower_->on_answer(*master, self->sentinel_index_) == sentinel_follower::verdict::follow) {
                    self->use_master(*self->follower_->master(), "named by a sentinel");
                    if (still_named) self->next_sentinel();
                } else { // behind the configuration followed: another sentinel is asked soon
                    spdlog::info("quota store: sentinel {} names master {} at {} under epoch {}, behind the configuration followed "
                                 "(epoch {}); asking the next",
                                 self->options_.sentinels[self->sentinel_index_].text(), name, master->address.text(), master->epoch,
                                 self->follower_->epoch());
                    self->next_sentinel();
                    self->ask_soon_ = true;
                }
                self->keep_subscriptions();
                pause = min_sentinel_interval;
            } else {
                if (!std::exchange(self->sentinels_failing_, true))
                    spdlog::warn("quota store: no sentinel of {} names a master called {}; asking again", self->options_.sentinels.size(), name);
                pause = std::min(pause * 2, max_sentinel_interval);
            }
        }
        // At most every `pause`; then, while the master is known and no call doubts it,
        // wait out the poll interval (a doubt cancels that wait).
        wake->expires_after(pause);
        co_await wake->async_wait(use_nothrow);
        {
            auto self = client.lock();
            if (!self || self->closed_) co_return;
            if (self->sentinels_failing_ || self->master_doubted_ || std::exchange(self->ask_soon_, false)) continue;
            self->sentinel_polling_ = true;
        }
        wake->expires_after(poll - min_sentinel_interval);
        co_await wake->async_wait(use_nothrow);
        if (auto self = client.lock()) self->sentinel_polling_ = false;
    }
}

net::awaitable<std::optional<sentinel_master>> redis_client::ask_sentinels()
{
    const auto& name = options_.target.host;
    for (std::size_t tried = 0; tried < options_.sentinels.size() && !closed_; ++tried) {
        const auto& at = options_.sentinels[sentinel_index_];
        if (!sentinel_connection_ || sentinel_connection_->failed()) sentinel_connection_ = redis_connection::open(ex_, sentinel_endpoint(at));
        auto connection = sentinel_connection_; // the call's, whatever close() does meanwhile
        auto call = connection->submit(format_redis_command({"SENTINEL", "get-master-addr-by-name", name}) +
                                           format_redis_command({"SENTINEL", "MASTER", name}),
                                       2);
        auto ec = co_await wait_for(*call, clock::now() + sentinel_answer_time);
        if (!ec) {
            if (auto master = parse_sentinel_answer(call->replies[0], call->replies[1])) {
                if (master->epoch < 0 && !epochs_refused_) {
                    epochs_refused_ = true;
                    spdlog::warn("quota store: sentinel {} does not answer SENTINEL MASTER ({}): configuration epochs are not compared",
                                 at.text(), call->replies[1].str.empty() ? "no epoch" : call->replies[1].str);
                }
                co_return master;
            }
            if (call->replies[0].is_error())
                spdlog::warn("quota store: sentinel {} refused SENTINEL get-master-addr-by-name: {}", at.text(), call->replies[0].str);
            else
                spdlog::debug("quota store: sentinel {} names no master called {}", at.text(), name);
        } else {
            spdlog::debug("quota store: sentinel {}: {}", at.text(), ec.message());
        }
        // This sentinel failed or knows no such master: the next one.
        if (sentinel_connection_ == connection) next_sentinel();
    }
    co_return std::nullopt;
}

redis_endpoint redis_client::sentinel_endpoint(const redis_node_address& at) const
{
    redis_endpoint e;
    e.host = at.host;
    e.port = at.port;
    e.session = options_.sentinel_session;
    e.tls = options_.tls;
    e.tls_name = at.host; // as configured (tls_server_name is the master's)
    e.verify = options_.verify_tls;
    e.connect_timeout = sentinel_answer_time;
    return e;
}

void redis_client::next_sentinel()
{
    if (sentinel_connection_) sentinel_connection_->close();
    sentinel_connection_.reset();
    sentinel_index_ = (sentinel_index_ + 1) % options_.sentinels.size();
}

void redis_client::keep_subscriptions()
{
    subscriptions_.resize(options_.sentinels.size());
    const auto now = clock::now();
    for (std::size_t i = 0; i < subscriptions_.size(); ++i) {
        auto& sub = subscriptions_[i];
        if (sub.connection && !sub.connection->failed()) {
            // Answers to PING keep a live subscription's reads recent; a silent one is replaced.
            if (!sub.connection->stalled(now, 3 * options_.sentinel_poll)) {
                sub.connection->send_subscribed(format_redis_command({"PING"}));
                continue;
            }
            spdlog::info("quota store: sentinel {} stopped answering on its subscription; subscribing again", options_.sentinels[i].text());
            sub.connection->close();
        }
        if (now < sub.retry_at) continue;
        sub.retry_at = now + min_sentinel_interval * 10; // a sentinel that is down is not dialled at every question
        sub.confirmed = false;
        sub.connection = redis_connection::open(ex_, sentinel_endpoint(options_.sentinels[i]));
        auto on_message = [client = weak_from_this(), i](const redis_value& message) {
            if (auto self = client.lock(); self && !self->closed_) self->on_sentinel_message(i, message);
        };
        redis_client::command subscribe{"SUBSCRIBE"};
        for (auto channel : sentinel_channels) subscribe.emplace_back(channel);
        sub.connection->subscribe(format_redis_command(subscribe), std::move(on_message));
    }
}

void redis_client::on_sentinel_message(std::size_t sentinel, const redis_value& message)
{
    auto& sub = subscriptions_[sentinel];
    const auto& at = options_.sentinels[sentinel];
    if (!sub.confirmed) {
        if (is_subscription_confirmed(message)) {
            sub.confirmed = true;
            return;
        }
        // An ACL user without the channels (NOPERM), or no Pub/Sub at all: polling only.
        spdlog::warn("quota store: sentinel {} refused SUBSCRIBE to its failover events ({}); failovers it leads are followed by "
                     "asking every {} ms, and the subscription is tried again in a minute",
                     at.text(), message.str.empty() ? "unexpected reply" : message.str, options_.sentinel_poll.count());
        sub.retry_at = clock::now() + subscription_retry_interval;
        sub.connection->close(); // from within its reader: the reading stops
        return;
    }
    auto event = parse_sentinel_event(message, options_.target.host);
    if (!event) return; // PING's answers, the other channels' confirmations, other masters' events
    if (event->what == sentinel_event::kind::promotion_starts) {
        // Only a promotion of a replica of the master in use fences it.
        if (mode_ != mode::standalone || slots_.nodes()[0] != event->from) return;
        if (!follower_->fenced(clock::now()))
            spdlog::warn("quota store: sentinel {} is promoting {} to master {}: nothing is sent to {} until it is the master",
                         at.text(), event->to.text(), options_.target.host, event->from.text());
        follower_->on_promotion_start(clock::now());
        return;
    }
    if (follower_->on_announcement(event->from, event->to) == sentinel_follower::verdict::follow)
        use_master(event->to, "announced by a sentinel");
    else
        ask_sentinels_soon(); // about an address not in use: out of date or out of order
}

void redis_client::use_master(const redis_node_address& master, std::string_view how)
{
    const bool known = mode_ == mode::standalone;
    if (known && slots_.nodes()[0] == master) return;
    const auto& name = options_.target.host;
    if (known)
        spdlog::warn("quota store: master {} moved from {} to {} ({})", name, slots_.nodes()[0].text(), master.text(), how);
    else
        spdlog::info("quota store: master {} is at {} ({})", name, master.text(), how);
    slots_.set_node(0, master);
    if (!nodes_.empty()) {
        if (nodes_[0].connection) nodes_[0].connection->close(); // calls on it fail; the next connect goes to the new master
        nodes_[0] = node_state{};
    }
    mode_ = mode::standalone;
    for (auto& waiter : master_waiters_) {
        waiter->done = true;
        if (waiter->on_done) waiter->on_done();
    }
    master_waiters_.clear();
}

} // namespace gw::gateway
