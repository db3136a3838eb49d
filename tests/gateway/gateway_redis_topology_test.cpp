// The Redis store against the deployments teams run: TLS (certificates made by the test,
// a client certificate, a wrong CA), a 3-master Redis Cluster made with `redis-cli
// --cluster create` (limits shared by two gateways before and after a slot migration under
// load and a master restart; ownership records spread over the masters), a master and
// replica behind Redis Sentinel (a failover followed, also as the sentinel announces it), and saturating load (no refusals a limit does not call for,
// no leases left behind). Every redis-server runs on loopback and stops with its test.
#include "core/text.hpp"
#include "gateway/quota/redis_client.hpp"
#include "tests/emulator/emulator_test_util.hpp"
#include "tests/support/gateway_fixture.hpp"
#include "tests/support/process.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

namespace gw::test {
namespace {

using namespace std::chrono_literals;
namespace net = boost::asio;
using gateway::error_code;

std::function<void(config::gateway_config&)> store_at(const std::string& url, std::function<void(config::gateway_config&)> more = {})
{
    return [url, more](config::gateway_config& c) {
        c.quota_store.type = gw::config::store_kind::redis;
        c.quota_store.url = url;
        c.quota_store.timeout_ms = std::chrono::milliseconds(1000); // sanitizer builds are slow; outages are tested elsewhere
        c.quota_store.on_error = gw::config::store_error_policy::deny;
        if (more) more(c);
    };
}

int status_of_parameters(running_gateway& gw)
{
    auto c = gw.client();
    return get(*c, "/v1/parameters", tenant_keys::alpha).status;
}

std::int64_t store_errors(running_gateway& gw)
{
    http_client admin(gw.server().admin_endpoint(), false);
    return admin.request("GET", "/admin/usage").json().at("quota_store").at("errors").to_number<std::int64_t>();
}

// Streams that stay open while a test looks at the limits they hold.
emulator::service_options slow_streams()
{
    emulator::service_options o;
    o.token_delay = 30ms;
    return o;
}

// Two streams of `tenant` hold its max_concurrent of 2, one through each gateway: a third
// call through either is refused; once they end, calls pass again.
void concurrency_is_shared(running_gateway& a, running_gateway& b, const std::string& key)
{
    auto stream = [&](running_gateway& gw) {
        auto c = gw.client();
        c->send("POST", "/v1/chat-messages", bearer(key), json::serialize(chat_body("a b c d e f g h", "u", "streaming")));
        EXPECT_EQ(c->read_head().status, 200);
        return c;
    };
    {
        auto s1 = stream(a), s2 = stream(b);
        for (auto* gw : {&a, &b}) {
            auto c = gw->client();
            auto r = get(*c, "/v1/parameters", key);
            EXPECT_EQ(r.status, 429) << r.body;
            if (r.status == 429) { EXPECT_EQ(r.json().at("message"), "Too many concurrent requests (at most 2)."); }
        }
        s1->read_rest();
        s2->read_rest();
    }
    // The releases travel with the next admission or within milliseconds after.
    bool passes = false;
    for (int i = 0; i < 300 && !passes; ++i) {
        auto ca = a.client(), cb = b.client();
        passes = get(*ca, "/v1/parameters", key).status == 200 && get(*cb, "/v1/parameters", key).status == 200;
        if (!passes) std::this_thread::sleep_for(10ms);
    }
    EXPECT_TRUE(passes) << "both leases went back";
}

// ---- TLS ---------------------------------------------------------------------------

TEST(GatewayRedisTls, VerifiedTlsWithAPasswordAndAClientCertificate)
{
    temp_dir dir;
    write_test_pki(dir.path());
    running_redis redis(redis_setup{.tls_dir = dir.path(), .client_certs = true, .cluster_dir = {}, .extra_args = {"--requirepass", "s3cret"}});
    running_emulator emu(slow_streams());
    auto url = "rediss://:s3cret@127.0.0.1:" + std::to_string(redis.port()) + "/0";
    auto cfg = store_at(url, [&](config::gateway_config& c) {
        c.quota_store.ca_file = dir.path() + "/ca.pem";
        c.quota_store.cert_file = dir.path() + "/server.pem"; // the test certificate allows client auth too
        c.quota_store.key_file = dir.path() + "/server.key";
        c.tenants["alpha"].max_concurrent = 2;
        c.tenants["alpha"].rate = config::rate_config{1000, 1000};
    });
    running_gateway a(emu, cfg), b(emu, cfg);
    concurrency_is_shared(a, b, tenant_keys::alpha);
    EXPECT_EQ(store_errors(a) + store_errors(b), 0);
    EXPECT_NE(redis.cli("-a s3cret --no-auth-warning KEYS '*'").find("{t:alpha}"), std::string::npos) << "the state lives in this Redis";
}

TEST(GatewayRedisTls, AWrongCaOrNameIsAStoreErrorNeverACrash)
{
    temp_dir dir;
    write_test_pki(dir.path());
    running_redis redis(redis_setup{.tls_dir = dir.path(), .client_certs = false, .cluster_dir = {}, .extra_args = {}});
    running_emulator emu;
    auto limited = [](config::gateway_config& c) { c.tenants["alpha"].rate = config::rate_config{1000, 1000}; };
    // The system trust store does not know the test CA; the right CA with another name fails too.
    running_gateway unknown_ca(emu, store_at(redis.url(), limited));
    running_gateway wrong_name(emu, store_at(redis.url(), [&](config::gateway_config& c) {
        limited(c);
        c.quota_store.ca_file = dir.path() + "/ca.pem";
        c.quota_store.tls_server_name = "redis.other.example";
    }));
    for (auto* gw : {&unknown_ca, &wrong_name}) {
        for (int i = 0; i < 3; ++i) {
            auto c = gw->client();
            auto r = get(*c, "/v1/parameters", tenant_keys::alpha);
            EXPECT_EQ(r.status, 503) << "on_error = deny";
            EXPECT_EQ(r.json().at("code"), "unavailable");
        }
        EXPECT_GE(store_errors(*gw), 3);
        http_client admin(gw->server().admin_endpoint(), false);
        EXPECT_EQ(admin.request("GET", "/healthz").status, 200) << "still serving";
    }
    running_gateway right(emu, store_at(redis.url(), [&](config::gateway_config& c) {
        limited(c);
        c.quota_store.ca_file = dir.path() + "/ca.pem";
        c.quota_store.tls_server_name = "localhost"; // a SAN of the certificate, though Redis is reached at 127.0.0.1
    }));
    EXPECT_EQ(status_of_parameters(right), 200);
}

// ---- Cluster -----------------------------------------------------------------------

class cluster
{
public:
    cluster()
    {
        for (int i = 0; i < 3; ++i) nodes_.push_back(std::make_unique<running_redis>(redis_setup{.tls_dir = {}, .client_certs = false, .cluster_dir = dir_.path(), .extra_args = {}}));
        std::string create = "--cluster create";
        for (auto& n : nodes_) create += " 127.0.0.1:" + std::to_string(n->port());
        auto out = nodes_[0]->cli(create + " --cluster-yes");
        if (out.find("All 16384 slots covered") == std::string::npos) throw std::runtime_error("cluster create: " + out);
        wait_until_ok();
    }

