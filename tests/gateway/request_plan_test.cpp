// plan_request, without sockets: a request head and a configuration snapshot resolve to a
// refusal (in the order the gateway checks) or to the tenant, app, route and how Dify
// reads the request.
#include "gateway/proxy/request_plan.hpp"

#include "config/validate.hpp"
#include "tests/emulator/emulator_test_util.hpp"
#include "tests/support/gateway_fixture.hpp"

#include <gtest/gtest.h>

namespace gw::gateway {
namespace {

namespace http = boost::beast::http;

// An upstream and the chat and workflow apps; tenants are added by the caller.
config::gateway_config base_config()
{
    config::gateway_config c;
    c.server.listen = "127.0.0.1:0";
    c.admin.listen = "127.0.0.1:0";
    config::upstream_config u;
    u.url = "https://localhost:8443";
    c.upstreams["dify"] = u;
    c.apps["chat"] = {"dify", {test::keys::chat}, 0};
    c.apps["workflow"] = {"dify", {test::keys::workflow}, 0};
    return c;
}

std::shared_ptr<const tenant_directory> make_directory(config::gateway_config c)
{
    config::problems problems;
    config::validate(c, problems);
    EXPECT_TRUE(problems.empty());
    return std::make_shared<const tenant_directory>(std::make_shared<const config::gateway_config>(std::move(c)));
}

std::shared_ptr<const tenant_directory> directory()
{
    auto c = base_config();
    config::tenant_config alpha;
    alpha.keys = {test::tenant_keys::alpha};
    alpha.apps = {"chat", "workflow"};
    alpha.default_app = "chat";
    c.tenants["alpha"] = alpha;
    return make_directory(std::move(c));
}

request_head head(http::verb method, std::string target, const std::string& key = test::tenant_keys::alpha)
{
    request_head h;
    h.method(method);
    h.target(target);
    h.version(11);
    h.set(http::field::host, "gateway");
    if (!key.empty()) h.set(http::field::authorization, "Bearer " + key);
    return h;
}

// Two tenants, each with its own key.
std::shared_ptr<const tenant_directory> two_tenant_directory()
{
    auto c = base_config();
    for (const auto& [name, key] : {std::pair{"alpha", test::tenant_keys::alpha}, {"beta", test::tenant_keys::beta}}) {
        config::tenant_config t;
        t.keys = {key};
        t.apps = {"chat"};
        c.tenants[name] = t;
    }
    return make_directory(std::move(c));
}

TEST(RequestPlan, AConnectionsRememberedKeyNamesOnlyItsOwnTenant)
{
    // A connection remembers the key it presented last: the same header again is the same
    // tenant without hashing; any other header is authenticated afresh, a refused key is
    // never remembered, and another directory (a reload) does not use the memo.
    auto dir = two_tenant_directory();
    key_memo memo;
    auto first = plan_request(*dir, head(http::verb::post, "/v1/chat-messages", test::tenant_keys::alpha), &memo);
    ASSERT_FALSE(first.refusal);
    EXPECT_EQ(first.who->name, "alpha");
    EXPECT_EQ(memo.who, first.who);
    auto again = plan_request(*dir, head(http::verb::post, "/v1/chat-messages", test::tenant_keys::alpha), &memo);
    ASSERT_FALSE(again.refusal);
    EXPECT_EQ(again.who, first.who);
    auto other = plan_request(*dir, head(http::verb::post, "/v1/chat-messages", test::tenant_keys::beta), &memo);
    ASSERT_FALSE(other.refusal);
    EXPECT_EQ(other.who->name, "beta") << "another key on the same connection is that key's tenant";
    for (const auto& bad : {test::tenant_keys::alpha + "x", test::tenant_keys::beta.substr(1), std::string("")}) {
        auto refused = plan_request(*dir, head(http::verb::post, "/v1/chat-messages", bad), &memo);
        ASSERT_TRUE(refused.refusal) << bad;
        EXPECT_EQ(refused.refusal->status, 401) << bad;
        EXPECT_EQ(memo.who->name, "beta") << "a refused key is not remembered";
    }
    auto cased = head(http::verb::post, "/v1/chat-messages", "");
    cased.set(http::field::authorization, "bearer " + test::tenant_keys::beta);
    auto lower = plan_request(*dir, cased, &memo);
    ASSERT_FALSE(lower.refusal);
    EXPECT_EQ(lower.who->name, "beta");
    auto reloaded = two_tenant_directory();
    auto after = plan_request(*reloaded, head(http::verb::post, "/v1/chat-messages", test::tenant_keys::beta), &memo);
    ASSERT_FALSE(after.refusal);
    EXPECT_EQ(after.who->name, "beta");
    EXPECT_NE(after.who, other.who) << "the new directory's tenant, not the old one's";
    EXPECT_EQ(memo.who, after.who);
}

TEST(RequestPlan, AGenerationRouteResolvesOnce)
{
    auto dir = directory();
    auto plan = plan_request(*dir, head(http::verb::post, "/v1/chat-messages"));
    ASSERT_FALSE(plan.refusal);
    EXPECT_EQ(plan.who->name, "alpha");
    EXPECT_EQ(plan.target->app->name, "chat") << "the tenant's default app";
    ASSERT_NE(plan.route, nullptr);
    EXPECT_TRUE(plan.generates);
    EXPECT_EQ(plan.place, core::user_place::json_body);
    EXPECT_FALSE(plan.uploads_file);
    auto upload = plan_request(*dir, head(http::verb::post, "/apps/workflow/v1/files/upload"));
    ASSERT_FALSE(upload.refusal);
    EXPECT_EQ(upload.target->app->name, "workflow");
    EXPECT_TRUE(upload.uploads_file);
    EXPECT_FALSE(upload.generates);
}

TEST(RequestPlan, NamesAreResolvedToHandlesOnceAtLoad)
{
    auto dir = directory();
    auto plan = plan_request(*dir, head(http::verb::post, "/apps/workflow/v1/workflows/run"));
    ASSERT_FALSE(plan.refusal);
    const auto& app = *plan.target->app;
    EXPECT_EQ(app.cfg, &dir->config().apps.at("workflow"));
    EXPECT_EQ(app.upstream, &dir->config().upstreams.at("dify")) << "the upstream, without a lookup by name later";
    EXPECT_EQ(*app.upstream_name, "dify");
    EXPECT_EQ(plan.endpoint, endpoint_id(plan.route));
    EXPECT_EQ(endpoint_label(plan.endpoint), "POST /workflows/run");

    auto& names = metric_names::process();
    EXPECT_EQ(plan.pair, names.pair("alpha", "workflow"));
    EXPECT_EQ(app.upstream_id, names.upstream("dify"));
    EXPECT_EQ(plan.who->id, names.tenant("alpha"));
    auto labels = names.all();
    EXPECT_EQ(labels.pairs.at(plan.pair), (std::pair<std::string, std::string>{"alpha", "workflow"}));

    auto refused = plan_request(*dir, head(http::verb::get, "/v1/no-such-route"));
    EXPECT_EQ(refused.pair, names.pair("alpha", "")) << "authenticated, not routed";
    EXPECT_EQ(endpoint_label(refused.endpoint), "");
    auto anonymous = plan_request(*dir, head(http::verb::get, "/v1/parameters", "no-such-key"));
    EXPECT_EQ(anonymous.pair, metric_names::anonymous);

    auto reloaded = directory(); // a reload of the same names keeps every id
    auto again = plan_request(*reloaded, head(http::verb::post, "/apps/workflow/v1/workflows/run"));
    EXPECT_EQ(again.pair, plan.pair);
    EXPECT_EQ(again.target->app->id, app.id);
}

TEST(RequestPlan, RefusalsComeInTheOrderTheGatewayChecks)
{
    auto dir = directory();
    auto ambiguous = head(http::verb::post, "/v1/chat-messages", "no-such-key");
    ambiguous.insert(http::field::content_length, "1");
    ambiguous.insert(http::field::content_length, "2");
    auto plan = plan_request(*dir, ambiguous);
    ASSERT_TRUE(plan.refusal);
    EXPECT_EQ(plan.refusal->status, 400) << "framing first, before the key is even looked at";
    EXPECT_TRUE(plan.close_after_refusal);
    EXPECT_EQ(plan.who, nullptr);

    plan = plan_request(*dir, head(http::verb::get, "/v1/../../etc", "no-such-key"));
    ASSERT_TRUE(plan.refusal);
    EXPECT_EQ(plan.refusal->status, 400) << "a path above the root";
    EXPECT_FALSE(plan.close_after_refusal);

    plan = plan_request(*dir, head(http::verb::get, "/v1/parameters", "no-such-key"));
    ASSERT_TRUE(plan.refusal);
    EXPECT_EQ(plan.refusal->status, 401);

    plan = plan_request(*dir, head(http::verb::get, "/apps/not-mine/v1/parameters"));
    ASSERT_TRUE(plan.refusal);
    EXPECT_NE(plan.who, nullptr) << "authenticated, then refused on the app";
    EXPECT_FALSE(plan.target);

    plan = plan_request(*dir, head(http::verb::get, "/v1/no-such-route"));
    ASSERT_TRUE(plan.refusal);
    EXPECT_EQ(plan.refusal->status, 404);

    plan = plan_request(*dir, head(http::verb::delete_, "/v1/chat-messages"));
    ASSERT_TRUE(plan.refusal);
    EXPECT_EQ(plan.refusal->status, 405);
}

} // namespace
} // namespace gw::gateway
