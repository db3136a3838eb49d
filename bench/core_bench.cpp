// Microbenchmarks of per-request building blocks: tenant-key checks, multipart parsing,
// and SSE frame generation (the emulator's cost per streamed event).
#include "core/key_hash.hpp"
#include "core/multipart.hpp"
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

} // namespace
