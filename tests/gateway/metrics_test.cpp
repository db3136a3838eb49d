// The metrics shard counts by metric_names ids and renders with their names: figures of
// several workers add up, series appear once used, and labels are escaped.
#include "gateway/ops/metric_names.hpp"
#include "gateway/ops/metrics.hpp"

#include <gtest/gtest.h>

namespace gw::gateway {
namespace {

TEST(Metrics, ShardsCountByIdAndRenderByName)
{
    auto& names = metric_names::process();
    const auto pair = names.pair("metrics-a", "app\"1");
    const auto tenant = names.tenant("metrics-a");
    const auto upstream = names.upstream("metrics-up");
    const auto chat = endpoint_id(&core::all_routes()[0]);

    metrics_shard one, two;
    one.pair(pair).count_request(chat, 200);
    one.pair(pair).count_request(chat, 200);
    two.pair(pair).count_request(chat, 429);
    two.pair(pair).duration.observe(0.003);
    two.pair(pair).tokens = 42;
    two.tenant(tenant).rate_limited[static_cast<std::size_t>(quota_reason::rate)] = 3;
    two.tenant(tenant).streamed = true;
    one.upstream(upstream).retries[static_cast<std::size_t>(core::upstream_failure::status_503)] = 2;

    metrics_shard sum;
    sum.add(one);
    sum.add(two);
    tenant_quota_view limited;
    limited.rate_per_second = 2.5;
    limited.burst = 5;
    limited.rate_remaining = 3;
    limited.max_concurrent = 8;
    limited.concurrent_remaining = 6;
    std::vector<tenant_quota_line> quotas{{"metrics-a", limited, true}, {"metrics-b", limited, false}};
    auto text = render_metrics(sum, {}, store_counters{}, quotas);
    EXPECT_NE(text.find("dify_gateway_tenant_quota_limit{tenant=\"metrics-a\",quota=\"rate\"} 2.5\n"), std::string::npos) << text;
    EXPECT_NE(text.find("dify_gateway_tenant_quota_limit{tenant=\"metrics-a\",quota=\"concurrency\"} 8\n"), std::string::npos);
    EXPECT_EQ(text.find("dify_gateway_tenant_quota_limit{tenant=\"metrics-a\",quota=\"tokens_per_day\"}"), std::string::npos)
        << "a limit the tenant does not have is no series";
    EXPECT_NE(text.find("dify_gateway_tenant_quota_remaining{tenant=\"metrics-a\",quota=\"concurrency\"} 6\n"), std::string::npos);
    EXPECT_EQ(text.find("dify_gateway_tenant_quota_remaining{tenant=\"metrics-b\""), std::string::npos)
        << "remaining is exported only where this process knows it";
    EXPECT_NE(text.find("dify_gateway_build_info{version=\""), std::string::npos);
    EXPECT_NE(text.find("dify_gateway_trace_spans_dropped_total "), std::string::npos);
    const std::string labels = "tenant=\"metrics-a\",app=\"app\\\"1\"";
    const auto route = endpoint_label(chat);
    EXPECT_NE(
        text.find(
            "dify_gateway_requests_total{" + labels + ",endpoint=\"" + route + "\",status=\"200\"} 2\n"
        ),
        std::string::npos
    ) << text;
    EXPECT_NE(
        text.find(
            "dify_gateway_requests_total{" + labels + ",endpoint=\"" + route + "\",status=\"429\"} 1\n"
        ),
        std::string::npos
    );
    EXPECT_NE(
        text.find("dify_gateway_request_duration_seconds_bucket{" + labels + ",le=\"0.005\"} 1\n"),
        std::string::npos
    );
    EXPECT_NE(text.find("dify_gateway_tokens_total{" + labels + "} 42\n"), std::string::npos);
    EXPECT_NE(
        text.find("dify_gateway_rate_limited_total{tenant=\"metrics-a\",reason=\"rate\"} 3\n"),
        std::string::npos
    );
    EXPECT_NE(text.find("dify_gateway_active_streams{tenant=\"metrics-a\"} 0\n"), std::string::npos);
    EXPECT_NE(
        text.find("dify_gateway_upstream_retries_total{upstream=\"metrics-up\",reason=\"503\"} 2\n"),
        std::string::npos
    ) << text;
    EXPECT_EQ(text.find("dify_gateway_time_to_first_byte_seconds_count{" + labels), std::string::npos)
        << "a histogram nothing was observed in is not a series";
}

TEST(Metrics, EndpointIdsAreAClosedSet)
{
    EXPECT_EQ(endpoint_label(no_endpoint), "");
    EXPECT_EQ(endpoint_label(endpoint_id(nullptr)), "unknown");
    for (const auto& r : core::all_routes())
        EXPECT_EQ(endpoint_label(endpoint_id(&r)), std::string(r.method) + " " + std::string(r.pattern));
    EXPECT_EQ(endpoint_label(60'000), "unknown") << "an id out of range names no route";
    // Access lines write the label into JSON as it is: nothing in it needs escaping.
    for (const auto& r : core::all_routes())
        for (const char c : endpoint_label(endpoint_id(&r)))
            EXPECT_TRUE(c != '"' && c != '\\' && static_cast<unsigned char>(c) >= 0x20) << r.pattern;
}

} // namespace
} // namespace gw::gateway
