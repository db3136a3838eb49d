// The sans-io halves of the Redis client: replies matched to the calls of one multiplexed
// connection (redis_pipeline), Redis Cluster routing facts (redis_slots), which master a
// Sentinel client follows (sentinel_follower), and which background writes merge into one
// command (redis_scripts).
#include "gateway/quota/redis_pipeline.hpp"
#include "gateway/quota/redis_scripts.hpp"
#include "gateway/quota/redis_slots.hpp"
#include "gateway/quota/sentinel_follower.hpp"

#include <gtest/gtest.h>

namespace gw::gateway {
namespace {

std::shared_ptr<redis_call> call_for(std::size_t replies, int* woken = nullptr)
{
    auto c = std::make_shared<redis_call>();
    c->expected = replies;
    if (woken) c->on_done = [woken] { ++*woken; };
    return c;
}

TEST(RedisPipeline, RepliesGoToTheCallsInOrderWhateverTheByteBoundaries)
{
    redis_pipeline p;
    int woken = 0;
    auto a = call_for(2, &woken), b = call_for(1, &woken);
    p.submit(a, "A1A2");
    p.submit(b, "B1");
    EXPECT_EQ(p.take_output(), "A1A2B1") << "one write for both callers";
    EXPECT_FALSE(p.has_output());
    const std::string wire = ":1\r\n$2\r\nok\r\n-ERR no\r\n";
    for (char c : wire) ASSERT_TRUE(p.feed(&c, 1)); // a byte at a time
    ASSERT_TRUE(a->done && b->done);
    EXPECT_EQ(woken, 2);
    ASSERT_EQ(a->replies.size(), 2u);
    EXPECT_EQ(a->replies[0].integer, 1);
    EXPECT_EQ(a->replies[1].str, "ok");
    EXPECT_TRUE(b->replies[0].is_error()) << "an error reply is a value";
    EXPECT_EQ(p.in_flight(), 0u);
}

TEST(RedisPipeline, ACallWhoseCallerGaveUpStillConsumesItsReplies)
{
    redis_pipeline p;
    auto gone = call_for(1), next = call_for(1);
    p.submit(gone, "x");
    p.submit(next, "y");
    gone->on_done = nullptr; // its caller's deadline passed
    ASSERT_TRUE(p.feed(":1\r\n:2\r\n", 8));
    EXPECT_EQ(next->replies.at(0).integer, 2) << "the stream stays in step";
}

TEST(RedisPipeline, UnaskedOrMalformedRepliesAndFailuresEndEveryCall)
{
    redis_pipeline p;
    EXPECT_FALSE(p.feed(":1\r\n", 4)) << "a reply nobody asked for: out of step";
    redis_pipeline q;
    auto c = call_for(1);
    q.submit(c, "x");
    EXPECT_FALSE(q.feed("?bad\r\n", 6)) << "not RESP";
    redis_pipeline r;
    int woken = 0;
    auto d = call_for(2, &woken), e = call_for(1, &woken);
    r.submit(d, "x");
    r.submit(e, "y");
    ASSERT_TRUE(r.feed(":1\r\n", 4));
    r.fail_all(boost::system::errc::make_error_code(boost::system::errc::connection_reset));
    EXPECT_TRUE(d->done && e->done);
    EXPECT_TRUE(d->ec && e->ec);
    EXPECT_EQ(woken, 2);
}

TEST(RedisPipeline, ASubscriptionTakesEveryReplyAsItComesUntilTheConnectionEnds)
{
    redis_pipeline p;
    auto sub = call_for(1);
    std::vector<std::string> seen;
    sub->on_message = [&seen](const redis_value& m) { seen.push_back(m.elements.empty() ? m.str : m.elements[0].str); };
    p.submit(sub, "SUB");
    p.append_output("PING");
    EXPECT_EQ(p.take_output(), "SUBPING") << "PING goes out behind SUBSCRIBE, with no call of its own";
    const std::string wire = "*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n"
                             "*2\r\n$4\r\npong\r\n$0\r\n\r\n"
                             "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n";
    for (char c : wire) ASSERT_TRUE(p.feed(&c, 1)); // a byte at a time
    EXPECT_EQ(seen, (std::vector<std::string>{"subscribe", "pong", "message"}));
    EXPECT_FALSE(sub->done) << "a subscription is never answered in full";
    EXPECT_TRUE(sub->replies.empty());
    EXPECT_EQ(p.in_flight(), 1u);
    p.fail_all(boost::system::errc::make_error_code(boost::system::errc::connection_reset));
    EXPECT_TRUE(sub->done && sub->ec) << "the connection's end ends it";

    // A handler that ends the connection (fail_all) stops the reading: what follows is not
    // handed out, and the pipeline is no longer fed.
    redis_pipeline q;
    auto ended = call_for(1);
    int messages = 0;
    ended->on_message = [&](const redis_value&) {
        ++messages;
        q.fail_all(boost::system::errc::make_error_code(boost::system::errc::operation_canceled));
    };
    q.submit(ended, "SUB");
    q.feed(":1\r\n:2\r\n", 8);
    EXPECT_EQ(messages, 1);
    EXPECT_TRUE(ended->done);
}

TEST(RedisSlots, KeySlotsFollowHashTagsAsTheClusterSpecSays)
{
    EXPECT_EQ(redis_key_slot("123456789"), 12739) << "the specification's CRC16 check value";
    EXPECT_EQ(redis_key_slot("foo"), 12182);
    EXPECT_EQ(redis_key_slot("dify-gateway:{t:alpha}:rate"), redis_key_slot("t:alpha"));
    EXPECT_EQ(redis_key_slot("dify-gateway:{t:alpha}:active"), redis_key_slot("dify-gateway:{t:alpha}:tokens"));
    EXPECT_EQ(redis_key_slot("a{}b"), redis_key_slot("a{}b")) << "an empty tag: the whole key";
    EXPECT_NE(redis_key_slot("a{}b"), redis_key_slot(""));
    EXPECT_EQ(redis_key_slot("{user1000}.following"), redis_key_slot("{user1000}.followers"));
}

TEST(RedisSlots, RedirectionsAndTheirBadForms)
{
    auto m = parse_redis_redirect("MOVED 3999 127.0.0.1:6381");
    ASSERT_TRUE(m);
    EXPECT_FALSE(m->ask);
    EXPECT_EQ(m->slot, 3999);
    EXPECT_EQ(m->to, (redis_node_address{"127.0.0.1", 6381}));
    auto a = parse_redis_redirect("ASK 1 [::1]:7000");
    ASSERT_TRUE(a);
    EXPECT_TRUE(a->ask);
    EXPECT_EQ(a->to.host, "::1");
    EXPECT_EQ(parse_redis_redirect("MOVED 5 :7001")->to.host, "") << "the answering node's own host";
    for (const char* bad : {"ERR x", "MOVED", "MOVED 16384 h:1", "MOVED x h:1", "MOVED 1 h", "MOVED 1 h:0", "ASK 1 h:99999"})
        EXPECT_FALSE(parse_redis_redirect(bad)) << bad;
}

redis_value integer(long long v)
{
    redis_value r;
    r.type = redis_value::kind::integer;
    r.integer = v;
    return r;
}
redis_value string(std::string s)
{
    redis_value r;
    r.type = redis_value::kind::string;
    r.str = std::move(s);
    return r;
}
redis_value array(std::vector<redis_value> e)
{
    redis_value r;
    r.type = redis_value::kind::array;
    r.elements = std::move(e);
    return r;
}

TEST(RedisSlots, TheSlotMapFromClusterSlotsAndMoves)
{
    redis_slot_map map;
    redis_node_address seed{"redis.internal", 7000};
    EXPECT_EQ(map.node_index(seed), 0);
    auto reply = array({array({integer(0), integer(5460), array({string(""), integer(7000), string("id0")})}),
                        array({integer(5461), integer(16383), array({string("10.0.0.2"), integer(7001), string("id1")}),
                               array({string("10.0.0.3"), integer(7002), string("replica")})})});
    ASSERT_TRUE(map.load(reply, seed));
    EXPECT_EQ(map.node_for(0), 0) << "an empty host: the node asked";
    EXPECT_EQ(map.node_for(5460), 0);
    EXPECT_EQ(map.node_for(5461), 1);
    EXPECT_EQ(map.nodes().size(), 2u) << "masters only";
    EXPECT_EQ(map.move(100, {"10.0.0.2", 7001}), 1);
    EXPECT_EQ(map.node_for(100), 1);
    redis_slot_map untouched;
    EXPECT_FALSE(untouched.load(array({array({integer(5), integer(2), array({string("h"), integer(1)})})}), seed)) << "end before start";
    EXPECT_FALSE(untouched.load(array({array({integer(0), integer(16384), array({string("h"), integer(1)})})}), seed));
    EXPECT_FALSE(untouched.load(array({array({integer(0), integer(1), array({string("?"), integer(1)})})}), seed));
    EXPECT_FALSE(untouched.load(string("ERR cluster support disabled"), seed));
    EXPECT_EQ(untouched.node_for(0), -1);
}

TEST(RedisScripts, ATenantsSettlementsOfOneDayMergeIntoOneScriptRun)
{
    auto finish = [](std::string day, std::string lease, std::string tokens) {
        return redis_scripts::finish_tenant({"{t:a}:active", "{t:a}:tokens", "{t:a}:settled:" + day},
                                            {day, lease, lease, std::move(tokens), "1"});
    };
    auto first = finish("20000", "l1", "10");
    const auto single = first.size();
    EXPECT_TRUE(redis_scripts::merge_into(first, finish("20000", "l2", "20")));
    ASSERT_EQ(first.size(), single + 4) << "only the second's four per-request arguments are appended";
    EXPECT_EQ(std::vector<std::string>(first.end() - 4, first.end()), (std::vector<std::string>{"l2", "l2", "20", "1"}));
    EXPECT_FALSE(redis_scripts::merge_into(first, finish("20001", "l3", "5"))) << "another day: its own keys and run";
    auto other_tenant = redis_scripts::finish_tenant({"{t:b}:active", "{t:b}:tokens", "{t:b}:settled:20000"},
                                                     {"20000", "l4", "l4", "1", "1"});
    EXPECT_FALSE(redis_scripts::merge_into(first, other_tenant)) << "another tenant's keys";
    // A batch finds the call a write may merge into by its group: the tenant's and the day's,
    // so that two tenants' settlements of one day, alternating in a batch, still merge.
    EXPECT_EQ(redis_scripts::merge_group(first), "{t:a}:settled:20000");
    EXPECT_NE(redis_scripts::merge_group(first), redis_scripts::merge_group(other_tenant));
    EXPECT_EQ(redis_scripts::merge_group(finish("20000", "l6", "1")), redis_scripts::merge_group(first));
    EXPECT_EQ(redis_scripts::merge_group({"ZREM", "{a:x}:active", "l1"}), "{a:x}:active");
    EXPECT_FALSE(redis_scripts::merge_into(first, finish("20000", "l5", "5"), first.size() + 3)) << "bounded in size";
}

TEST(RedisScripts, ASettlementFoldsIntoAnAdmissionOfItsTenantOnce)
{
    auto admit = [](std::string tenant) {
        const auto k = "{t:" + tenant + "}:";
        return redis_scripts::admit_tenant({k + "rate", k + "active", k + "tokens", k + "cancelled"},
                                           {"5", "10", "3", "1000", "60000", "0", "l9", "100", "1"});
    };
    auto finish = [](std::string tenant, std::string lease) {
        const auto k = "{t:" + tenant + "}:";
        return redis_scripts::finish_tenant({k + "active", k + "tokens", k + "settled:20000"}, {"20000", lease, lease, "20", "1"});
    };
    auto admission = admit("a");
    const auto sha = admission[1];
    ASSERT_TRUE(redis_scripts::fold_settlement(admission, finish("a", "l1")));
    // The settlement's day marks become KEYS[5]; ARGV[6] counts the settlement's day and
    // group, which come before the admission's own lease.
    EXPECT_EQ(admission, (redis_scripts::command{"EVALSHA", sha, "5", "{t:a}:rate", "{t:a}:active", "{t:a}:tokens",
                                                 "{t:a}:cancelled", "{t:a}:settled:20000", "5", "10", "3", "1000", "60000",
                                                 "5", "20000", "l1", "l1", "20", "1", "l9", "100", "1"}));
    const auto folded = admission;
    EXPECT_FALSE(redis_scripts::fold_settlement(admission, finish("a", "l2"))) << "one settlement per run";
    EXPECT_EQ(admission, folded);
    auto other = admit("a");
    EXPECT_FALSE(redis_scripts::fold_settlement(other, finish("b", "l3"))) << "another tenant's keys";
    EXPECT_FALSE(redis_scripts::fold_settlement(other, {"ZREM", "{t:a}:active", "l4"})) << "not a settlement";
    auto app = redis_scripts::admit_app({"{a:x}:active", "{a:x}:cancelled"}, {"2", "60000", "l1"});
    EXPECT_FALSE(redis_scripts::fold_settlement(app, finish("a", "l5"))) << "an app's admission settles nothing";
    EXPECT_EQ(other, admit("a"));
}

TEST(RedisScripts, ReleasesFromOneSetMergeAndOtherCommandsNever)
{
    redis_scripts::command zrem{"ZREM", "{a:x}:active", "l1"};
    EXPECT_TRUE(redis_scripts::merge_into(zrem, {"ZREM", "{a:x}:active", "l2"}));
    EXPECT_EQ(zrem, (redis_scripts::command{"ZREM", "{a:x}:active", "l1", "l2"}));
    EXPECT_FALSE(redis_scripts::merge_into(zrem, {"ZREM", "{a:y}:active", "l3"}));
    redis_scripts::command set{"SET", "{o}:k1", "alpha", "NX", "EX", "60"};
    EXPECT_EQ(redis_scripts::merge_prefix(set), 0u);
    EXPECT_FALSE(redis_scripts::merge_into(set, {"SET", "{o}:k1", "alpha", "NX", "EX", "60"})) << "SET NX EX has no multi-key form";
    auto admit = redis_scripts::admit_app({"{a:x}:active", "{a:x}:cancelled"}, {"2", "60000", "l1"});
    EXPECT_EQ(redis_scripts::merge_prefix(admit), 0u) << "admissions are batched by their callers, not merged as writes";
}

redis_value sentinel_master_reply(std::vector<std::pair<std::string, std::string>> fields)
{
    std::vector<redis_value> flat;
    for (auto& [k, v] : fields) {
        flat.push_back(string(k));
        flat.push_back(string(v));
    }
    return array(std::move(flat));
}

TEST(SentinelFollower, AnAnswerIsTheAddressAndTheEpochAndItsBadForms)
{
    const auto addr = array({string("10.0.0.7"), string("6380")});
    // As a sentinel answers SENTINEL MASTER (more fields between, in any order).
    const auto master = sentinel_master_reply({{"name", "gw-master"}, {"ip", "10.0.0.5"}, {"port", "6379"}, {"config-epoch", "3"}});
    auto a = parse_sentinel_answer(addr, master);
    ASSERT_TRUE(a);
    EXPECT_EQ(a->address, (redis_node_address{"10.0.0.7", 6380})) << "the address from get-master-addr-by-name";
    EXPECT_EQ(a->epoch, 3);
    const redis_value refused{redis_value::kind::error, "NOPERM this user has no permissions to run the 'sentinel|master' command", 0, {}};
    auto no_epoch = parse_sentinel_answer(addr, refused);
    ASSERT_TRUE(no_epoch) << "an ACL user allowed only get-master-addr-by-name";
    EXPECT_EQ(no_epoch->epoch, -1);
    for (const char* epoch : {"", "-1", "x", "1.5"})
        EXPECT_EQ(parse_sentinel_answer(addr, sentinel_master_reply({{"config-epoch", epoch}}))->epoch, -1) << epoch;
    auto odd = master;
    odd.elements.pop_back();
    EXPECT_EQ(parse_sentinel_answer(addr, odd)->epoch, -1) << "a field without its value";

    EXPECT_FALSE(parse_sentinel_answer(redis_value{}, master)) << "nil: no master of that name";
    EXPECT_FALSE(parse_sentinel_answer(refused, master));
    for (const char* port : {"0", "65536", "x", "", "6380 "})
        EXPECT_FALSE(parse_sentinel_answer(array({string("10.0.0.7"), string(port)}), master)) << port;
    EXPECT_FALSE(parse_sentinel_answer(array({string(""), string("6380")}), master)) << "no host";
    EXPECT_FALSE(parse_sentinel_answer(array({string("10.0.0.7"), string("6380"), string("6380")}), master));
    EXPECT_FALSE(parse_sentinel_answer(array({string("10.0.0.7"), integer(6380)}), master));
}

redis_value published(std::string channel, std::string payload)
{
    return array({string("message"), string(std::move(channel)), string(std::move(payload))});
}

TEST(SentinelFollower, TheEventsOfAFailoverAndWhatIsNotOne)
{
    using kind = sentinel_event::kind;
    const redis_node_address m1{"10.0.0.1", 6379}, r1{"10.0.0.2", 6380};
    auto e = parse_sentinel_event(published("+switch-master", "gw-master 10.0.0.1 6379 10.0.0.2 6380"), "gw-master");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->what, kind::switched);
    EXPECT_EQ(e->from, m1);
    EXPECT_EQ(e->to, r1);
    const std::string replica = "slave 10.0.0.2:6380 10.0.0.2 6380 @ gw-master 10.0.0.1 6379";
    e = parse_sentinel_event(published("+failover-state-send-slaveof-noone", replica), "gw-master");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->what, kind::promotion_starts);
    EXPECT_EQ(e->from, m1);
    EXPECT_EQ(e->to, r1);
    e = parse_sentinel_event(published("+promoted-slave", replica), "gw-master");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->what, kind::promoted);
    auto v6 = parse_sentinel_event(published("+switch-master", "m ::1 6379 fe80::2 6380"), "m");
    ASSERT_TRUE(v6);
    EXPECT_EQ(v6->to, (redis_node_address{"fe80::2", 6380}));

    EXPECT_FALSE(parse_sentinel_event(published("+switch-master", "other 10.0.0.1 6379 10.0.0.2 6380"), "gw-master")) << "another master";
    EXPECT_FALSE(parse_sentinel_event(published("+switch-master", "gw 10.0.0.1 6379 10.0.0.2 6380"), "gw-master")) << "a prefix of the name";
    EXPECT_FALSE(parse_sentinel_event(published("+promoted-slave", "slave 10.0.0.2:6380 10.0.0.2 6380 @ other 10.0.0.1 6379"), "gw-master"));
    EXPECT_FALSE(parse_sentinel_event(published("+sdown", "gw-master 10.0.0.1 6379 10.0.0.2 6380"), "gw-master")) << "another channel";
    for (const char* bad : {"gw-master 10.0.0.1 6379 10.0.0.2", "gw-master 10.0.0.1 6379 10.0.0.2 6380 x", "gw-master 10.0.0.1 6379 10.0.0.2 0",
                            "gw-master 10.0.0.1 6379 10.0.0.2 65536", "gw-master 10.0.0.1 6379  6380", "gw-master 10.0.0.1 0 10.0.0.2 6380", "",
                            "gw-master"})
        EXPECT_FALSE(parse_sentinel_event(published("+switch-master", bad), "gw-master")) << bad;
    for (const char* bad : {"slave 10.0.0.2:6380 10.0.0.2 6380 @ gw-master 10.0.0.1", "master gw-master 10.0.0.1 6379",
                            "slave 10.0.0.2:6380 10.0.0.2 6380 # gw-master 10.0.0.1 6379", "slave 10.0.0.2:6380 10.0.0.2 6380 @ gw-master 10.0.0.1 6379 x",
                            "slave 10.0.0.2:6380 10.0.0.2 0 @ gw-master 10.0.0.1 6379", ""})
        EXPECT_FALSE(parse_sentinel_event(published("+failover-state-send-slaveof-noone", bad), "gw-master")) << bad;

    const auto confirmation = array({string("subscribe"), string("+switch-master"), integer(1)});
    EXPECT_TRUE(is_subscription_confirmed(confirmation));
    EXPECT_FALSE(parse_sentinel_event(confirmation, "gw-master"));
    const auto pong = array({string("pong"), string("")});
    EXPECT_FALSE(parse_sentinel_event(pong, "gw-master"));
    EXPECT_FALSE(is_subscription_confirmed(pong));
    const redis_value refused{redis_value::kind::error, "NOPERM this user has no permissions to access one of the channels", 0, {}};
    EXPECT_FALSE(is_subscription_confirmed(refused)) << "a refusal is not the confirmation";
    EXPECT_FALSE(parse_sentinel_event(refused, "gw-master"));
}

