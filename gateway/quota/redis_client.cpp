#include "gateway/quota/redis_client.hpp"

#include "gateway/ops/spawn.hpp"
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
    return o;
}

redis_client::redis_client(net::any_io_executor ex, redis_client_options options) : ex_(ex), options_(std::move(options))
{
    slots_.node_index({options_.target.host, options_.target.port});
}

redis_client::~redis_client()
{
    close();
}

void redis_client::close()
{
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
    e.tls_name = !options_.tls_name.empty() ? options_.tls_name : node == 0 ? options_.target.host : address.host;
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
    if (mode_ == mode::unknown)
        if (auto ec = co_await discover(deadline)) co_return std::tuple{ec, std::move(replies)};
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
        for (const auto& r : replies)
            if (r.is_error() && r.str.starts_with("MOVED")) mode_ = mode::unknown; // it became a cluster: ask again
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

} // namespace gw::gateway
