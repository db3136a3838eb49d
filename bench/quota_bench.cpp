// Header forwarding: a tenant's request head parsed, its end-to-end fields copied to
// the upstream head with the app's key, and serialized for the upstream write.
// Quota admission cost. Local: the token bucket alone and a whole memory-store admission
// (decision + ticket + settlement), target <= 100 ns for the decision. Redis: one
// admission (one round trip with two scripts) plus its settlement, against the
// redis-server named by GW_BENCH_REDIS_URL (e.g. redis://127.0.0.1:6379/0); skipped
// without it.
#include "config/gateway_config.hpp"
#include "core/token_bucket.hpp"
#include "gateway/quota/memory_store.hpp"
#include "gateway/quota/redis_store.hpp"
#include "gateway/proxy/exchange.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/detached.hpp>

#include <benchmark/benchmark.h>

#include <cstdlib>

namespace {

void header_forwarding(benchmark::State& state)
{
    namespace http = boost::beast::http;
    const std::string wire = "POST /v1/chat-messages HTTP/1.1\r\nHost: gateway.internal\r\n"
                             "Authorization: Bearer gw-billing-key-0123456789\r\nContent-Type: application/json\r\n"
                             "Content-Length: 180\r\nConnection: keep-alive\r\nUser-Agent: python-requests/2.28.1\r\n"
                             "Accept: */*\r\nAccept-Encoding: gzip, deflate\r\nX-Request-Id: 4bf92f3577b34da6a3ce929d0e0e4736\r\n"
                             "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";
    for (auto _ : state) {
        http::request_parser<http::empty_body> p;
        boost::system::error_code ec;
        p.put(boost::asio::buffer(wire), ec);
        gw::gateway::recycled_string up;
        up.append(p.get().method_string()).append(" /v1/chat-messages HTTP/1.1\r\n");
        for (const auto& f : p.get())
            if (!gw::gateway::is_hop_by_hop(f.name()) && f.name() != http::field::authorization &&
                f.name() != http::field::host)
                gw::gateway::append_field(up, f.name_string(), f.value());
        gw::gateway::append_field(up, "Host", "api.dify.ai");
        gw::gateway::append_field(up, "Authorization", "Bearer <the app's Dify key>");
        up.append("\r\n");
        benchmark::DoNotOptimize(up);
    }
}
BENCHMARK(header_forwarding);


using namespace gw;

config::gateway_config bench_config()
{
    config::gateway_config c;
    c.apps["chat"].api_keys = {"k"};
    c.apps["chat"].max_concurrent = 1000;
    config::tenant_config t;
    t.keys = {"bench-key-0123456789"};
    t.apps = {"chat"};
    t.default_app = "chat";
    t.rate = config::rate_config{1e9, 1e9};
    t.max_concurrent = 1000;
    t.tokens_per_day = 1'000'000'000'000;
    c.tenants["bench"] = t;
    return c;
}

void token_bucket_decision(benchmark::State& state)
{
    core::nanos now{0};
    core::token_bucket b(1e9, 1e9, now);
    for (auto _ : state) {
        now += core::nanos(1);
        benchmark::DoNotOptimize(b.try_acquire(now));
    }
}
BENCHMARK(token_bucket_decision);

void memory_store_admit_and_settle(benchmark::State& state)
{
    auto cfg = bench_config();
    std::map<std::string, std::vector<std::string>> ta{{"bench", {"chat"}}};
    auto store = std::make_shared<gateway::memory_quota_store>(cfg, std::make_shared<gateway::usage_counters>(ta),
                                                               gateway::quota_clocks::system());
    const std::string tenant = "bench", app = "chat";
    const bool generates = state.range(0) != 0; // 1: a generation, held to the daily token budget
    for (auto _ : state) {
        auto a = store->admit_now(tenant, app, generates);
        a.ticket->charge(10);
        benchmark::DoNotOptimize(a);
    }
}
BENCHMARK(memory_store_admit_and_settle)->Arg(0)->Arg(1);

constexpr int batch = 100;

// `batch` requests one after the other, as one worker serves them.
// Ends when the settlements have reached Redis too (batched off the request's path).
boost::asio::awaitable<void> admit_batch(gateway::redis_quota_store* store, bool* done)
{
    for (int i = 0; i < batch; ++i) {
        auto a = co_await store->admit("bench", "chat", true);
        if (a.ticket) a.ticket->charge(10);
    }
    co_await store->link().flush(std::chrono::steady_clock::now() + std::chrono::seconds(5));
    *done = true;
}

void redis_store_admit_and_settle(benchmark::State& state)
{
    const char* url = std::getenv("GW_BENCH_REDIS_URL");
    if (!url) {
        state.SkipWithError("set GW_BENCH_REDIS_URL=redis://127.0.0.1:PORT/0 to measure Redis mode");
        return;
    }
    auto cfg = bench_config();
    cfg.quota_store.type = gw::config::store_kind::redis;
    cfg.quota_store.url = url;
    cfg.quota_store.timeout_ms = std::chrono::milliseconds(1000);
    cfg.quota_store.on_error = gw::config::store_error_policy::deny;
    std::map<std::string, std::vector<std::string>> ta{{"bench", {"chat"}}};
    auto counters = std::make_shared<gateway::usage_counters>(ta);
    auto local = std::make_shared<gateway::memory_quota_store>(cfg, counters, gateway::quota_clocks::system());
    boost::asio::io_context io;
    auto link = std::make_shared<gateway::redis_link>(io.get_executor(), gateway::redis_options(cfg.quota_store, nullptr),
                                                      std::chrono::seconds(60), counters->store());
    link->start();
    auto store = std::make_shared<gateway::redis_quota_store>(link, std::make_shared<const config::gateway_config>(cfg), counters, local);
    for (auto _ : state) {
        bool done = false;
        boost::asio::co_spawn(io, admit_batch(store.get(), &done), boost::asio::detached);
        while (!done) io.run_one();
    }
    link->stop();
    state.SetItemsProcessed(state.iterations() * batch);
    if (counters->store_errors() > 0) state.SkipWithError("redis errors: is the server running?");
}
BENCHMARK(redis_store_admit_and_settle)->UseRealTime();

} // namespace