TEST(SentinelFollower, AStaleAnswerIsPassedOverUntilEverySentinelGivesOne)
{
    using verdict = sentinel_follower::verdict;
    const redis_node_address m1{"10.0.0.1", 6379}, m2{"10.0.0.2", 6379};
    sentinel_follower f(3);
    EXPECT_EQ(f.on_answer({m1, 4}, 0), verdict::follow);
    EXPECT_EQ(f.master(), m1);
    EXPECT_EQ(f.on_answer({m2, 5}, 1), verdict::follow) << "a failover: a higher epoch";
    EXPECT_EQ(f.on_answer({m1, 4}, 2), verdict::ask_next) << "a sentinel that has not heard of it";
    EXPECT_EQ(f.master(), m2);
    // The only sentinel that answers is behind (a partition): answering again and again, it
    // is still one sentinel, and is never followed.
    for (int i = 0; i < 5; ++i) EXPECT_EQ(f.on_answer({m1, 4}, 2), verdict::ask_next);
    EXPECT_EQ(f.on_answer({m2, 5}, 0), verdict::follow) << "one that has heard";
    // Every sentinel in turn below the epoch followed: their state was reset. The best of
    // their answers is followed.
    EXPECT_EQ(f.on_answer({m1, 0}, 0), verdict::ask_next);
    EXPECT_EQ(f.on_answer({m1, 1}, 1), verdict::ask_next);
    EXPECT_EQ(f.on_answer({m2, 0}, 2), verdict::follow);
    EXPECT_EQ(f.master(), m1) << "the answer under the highest epoch";
    EXPECT_EQ(f.epoch(), 1);
    sentinel_follower one(1);
    EXPECT_EQ(one.on_answer({m2, 7}, 0), verdict::follow);
    EXPECT_EQ(one.on_answer({m1, 2}, 0), verdict::follow) << "a single sentinel is never stale against itself";
    sentinel_follower unknown(2);
    EXPECT_EQ(unknown.on_answer({m1, -1}, 0), verdict::follow) << "no epoch (SENTINEL MASTER refused): compared with none";
    EXPECT_EQ(unknown.on_answer({m2, -1}, 1), verdict::follow);
}