    running_redis& node(std::size_t i) { return *nodes_[i]; }
    std::string url() const { return nodes_[0]->url(); }

    // Every node agrees the cluster serves all slots.
    void wait_until_ok()
    {
        for (int i = 0; i < 1000; ++i) {
            bool ok = true;
            for (auto& n : nodes_) ok = ok && n->cli("CLUSTER INFO").find("cluster_state:ok") != std::string::npos;
            if (ok) return;
            std::this_thread::sleep_for(20ms);
        }
        throw std::runtime_error("cluster never reached cluster_state:ok");
    }

    // The node serving the slot of hash tag `tag`.
    std::size_t owner_of(const std::string& tag)
    {
        for (std::size_t i = 0; i < nodes_.size(); ++i)
            if (nodes_[i]->cli("GET '{" + tag + "}x'").find("MOVED") == std::string::npos) return i;
        throw std::runtime_error("no owner for " + tag);
    }

    // Moves the slot of `tag` to node `to` the way redis-cli --cluster reshard does:
    // IMPORTING/MIGRATING, keys moved a few at a time (pausing so requests meet ASK and
    // TRYAGAIN), then every node told the new owner.
    void migrate(const std::string& tag, std::size_t to)
    {
        auto from = owner_of(tag);
        auto slot = std::string(core::trim(nodes_[0]->cli("CLUSTER KEYSLOT " + tag)));
        auto from_id = std::string(core::trim(nodes_[from]->cli("CLUSTER MYID")));
        auto to_id = std::string(core::trim(nodes_[to]->cli("CLUSTER MYID")));
        expect_ok(nodes_[to]->cli("CLUSTER SETSLOT " + slot + " IMPORTING " + from_id));
        expect_ok(nodes_[from]->cli("CLUSTER SETSLOT " + slot + " MIGRATING " + to_id));
        std::this_thread::sleep_for(100ms); // requests in the migrating state: ASK
        for (;;) {
            std::istringstream keys(nodes_[from]->cli("CLUSTER GETKEYSINSLOT " + slot + " 1"));
            std::string key;
            if (!std::getline(keys, key) || core::trim(key).empty()) break;
            nodes_[from]->cli("MIGRATE 127.0.0.1 " + std::to_string(nodes_[to]->port()) + " '' 0 5000 KEYS '" +
                              std::string(core::trim(key)) + "'");
            std::this_thread::sleep_for(50ms); // keys split between nodes: TRYAGAIN
        }
        // The new owner first, as redis-cli does: else the old one sends clients there while
        // it still refuses them.
        expect_ok(nodes_[to]->cli("CLUSTER SETSLOT " + slot + " NODE " + to_id));
        for (std::size_t i = 0; i < nodes_.size(); ++i)
            if (i != to) expect_ok(nodes_[i]->cli("CLUSTER SETSLOT " + slot + " NODE " + to_id));
    }

