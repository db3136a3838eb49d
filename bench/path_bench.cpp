// Heap allocations on the gateway's request path, counted. A gateway with one worker and
// the emulator (TLS) run in this process; the benchmark's threads are the clients. Every
// allocation made on the gateway's worker thread (named gw-worker-0) is counted, whatever
// makes it (operator new, Asio's frames, OpenSSL, Boost.JSON): this binary interposes
// glibc's malloc family and forwards to it. Reported per blocking request (from one
// connection, and from 32 at once) and per relayed SSE event; the time figures are the
// whole loopback round trip (client, gateway and emulator on one machine), not the
// gateway's cost.
//
//   build/bench/path_bench [--benchmark_filter=blocking]
#include "tests/support/emulator_fixture.hpp"
#include "tests/support/gateway_fixture.hpp"
#include "gateway/upstream/tls_record_buffers.hpp"

#include <benchmark/benchmark.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <sys/prctl.h>

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);
}

namespace {

std::atomic<std::uint64_t> worker_allocations{0};
thread_local signed char on_worker = -1; // -1: not asked yet

// Worker threads name themselves before their first allocation.
void count()
{
    if (on_worker < 0) {
        char name[17] = {};
        prctl(PR_GET_NAME, name);
        on_worker = std::strncmp(name, "gw-worker-", 10) == 0 ? 1 : 0;
    }
    if (on_worker == 1) worker_allocations.fetch_add(1, std::memory_order_relaxed);
}

} // namespace

extern "C" {
void* malloc(std::size_t n)
{
    count();
    return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t size)
{
    count();
    return __libc_calloc(n, size);
}
void* realloc(void* p, std::size_t n)
{
    count();
    return __libc_realloc(p, n);
}
void* aligned_alloc(std::size_t align, std::size_t n)
{
    count();
    return __libc_memalign(align, n);
}
void* memalign(std::size_t align, std::size_t n)
{
    count();
    return __libc_memalign(align, n);
}
int posix_memalign(void** out, std::size_t align, std::size_t n)
{
    if (align < sizeof(void*) || (align & (align - 1)) != 0) return EINVAL;
    count();
    void* p = __libc_memalign(align, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
void free(void* p)
{
    __libc_free(p);
}
}

namespace {

using namespace gw::test;

// One emulator and one gateway for the whole run (pools, caches and TLS sessions warm).
struct stack
{
    running_emulator emulator;
    running_gateway gateway{emulator, [](gw::config::gateway_config& c) {
                                c.server.threads = 1;
                                c.log.access_log = true;
                            }};
    static stack& get()
    {
        static stack s;
        return s;
    }
};

std::string chat_body(const std::string& mode, int words)
{
    std::string query = "hello";
    for (int i = 1; i < words; ++i) query += " word";
    return R"({"inputs":{},"query":")" + query + R"(","user":"bench-user","response_mode":")" + mode + R"("})";
}

void blocking_chat(benchmark::State& state)
{
    auto client = stack::get().gateway.client();
    const auto headers = bearer(tenant_keys::alpha);
    const auto body = chat_body("blocking", 3);
    for (int i = 0; i < 50; ++i) client->request("POST", "/v1/chat-messages", headers, body); // warm-up
    const auto before = worker_allocations.load();
    for (auto _ : state) {
        auto r = client->request("POST", "/v1/chat-messages", headers, body);
        if (r.status != 200) state.SkipWithError(("status " + std::to_string(r.status)).c_str());
    }
    const auto n = static_cast<double>(worker_allocations.load() - before);
    state.counters["allocations_per_request"] = n / static_cast<double>(state.iterations());
    state.counters["tls_record_buffers_recycled"] = gw::gateway::tls_record_buffers_recycled() ? 1 : 0;
}
BENCHMARK(blocking_chat)->Iterations(2000);

// The same requests from many connections at once, as a load generator sends them: the
// worker interleaves the requests' steps, so blocks are given back in another order than
// they were taken (a cache that only serves one request at a time shows here). The test
// gateway's pool has 4 upstream connections, so requests also wait for one.
void blocking_chat_concurrent(benchmark::State& state)
{
    const auto connections = static_cast<std::size_t>(state.range(0));
    constexpr int requests_per_connection = 200;
    const auto headers = bearer(tenant_keys::alpha);
    const auto body = chat_body("blocking", 3);
    std::vector<std::unique_ptr<http_client>> clients;
    for (std::size_t i = 0; i < connections; ++i) clients.push_back(stack::get().gateway.client());
    std::atomic<int> failures{0};
    auto run_all = [&](int per_connection) {
        std::vector<std::thread> threads;
        for (auto& c : clients)
            threads.emplace_back([&, client = c.get()] {
                for (int i = 0; i < per_connection; ++i)
                    if (client->request("POST", "/v1/chat-messages", headers, body).status != 200) ++failures;
            });
        for (auto& t : threads) t.join();
    };
    run_all(20); // warm-up: every connection open, the worker's caches filled
    std::uint64_t counted = 0, requests = 0;
    for (auto _ : state) {
        const auto before = worker_allocations.load();
        run_all(requests_per_connection);
        counted += worker_allocations.load() - before;
        requests += connections * requests_per_connection;
    }
    if (failures) state.SkipWithError("a request failed");
    state.counters["allocations_per_request"] = static_cast<double>(counted) / static_cast<double>(requests);
}
BENCHMARK(blocking_chat_concurrent)->Arg(32)->Iterations(1)->UseRealTime();

void streamed_chat(benchmark::State& state)
{
    auto client = stack::get().gateway.client();
    const auto headers = bearer(tenant_keys::alpha);
    const auto words = static_cast<int>(state.range(0));
    const auto body = chat_body("streaming", words);
    auto one_stream = [&] {
        auto r = client->request("POST", "/v1/chat-messages", headers, body);
        std::size_t events = 0;
        for (std::size_t at = r.body.find("data: "); at != std::string::npos; at = r.body.find("data: ", at + 1)) ++events;
        return r.status == 200 ? events : 0;
    };
    for (int i = 0; i < 20; ++i) one_stream(); // warm-up
    std::size_t events = 0;
    const auto before = worker_allocations.load();
    for (auto _ : state) {
        auto n = one_stream();
        if (n == 0) state.SkipWithError("stream failed");
        events += n;
    }
    const auto n = static_cast<double>(worker_allocations.load() - before);
    state.counters["allocations_per_stream"] = n / static_cast<double>(state.iterations());
    state.counters["events_per_stream"] = static_cast<double>(events) / static_cast<double>(state.iterations());
    state.counters["allocations_per_event"] = events ? n / static_cast<double>(events) : 0;
}
BENCHMARK(streamed_chat)->Arg(8)->Arg(64)->Iterations(300);

} // namespace

BENCHMARK_MAIN();