TEST(SentinelFollower, AfterAnAnnouncementTheMasterItLeftIsStaleUnlessANewerEpochNamesIt)
{
    using verdict = sentinel_follower::verdict;
    const redis_node_address m1{"10.0.0.1", 6379}, m2{"10.0.0.2", 6379}, m3{"10.0.0.3", 6379};
    sentinel_follower f(3);
    EXPECT_EQ(f.on_announcement(m1, m2), verdict::follow) << "before any answer";
    EXPECT_EQ(f.master(), m2);
    sentinel_follower g(3);
    EXPECT_EQ(g.on_answer({m1, 4}, 0), verdict::follow);
    // The leader, mid-failover, names the old master under the new epoch; then announces.
    EXPECT_EQ(g.on_answer({m1, 5}, 0), verdict::follow);
    EXPECT_EQ(g.on_announcement(m1, m2), verdict::follow);
    EXPECT_EQ(g.master(), m2);
    EXPECT_EQ(g.on_answer({m2, 5}, 0), verdict::follow) << "the new configuration's own epoch is not stale";
    EXPECT_EQ(g.on_answer({m1, 4}, 1), verdict::ask_next) << "a sentinel that has not heard";
    EXPECT_EQ(g.on_answer({m1, 5}, 2), verdict::ask_next) << "the old master under no higher epoch";
    EXPECT_EQ(g.master(), m2);
    EXPECT_EQ(g.on_answer({m1, 6}, 1), verdict::follow) << "a failover back: a newer epoch";
    EXPECT_EQ(g.master(), m1);
    EXPECT_EQ(g.on_announcement(m2, m3), verdict::ask_now) << "moves a master not in use: out of date";
    EXPECT_EQ(g.master(), m1);
    EXPECT_EQ(g.on_announcement(m2, m1), verdict::follow) << "late, to where the client already is";
}