    // How many keys matching `pattern` each node holds.
    std::vector<long> keys_per_node(const std::string& pattern) const
    {
        std::vector<long> out;
        for (const auto& node : nodes_) {
            std::istringstream keys(node->cli("--scan --pattern '" + pattern + "'"));
            long n = 0;
            for (std::string key; std::getline(keys, key);) n += core::trim(key).empty() ? 0 : 1;
            out.push_back(n);
        }
        return out;
    }

    // Leases still held anywhere in the cluster.
    long leases() const
    {
        long n = 0;
        for (const auto& node : nodes_) {
            std::istringstream keys(node->cli("--scan --pattern '*:active'"));
            for (std::string key; std::getline(keys, key);)
                if (!core::trim(key).empty()) n += std::stol(node->cli("ZCARD '" + std::string(core::trim(key)) + "'"));
        }
        return n;
    }

private:
    static void expect_ok(const std::string& reply)
    {
        if (reply.find("OK") == std::string::npos) throw std::runtime_error("cluster command: " + reply);
    }
    temp_dir dir_;
    std::vector<std::unique_ptr<running_redis>> nodes_;
};

TEST(GatewayRedisCluster, TwoGatewaysShareLimitsThroughASlotMigrationUnderLoadAndAMasterRestart)
{
    cluster c;
    running_emulator emu(slow_streams());
    auto cfg = store_at(c.url(), [](config::gateway_config& g) {
        g.tenants["alpha"].max_concurrent = 2;
        g.tenants["beta"].max_concurrent = 50;
        g.tenants["beta"].rate = config::rate_config{100000, 100000};
    });
    running_gateway a(emu, cfg), b(emu, cfg);
    concurrency_is_shared(a, b, tenant_keys::alpha);

    // beta's slot moves to another master while beta's requests run through both gateways.
    std::atomic<bool> stop{false};
    std::atomic<int> answered{0};
    std::map<int, int> statuses;
    std::mutex statuses_mutex;
    std::vector<std::thread> load;
    for (auto* gw : {&a, &b, &a, &b})
        load.emplace_back([&, gw] {
            auto client = gw->client();
            std::map<int, int> mine;
            while (!stop) {
                mine[get(*client, "/v1/parameters", tenant_keys::beta).status]++;
                ++answered;
            }
            std::lock_guard lock(statuses_mutex);
            for (auto [s, n] : mine) statuses[s] += n;
        });
    auto from = c.owner_of("t:beta");
    c.migrate("t:beta", (from + 1) % 3);
    // Load after the move (MOVED, then the refreshed map): 200 more answers, however long a
    // slow machine takes for them (bounded: 30 s).
    const int at_move = answered.load();
    for (int i = 0; i < 3000 && answered.load() < at_move + 200; ++i) std::this_thread::sleep_for(10ms);
    stop = true;
    for (auto& t : load) t.join();
    EXPECT_EQ(c.owner_of("t:beta"), (from + 1) % 3);
    EXPECT_GT(statuses[200], 100);
    EXPECT_EQ(statuses.size(), 1u) << "every request answered 200 (503: a store error under deny; 429: a leaked lease)";
    EXPECT_EQ(store_errors(a) + store_errors(b), 0);

    // The master holding alpha's limits restarts (no replica: its slots are down meanwhile).
    auto& owner = c.node(c.owner_of("t:alpha"));
    owner.stop();
    owner.start();
    c.wait_until_ok();
    concurrency_is_shared(a, b, tenant_keys::alpha);
    long left = -1;
    for (int i = 0; i < 300 && left != 0; ++i) {
        left = c.leases();
        if (left != 0) std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(left, 0) << "no lease outlives its request";
}

TEST(GatewayRedisCluster, OwnershipRecordsSpreadOverTheMastersAndAreSharedByGateways)
{
    // Each record hashes on itself: the records of many runs land on every master (under
    // one hash tag, one master would hold the whole fleet's records and take all their
    // writes), and a second gateway reads them wherever they are.
    cluster c;
    running_emulator emu;
    running_gateway a(emu, store_at(c.url())), b(emu, store_at(c.url()));
    auto client = a.client();
    std::vector<std::string> runs;
    constexpr long count = 40; // random ids: every master gets one unless (2/3)^40 strikes
    for (long i = 0; i < count; ++i) {
        auto run = post_json(*client, "/apps/workflow/v1/workflows/run", tenant_keys::alpha,
                             json::object{{"inputs", json::object{{"topic", "tea"}}}, {"response_mode", "blocking"}, {"user", "u"}});
        ASSERT_EQ(run.status, 200) << run.body;
        runs.emplace_back(run.json().at("workflow_run_id").as_string());
    }
    // Written off the request path: wait until every run's record is in the cluster.
    std::vector<long> per_node;
    long total = 0;
    for (int i = 0; i < 300 && total < count; ++i) {
        per_node = c.keys_per_node("dify-gateway:{o:workflow_run:*");
        total = per_node[0] + per_node[1] + per_node[2];
        if (total < count) std::this_thread::sleep_for(10ms);
    }
    ASSERT_EQ(total, count);
    EXPECT_EQ(std::count(per_node.begin(), per_node.end(), 0), 0)
        << "records on every master: " << per_node[0] << ", " << per_node[1] << ", " << per_node[2];
    auto other = b.client();
    for (const auto& id : runs) {
        EXPECT_EQ(get(*other, "/apps/workflow/v1/workflows/run/" + id, tenant_keys::beta).status, 404) << id;
        EXPECT_EQ(get(*other, "/apps/workflow/v1/workflows/run/" + id, tenant_keys::alpha).status, 200) << id;
    }
    EXPECT_EQ(store_errors(a) + store_errors(b), 0);
}

// ---- Sentinel ----------------------------------------------------------------------

// Has the sentinel fail gw-master over, asking until it takes the command: it first learns
// of the replica from the master (INFO, every few seconds).
::testing::AssertionResult fail_over(const running_sentinel& sentinel)
{
    std::string answer;
    for (int i = 0; i < 1500; ++i) {
        answer = sentinel.cli("SENTINEL FAILOVER gw-master");
        if (answer.find("OK") != std::string::npos) return ::testing::AssertionSuccess();
        std::this_thread::sleep_for(10ms);
    }
    return ::testing::AssertionFailure() << "SENTINEL FAILOVER: " << answer;
}

TEST(GatewayRedisSentinel, FollowsTheMasterThroughAFailover)
{
    // A master and its replica, both with a password, watched by a sentinel with a password
    // of its own. The gateway knows only the sentinel and the master's name; after a
    // failover its admissions run on the new master.
    // Replicas load a full sync from memory: no dump.rdb is written anywhere.
    const std::vector<std::string> secured{"--requirepass", "m-secret", "--masterauth", "m-secret", "--repl-diskless-load", "swapdb"};
    running_redis master(redis_setup{.tls_dir = {}, .client_certs = false, .cluster_dir = {}, .extra_args = secured});
    auto replica_args = secured;
    replica_args.insert(replica_args.end(), {"--replicaof", "127.0.0.1", std::to_string(master.port())});
    running_redis replica(redis_setup{.tls_dir = {}, .client_certs = false, .cluster_dir = {}, .extra_args = replica_args});
    running_sentinel sentinel("gw-master", master.port(), "m-secret", "s-secret");
    running_emulator emu;
    running_gateway gw(emu, [&](config::gateway_config& c) {
        c.quota_store.type = gw::config::store_kind::redis;
        c.quota_store.url = "redis://:m-secret@gw-master/0";
        c.quota_store.sentinels = {sentinel.address()};
        c.quota_store.sentinel_password = "s-secret";
        c.quota_store.timeout_ms = std::chrono::milliseconds(1000);
        c.quota_store.on_error = gw::config::store_error_policy::deny;
        c.tenants["alpha"].max_concurrent = 5; // admissions run the tenant's script
        c.server.threads = 1; // one client: the one that knew the old master follows the failover
    });
    auto admissions_on = [](const running_redis& node) {
        auto stats = node.cli("-a m-secret --no-auth-warning INFO commandstats");
        auto at = stats.find("cmdstat_evalsha:calls=");
        return at == std::string::npos ? 0L : std::stol(stats.substr(at + 22));
    };
    EXPECT_EQ(status_of_parameters(gw), 200);
    EXPECT_GT(admissions_on(master), 0) << "decided on the master the sentinel named";

    ASSERT_TRUE(fail_over(sentinel));
    const auto promoted = std::to_string(replica.port());
    bool switched = false;
    for (int i = 0; i < 1000 && !switched; ++i) {
        switched = sentinel.cli("SENTINEL get-master-addr-by-name gw-master").find(promoted) != std::string::npos;
        if (!switched) std::this_thread::sleep_for(10ms);
    }
    ASSERT_TRUE(switched) << "the sentinel promoted the replica";
    // The gateway hears of the switch (or asks the sentinel, every second): requests are decided on
    // the new master.
    const long before = admissions_on(replica);
    int status = 0;
    for (int i = 0; i < 300 && !(status == 200 && admissions_on(replica) > before); ++i) {
        status = status_of_parameters(gw);
        if (status != 200 || admissions_on(replica) == before) std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(status, 200);
    EXPECT_GT(admissions_on(replica), before) << "admissions follow the failover";
}

// One command through `client` on its executor (the client is not thread-safe).
net::awaitable<std::tuple<error_code, std::vector<gateway::redis_value>>> exec_one(std::shared_ptr<gateway::redis_client> client,
                                                                                   gateway::redis_client::command cmd)
{
    const std::vector<gateway::redis_client::command> commands{std::move(cmd)};
    co_return co_await client->exec(commands, gateway::redis_client::clock::now() + 2s);
}

net::awaitable<void> close_client(std::shared_ptr<gateway::redis_client> client)
{
    client->close();
    co_return;
}

// What the process logs while it lives (a sink added to the default logger). Read it only
// once the threads that log have ended.
class captured_log
{
public:
    captured_log() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)) { spdlog::default_logger()->sinks().push_back(sink_); }
    ~captured_log()
    {
        auto& sinks = spdlog::default_logger()->sinks();
        sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
    }
    std::string text() const { return out_.str(); }

private:
    std::ostringstream out_;
    std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

// A master, its replica and a sentinel watching them as gw-master, and a Redis client of
// the sentinel on a thread of its own; the test drives the client through node_port().
class sentinel_client_fixture
{
public:
    explicit sentinel_client_fixture(std::function<void(config::quota_store_config&, running_sentinel&)> setup,
                                     std::chrono::milliseconds poll)
        : master_(redis_setup{.tls_dir = {}, .client_certs = false, .cluster_dir = {}, .extra_args = diskless()}),
          replica_(redis_setup{.tls_dir = {}, .client_certs = false, .cluster_dir = {}, .extra_args = replica_args(master_.port())}),
          sentinel_("gw-master", master_.port())
    {
        config::quota_store_config store;
        store.type = config::store_kind::redis;
        store.url = "redis://gw-master/0";
        store.sentinels = {sentinel_.address()};
        setup(store, sentinel_);
        auto options = gateway::redis_options(store, nullptr);
        options.sentinel_poll = poll;
        client_ = std::make_shared<gateway::redis_client>(io_.get_executor(), options);
        runner_ = std::thread([this] { io_.run(); });
    }
    ~sentinel_client_fixture()
    {
        net::co_spawn(io_, close_client(client_), net::use_future).get(); // the client's watcher ends
        work_.reset();
        runner_.join();
    }
    // The port of the node the client's calls go to (CONFIG GET port: a read, which a
    // former master still answers), or the call's error.
    std::string node_port()
    {
        auto [ec, replies] = net::co_spawn(io_, exec_one(client_, {"CONFIG", "GET", "port"}), net::use_future).get();
        return !ec && replies.size() == 1 && replies[0].elements.size() == 2 ? replies[0].elements[1].str : ec.message();
    }
    // Waits (up to 10 s) until the client's calls go to the replica the failover promoted.
    bool follows_to_replica()
    {
        const auto promoted = std::to_string(replica_.port());
        for (int i = 0; i < 1000; ++i) {
            if (node_port() == promoted) return true;
            std::this_thread::sleep_for(10ms);
        }
        return false;
    }
    const running_redis& master() const { return master_; }
    const running_redis& replica() const { return replica_; }
    const running_sentinel& sentinel() const { return sentinel_; }

private:
    static std::vector<std::string> diskless() { return {"--repl-diskless-load", "swapdb"}; }
    static std::vector<std::string> replica_args(std::uint16_t master_port)
    {
        auto args = diskless();
        args.insert(args.end(), {"--replicaof", "127.0.0.1", std::to_string(master_port)});
        return args;
    }
    running_redis master_;
    running_redis replica_;
    running_sentinel sentinel_;
    net::io_context io_;
    net::executor_work_guard<net::io_context::executor_type> work_ = net::make_work_guard(io_);
    std::shared_ptr<gateway::redis_client> client_;
    std::thread runner_;
};

TEST(GatewayRedisSentinel, AFailoverTheSentinelsAnnounceIsFollowedAtOnce)
{
    // The client subscribes to the sentinel's +switch-master. Asked only once an hour here,
    // and with no call failing (reads, which a former master still answers), it follows the
    // failover as the sentinel announces it.
    captured_log log;
    {
        sentinel_client_fixture redis([](config::quota_store_config&, running_sentinel&) {}, std::chrono::hours(1));
        EXPECT_EQ(redis.node_port(), std::to_string(redis.master().port())) << "the master the sentinel named";
        ASSERT_TRUE(fail_over(redis.sentinel()));
        EXPECT_TRUE(redis.follows_to_replica()) << "the announced master, with no question asked since the start";
    }
    EXPECT_NE(log.text().find("(announced by a sentinel)"), std::string::npos) << log.text();
}

TEST(GatewayRedisSentinel, ASentinelThatRefusesTheSubscriptionIsLoggedAndAskingStillFollows)
{
    // An ACL user of the sentinel without channel permissions (Redis 7's default for new
    // users): SUBSCRIBE is refused NOPERM. The client says so once and follows the failover
    // by asking (every 200 ms here).
    captured_log log;
    std::string replica_address;
    {
        sentinel_client_fixture redis(
            [](config::quota_store_config& store, running_sentinel& sentinel) {
                EXPECT_NE(sentinel.cli("ACL SETUSER gw on '>gw-secret' +@all").find("OK"), std::string::npos);
                store.sentinel_username = "gw";
                store.sentinel_password = "gw-secret";
            },
            200ms);
        EXPECT_EQ(redis.node_port(), std::to_string(redis.master().port()));
        replica_address = "127.0.0.1:" + std::to_string(redis.replica().port());
        ASSERT_TRUE(fail_over(redis.sentinel()));
        EXPECT_TRUE(redis.follows_to_replica());
    }
    const auto text = log.text();
    EXPECT_NE(text.find("refused SUBSCRIBE to its failover events (NOPERM"), std::string::npos) << text;
    EXPECT_EQ(text.find("refused SUBSCRIBE", text.find("refused SUBSCRIBE") + 1), std::string::npos) << "once, not at every question";
    EXPECT_NE(text.find("to " + replica_address + " (named by a sentinel)"), std::string::npos) << "moved on asking: " << text;
    EXPECT_EQ(text.find("(announced by a sentinel)"), std::string::npos) << text;
}

TEST(GatewayRedisSentinel, ThroughAFailoverUnderLoadNoUsageIsLost)
{
    // Requests flow while the sentinel fails the master over. The old master keeps taking
    // writes after its replica was promoted, and loses them once it becomes a replica
    // itself; the gateway sends it nothing from the moment a sentinel starts the promotion
    // (admissions meanwhile are unchecked under `allow`, and settled once on the new
    // master), so the new master counts every token Dify reported.
    const std::vector<std::string> diskless{"--repl-diskless-load", "swapdb"};
    running_redis master(redis_setup{.tls_dir = {}, .client_certs = false, .cluster_dir = {}, .extra_args = diskless});
    auto replica_args = diskless;
    replica_args.insert(replica_args.end(), {"--replicaof", "127.0.0.1", std::to_string(master.port())});
    running_redis replica(redis_setup{.tls_dir = {}, .client_certs = false, .cluster_dir = {}, .extra_args = replica_args});
    // The replica's first full sync (diskless: the master waits 5 s for more replicas to
    // join it) before the load: a replica promoted before it lacks the usage for another reason.
    for (int i = 0; i < 1500 && replica.cli("INFO replication").find("master_link_status:up") == std::string::npos; ++i)
        std::this_thread::sleep_for(10ms);
    ASSERT_NE(replica.cli("INFO replication").find("master_link_status:up"), std::string::npos) << "the replica synced";
    // Two sentinels; the gateway asks the first, and the second leads the failover: the
    // first learns of it only from the second (hello messages, every 2 s), so the fence and
    // the new master come from the second's events, and the first's answers meanwhile are
    // stale.
    running_sentinel asked("gw-master", master.port()), leader("gw-master", master.port());
    running_emulator emu;
    running_gateway gw(emu, [&](config::gateway_config& c) {
        c.quota_store.type = gw::config::store_kind::redis;
        c.quota_store.url = "redis://gw-master/0";
        c.quota_store.sentinels = {asked.address(), leader.address()};
        c.quota_store.timeout_ms = std::chrono::milliseconds(1000);
        c.quota_store.on_error = gw::config::store_error_policy::allow;
        c.tenants["alpha"].tokens_per_day = 1'000'000'000;
        c.server.threads = 1;
    });
    std::atomic<bool> stop{false};
    std::atomic<std::int64_t> reported{0};
    std::atomic<int> answered{0};
    std::vector<std::thread> load;
    for (int t = 0; t < 4; ++t)
        load.emplace_back([&] {
            auto c = gw.client();
            while (!stop) {
                auto r = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("load", "u"));
                if (r.status != 200) continue;
                reported += r.json().at("metadata").at("usage").at("total_tokens").as_int64();
                ++answered;
            }
        });
    // Bounded waits: a failover that never ends fails the test rather than hanging it.
    const auto until = [&](int n) {
        for (int i = 0; i < 10'000 && answered < n; ++i) std::this_thread::sleep_for(1ms);
    };
    until(50);
    const bool failed_over = fail_over(leader);
    const auto promoted = std::to_string(replica.port());
    for (int i = 0; i < 1000 && leader.cli("SENTINEL get-master-addr-by-name gw-master").find(promoted) == std::string::npos; ++i)
        std::this_thread::sleep_for(10ms);
    const int at_switch = answered;
    until(at_switch + 50);
    stop = true;
    for (auto& t : load) t.join();
    ASSERT_TRUE(failed_over);

    const auto used = [&] {
        return std::string(core::trim(replica.cli("HGET 'dify-gateway:{t:alpha}:tokens' used:" + std::to_string(std::time(nullptr) / 86'400))));
    };
    for (int i = 0; i < 500 && used() != std::to_string(reported.load()); ++i) std::this_thread::sleep_for(10ms); // settlements land
    EXPECT_EQ(used(), std::to_string(reported.load())) << answered << " requests answered";
}

TEST(GatewayRedisSentinel, OverTlsTheSentinelAndTheMasterAreVerified)
{
    // rediss://: the sentinel is reached over TLS and verified by its configured host name,
    // the master by the address the sentinel gives (the test certificate names 127.0.0.1).
    temp_dir dir;
    write_test_pki(dir.path());
    running_redis master(redis_setup{.tls_dir = dir.path(), .client_certs = false, .cluster_dir = {}, .extra_args = {}});
    running_sentinel sentinel("gw-master", master.port(), "", "", dir.path());
    running_emulator emu;
    for (const auto& ca : {dir.path() + "/ca.pem", std::string()}) { // then the system trust store, which does not know the test CA
        running_gateway gw(emu, [&](config::gateway_config& c) {
            c.quota_store.type = gw::config::store_kind::redis;
            c.quota_store.url = "rediss://gw-master/0";
            c.quota_store.sentinels = {sentinel.address()};
            c.quota_store.ca_file = ca;
            c.quota_store.timeout_ms = std::chrono::milliseconds(1000);
            c.quota_store.on_error = gw::config::store_error_policy::deny;
            c.tenants["alpha"].rate = config::rate_config{1000, 1000}; // a key that outlives the request
        });
        const bool trusted = ca == dir.path() + "/ca.pem";
        EXPECT_EQ(status_of_parameters(gw), trusted ? 200 : 503) << ca;
        EXPECT_EQ(store_errors(gw) > 0, !trusted) << ca << ": another CA is a store error";
    }
    EXPECT_NE(master.cli("KEYS '*'").find("{t:alpha}"), std::string::npos) << "the state lives in the master the sentinel named";
}

TEST(GatewayRedisSentinel, AWrongSentinelPasswordOrMasterNameIsAStoreErrorNeverAHang)
{
    running_redis master;
    running_sentinel sentinel("gw-master", master.port(), "", "s-secret");
    running_emulator emu;
    for (auto [name, password] : {std::pair{"gw-master", "wrong"}, {"no-such-master", "s-secret"}}) {
        running_gateway gw(emu, [&](config::gateway_config& c) {
            c.quota_store.type = gw::config::store_kind::redis;
            c.quota_store.url = std::string("redis://") + name + "/0";
            c.quota_store.sentinels = {sentinel.address()};
            c.quota_store.sentinel_password = password;
            c.quota_store.timeout_ms = std::chrono::milliseconds(200);
            c.quota_store.on_error = gw::config::store_error_policy::deny;
            c.tenants["alpha"].max_concurrent = 5;
        });
        EXPECT_EQ(status_of_parameters(gw), 503) << name << ": deny, as for any store error";
        EXPECT_GE(store_errors(gw), 1) << name;
        http_client admin(gw.server().admin_endpoint(), false);
        EXPECT_EQ(admin.request("GET", "/healthz").status, 200) << "still serving";
    }
}

// ---- Load --------------------------------------------------------------------------

TEST(GatewayRedisLoad, SaturatingLoadRefusesNothingAndLeavesNoLease)
{
    running_redis redis;
    running_emulator emu;
    running_gateway gw(emu, store_at(redis.url(), [](config::gateway_config& g) {
        g.server.threads = 1; // more clients than workers, as in the benchmark
        g.tenants["alpha"].max_concurrent = 40;
        g.tenants["alpha"].tokens_per_day = 1'000'000'000;
    }));
    std::atomic<bool> stop{false};
    std::atomic<int> ok{0}, refused{0}, other{0};
    std::mutex first_mutex;
    std::string first_refusal;
    std::vector<std::thread> clients;
    for (int i = 0; i < 32; ++i)
        clients.emplace_back([&] {
            auto c = gw.client();
            while (!stop) {
                auto r = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("load", "u"));
                (r.status == 200 ? ok : r.status == 429 ? refused : other)++;
                std::lock_guard lock(first_mutex);
                if (r.status != 200 && first_refusal.empty()) first_refusal = std::to_string(r.status) + " " + r.body;
            }
        });
    std::this_thread::sleep_for(2s); // a duration of load, not a wait for an event
    stop = true;
    for (auto& t : clients) t.join();
    EXPECT_GT(ok.load(), 200);
    EXPECT_EQ(refused.load(), 0) << "32 clients never exceed max_concurrent 40; the first: " << first_refusal;
    EXPECT_EQ(other.load(), 0);
    EXPECT_EQ(store_errors(gw), 0);
    std::string left;
    for (int i = 0; i < 300 && left != "0"; ++i) {
        left = std::string(core::trim(redis.cli("ZCARD 'dify-gateway:{t:alpha}:active'")));
        if (left != "0") std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(left, "0") << "every lease released";
    auto fields = redis.cli("HGETALL 'dify-gateway:{t:alpha}:tokens'");
    EXPECT_EQ(fields.find("hold:"), std::string::npos) << "every reservation settled: " << fields;
}

// ---- Leases ------------------------------------------------------------------------

TEST(GatewayRedisLeases, AStreamLongerThanTheLeaseTtlKeepsItsSlotAndReleasesIt)
{
    running_redis redis;
    running_emulator emu;
    running_gateway gw(emu, store_at(redis.url(), [](config::gateway_config& g) {
        g.quota_store.lease_ttl_s = std::chrono::seconds(5); // renewed every ~1.7 s
        g.tenants["alpha"].max_concurrent = 1;
    }));
    auto c = gw.client();
    auto h = bearer(tenant_keys::alpha);
    h.emplace_back("X-Emulator-Fault", "stall_ms=7000; after=1"); // Dify is quiet for 7 s mid-stream
    c->send("POST", "/v1/chat-messages", h, json::serialize(chat_body("one two three", "u", "streaming")));
    ASSERT_EQ(c->read_head().status, 200);
    const std::string key = "'dify-gateway:{t:alpha}:active'";
    auto expiry = [&] {
        std::istringstream out(redis.cli("ZRANGE " + key + " 0 0 WITHSCORES"));
        std::string lease, score;
        out >> lease >> score;
        return score.empty() ? 0.0 : std::stod(score);
    };
    auto first = expiry();
    ASSERT_GT(first, 0) << "the stream holds a lease";
    std::this_thread::sleep_for(6s); // past the TTL the lease was admitted with
    EXPECT_GT(expiry(), first) << "renewed while the stream runs";
    EXPECT_EQ(status_of_parameters(gw), 429) << "the slot is still taken: max_concurrent 1";
    c->read_rest();
    std::string left;
    for (int i = 0; i < 300 && left != "0"; ++i) {
        left = std::string(core::trim(redis.cli("ZCARD " + key)));
        if (left != "0") std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(left, "0") << "released when it ends";
}

// ---- Outages -----------------------------------------------------------------------

std::int64_t used_today(running_redis& redis)
{
    auto day = std::to_string(std::time(nullptr) / 86400);
    auto v = std::string(core::trim(redis.cli("HGET 'dify-gateway:{t:alpha}:tokens' used:" + day)));
    return v.empty() ? 0 : std::stoll(v);
}

TEST(GatewayRedisOutage, UsageAdmittedWhileRedisHangsIsSettledWhenItAnswersAgain)
{
    running_redis redis;
    running_emulator emu;
    running_gateway gw(emu, store_at(redis.url(), [](config::gateway_config& g) {
        g.server.threads = 1;
        g.quota_store.timeout_ms = std::chrono::milliseconds(100);
        g.quota_store.on_error = gw::config::store_error_policy::allow;
        g.tenants["alpha"].tokens_per_day = 1'000'000;
    }));
    std::int64_t reported = 0;
    std::vector<std::string> conversations;
    auto chat = [&] {
        auto c = gw.client();
        auto r = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("count me", "u"));
        EXPECT_EQ(r.status, 200) << r.body;
        if (r.status != 200) return;
        reported += r.json().at("metadata").at("usage").at("total_tokens").as_int64();
        conversations.emplace_back(r.json().at("conversation_id").as_string());
    };
    for (int i = 0; i < 3; ++i) chat(); // reserved in Redis, settled
    redis.pause();                        // hangs: every call times out
    conversations.clear();
    for (int i = 0; i < 3; ++i) chat();   // admitted unchecked (allow); their usage and owners wait
    http_client admin(gw.server().admin_endpoint(), false);
    auto store = [&] { return admin.request("GET", "/admin/usage").json().at("quota_store"); };
    EXPECT_GE(store().at("errors").to_number<std::int64_t>(), 3);
    EXPECT_GT(store().at("pending_writes").to_number<std::int64_t>(), 0) << "the usage is kept, not dropped";
    redis.resume();
    std::int64_t in_redis = 0;
    for (int i = 0; i < 1000 && in_redis != reported; ++i) {
        in_redis = used_today(redis);
        if (in_redis != reported) std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(in_redis, reported) << "every request's tokens, once: retried settlements do not count twice";
    EXPECT_GT(store().at("retried_writes").to_number<std::int64_t>(), 0);
    EXPECT_EQ(store().at("dropped_writes").to_number<std::int64_t>(), 0);
    for (int i = 0; i < 100 && store().at("pending_writes").to_number<std::int64_t>() != 0; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(store().at("pending_writes").to_number<std::int64_t>(), 0);
    ASSERT_EQ(conversations.size(), 3u);
    for (const auto& id : conversations) { // ownership records, retried as they were written
        std::string owner; // the last batch may still be on its way
        for (int i = 0; i < 100 && owner != "alpha"; ++i) {
            owner = std::string(core::trim(redis.cli("GET 'dify-gateway:{o:conversation:" + id + "}'")));
            if (owner != "alpha") std::this_thread::sleep_for(10ms);
        }
        EXPECT_EQ(owner, "alpha") << id;
    }
    chat(); // and requests are decided in Redis again
    // Its settlement is flushed after the reply, with the worker's next batch.
    for (int i = 0; i < 1000 && (in_redis = used_today(redis)) != reported; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(in_redis, reported);
    EXPECT_EQ(admin.request("GET", "/admin/usage").json().at("tenants").at("alpha").at("tokens_today").to_number<std::int64_t>(),
              used_today(redis))
        << "the budget is read from Redis";
}

} // namespace
} // namespace gw::test
