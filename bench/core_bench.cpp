// Microbenchmarks of per-request building blocks: tenant-key checks, the `user` rewrite
// of a typical JSON body, multipart parsing, SSE parsing and the facts read from each
// event (the relay's cost per event), and SSE frame generation (the emulator's).
#include "core/key_hash.hpp"
#include "core/multipart.hpp"
#include "core/ownership_table.hpp"
#include "core/sse_parser.hpp"
#include "core/stream_facts.hpp"
#include "core/user_rewrite.hpp"
#include "gateway/emulator/generation.hpp"

#include <benchmark/benchmark.h>

namespace {

void key_constant_time_equal(benchmark::State& state)
{
    std::string a(32, 'k'), b(32, 'k');
    for (auto _ : state) benchmark::DoNotOptimize(gw::core::constant_time_equal(a, b));
}
BENCHMARK(key_constant_time_equal);

void key_sha256(benchmark::State& state)
{
    std::string key = "gw-billing-plaintext-ok-for-dev";
    for (auto _ : state) benchmark::DoNotOptimize(gw::core::sha256_hex(key));
}
BENCHMARK(key_sha256);

void multipart_parse(benchmark::State& state)
{
    std::string body = "--BB\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nuser-123\r\n"
                       "--BB\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n"
                       "Content-Type: application/pdf\r\n\r\n" +
                       std::string(static_cast<std::size_t>(state.range(0)), 'x') + "\r\n--BB--\r\n";
    for (auto _ : state) benchmark::DoNotOptimize(gw::core::parse_multipart(body, "BB"));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(body.size()));
}
BENCHMARK(multipart_parse)->Arg(1024)->Arg(1 << 20);

void emulator_chat_stream(benchmark::State& state)
{
    gw::emulator::generation_input in;
    in.mode = "chat";
    in.task_id = in.message_id = in.conversation_id = "8c1d2e3f-4a5b-4c6d-9e7f-0a1b2c3d4e5f";
    in.answer = "Turn 1. You said: \"a question of moderate length for the benchmark\".";
    auto uuid = [] { return std::string("00000000-0000-4000-8000-000000000000"); };
    std::size_t frames = 0;
    for (auto _ : state) {
        auto s = gw::emulator::make_generation_stream(in, uuid, nullptr);
        while (auto f = s->next()) ++frames;
    }
    state.counters["frames/s"] = benchmark::Counter(static_cast<double>(frames), benchmark::Counter::kIsRate);
}
BENCHMARK(emulator_chat_stream);

// A chat-messages body as the integration guide sends it.
void user_rewrite_json(benchmark::State& state)
{
    std::string body = R"({"inputs": {"persona": "support"}, "query": "How do I reset my password? I tried twice already.",
                           "response_mode": "streaming", "conversation_id": "", "user": "user-123",
                           "files": [{"type": "image", "transfer_method": "remote_url", "url": "https://example.com/a.png"}]})";
    for (auto _ : state) benchmark::DoNotOptimize(gw::core::rewrite_json_user(body, "billing"));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(body.size()));
}
BENCHMARK(user_rewrite_json);

// A Dify chat stream as relayed: framing every event and reading its facts.
std::string dify_chat_stream()
{
    std::string out = "event: ping\n\n";
    for (int i = 0; i < 40; ++i)
        out += R"(data: {"event": "message", "conversation_id": "1ac8b094-053f-48a7-95bc-76d05ac73a5e", "message_id": "2b80c08e-825d-4e0e-8f38-11e5e4a76e1e", "created_at": 1795690509, "task_id": "72ef866a-8b3b-4fb6-b2f8-c20b23c1c387", "id": "2b80c08e", "answer": "word )" +
               std::to_string(i) + R"( ", "from_variable_selector": null})" + "\n\n";
    out += R"(data: {"event": "message_end", "task_id": "72ef866a", "metadata": {"usage": {"prompt_tokens": 10, "completion_tokens": 40, "total_tokens": 50, "total_price": "0.00001"}}})"
           "\n\n";
    return out;
}

void sse_parse(benchmark::State& state)
{
    const std::string stream = dify_chat_stream();
    std::size_t events = 0;
    for (auto _ : state) {
        gw::core::sse_parser p;
        p.feed(stream, [&](const gw::core::sse_event&, std::size_t) { ++events; });
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(stream.size()));
    state.counters["events/s"] = benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
}
BENCHMARK(sse_parse);

void sse_parse_and_read_facts(benchmark::State& state)
{
    const std::string stream = dify_chat_stream();
    std::size_t events = 0;
    for (auto _ : state) {
        gw::core::sse_parser p;
        gw::core::stream_facts facts;
        p.feed(stream, [&](const gw::core::sse_event& e, std::size_t) {
            facts.observe(e);
            ++events;
        });
        benchmark::DoNotOptimize(facts.total_tokens());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(stream.size()));
    state.counters["events/s"] = benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
}
BENCHMARK(sse_parse_and_read_facts);

// The facts of a blocking chat reply (usage, ids), as the emulator writes one: the
// gateway reads every blocking reply once.
void blocking_reply_facts(benchmark::State& state)
{
    const std::string reply =
        R"({"event": "message", "task_id": "7c9fe961-0a95-44b1-860b-58904055cb34", "id": "216d342a-6b0e-4d41-8d9c-edd0083204af", )"
        R"("message_id": "216d342a-6b0e-4d41-8d9c-edd0083204af", "conversation_id": "ee131720-8b1e-4188-ad36-e2480dac9249", )"
        R"("mode": "chat", "answer": "Turn 1. You said: \"Hello there\".", "metadata": {"annotation_reply": null, )"
        R"("retriever_resources": [], "usage": {"prompt_tokens": 11, "prompt_unit_price": 0.15, "prompt_price_unit": 1e-06, )"
        R"("prompt_price": 1.6499999999999999e-06, "completion_tokens": 8, "completion_unit_price": 0.6, )"
        R"("completion_price_unit": 1e-06, "completion_price": 4.8e-06, "total_tokens": 19, "total_price": 6.449999999999999e-06, )"
        R"("currency": "USD", "latency": 0.5, "time_to_first_token": 0.1, "time_to_generate": 0.4}}, "created_at": 1796302119})";
    for (auto _ : state) {
        gw::core::stream_facts facts;
        facts.observe_json_body(reply);
        benchmark::DoNotOptimize(facts.total_tokens());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(reply.size()));
}
BENCHMARK(blocking_reply_facts);

// Recording the owner of a new conversation in a full table (the oldest record goes).
void ownership_record(benchmark::State& state)
{
    gw::core::ownership_table t(static_cast<std::size_t>(state.range(0)));
    std::uint64_t n = 0;
    char id[40];
    for (auto _ : state) {
        ++n;
        std::snprintf(id, sizeof id, "%08llx-%04llx-4a8b-9e2f-%012llx", static_cast<unsigned long long>(n * 2654435761ULL % 0xffffffffULL),
                      static_cast<unsigned long long>(n % 0xffff), static_cast<unsigned long long>(n));
        t.record(gw::core::owned_kind::conversation, id, "billing", 1'700'000'000, 604'800);
    }
}
BENCHMARK(ownership_record)->Arg(2'000)->Arg(200'000);

} // namespace