TEST(SentinelFollower, APromotionFencesTheMasterUntilANewOneIsFollowedOrTheFenceEnds)
{
    using namespace std::chrono_literals;
    using verdict = sentinel_follower::verdict;
    const redis_node_address m1{"10.0.0.1", 6379}, m2{"10.0.0.2", 6379};
    const sentinel_follower::clock::time_point t0{};
    sentinel_follower f(2);
    EXPECT_EQ(f.on_answer({m1, 1}, 0), verdict::follow);
    EXPECT_FALSE(f.fenced(t0));
    f.on_promotion_start(t0);
    EXPECT_TRUE(f.fenced(t0 + 1s));
    EXPECT_EQ(f.fence_end(), t0 + failover_fence);
    EXPECT_EQ(f.on_answer({m1, 2}, 0), verdict::follow) << "a sentinel still names the old master meanwhile";
    EXPECT_TRUE(f.fenced(t0 + 1s)) << "which does not end the fence";
    EXPECT_EQ(f.on_announcement(m1, m2), verdict::follow);
    EXPECT_FALSE(f.fenced(t0 + 1s)) << "the new master ends it";
    f.on_promotion_start(t0);
    EXPECT_EQ(f.on_answer({m1, 3}, 1), verdict::follow) << "asked: the master moved back under a newer epoch";
    EXPECT_FALSE(f.fenced(t0 + 1s)) << "an answer naming another master ends it too";
    f.on_promotion_start(t0);
    EXPECT_TRUE(f.fenced(t0 + failover_fence - 1ms));
    EXPECT_FALSE(f.fenced(t0 + failover_fence)) << "a failover that stalls or was aborted: the master is used again";
}

} // namespace
} // namespace gw::gateway
