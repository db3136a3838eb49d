#include "gateway/ops/logging.hpp"

#include "core/text.hpp"
#include "gateway/ops/metrics.hpp"

#include <spdlog/async.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <ctime>

namespace gw::gateway {

namespace {

using namespace std::string_view_literals;

spdlog::level::level_enum spdlog_level(config::log_level l)
{
    switch (l) {
    case config::log_level::trace: return spdlog::level::trace;
    case config::log_level::debug: return spdlog::level::debug;
    case config::log_level::info: return spdlog::level::info;
    case config::log_level::warn: return spdlog::level::warn;
    case config::log_level::error: return spdlog::level::err;
    case config::log_level::critical: return spdlog::level::critical;
    case config::log_level::off: return spdlog::level::off;
    }
    return spdlog::level::info;
}

std::shared_ptr<spdlog::logger>& access_logger()
{
    static std::shared_ptr<spdlog::logger> logger;
    return logger;
}

bool& json_format()
{
    static bool json = true;
    return json;
}

constexpr std::size_t access_batch_bytes = 32 * 1024;

// This thread's access lines not yet handed to the logger (newline-separated).
std::string& access_batch()
{
    thread_local std::string batch;
    return batch;
}

// "2026-11-26T10:54:36.123Z": the second's prefix is formatted once per second per thread.
void append_utc_now(std::string& out)
{
    thread_local std::time_t cached_second = -1;
    thread_local char prefix[24];
    thread_local std::size_t prefix_size = 0;
    auto now = std::chrono::system_clock::now();
    auto t = std::chrono::system_clock::to_time_t(now);
    if (t != cached_second) {
        std::tm tm{};
        gmtime_r(&t, &tm);
        prefix_size = std::strftime(prefix, sizeof prefix, "%Y-%m-%dT%H:%M:%S", &tm);
        cached_second = t;
    }
    const auto ms = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000
    );
    const char tail[] = {'.', static_cast<char>('0' + ms / 100), static_cast<char>('0' + ms / 10 % 10),
                         static_cast<char>('0' + ms % 10), 'Z'};
    out.append(prefix, prefix_size);
    out.append(tail, sizeof tail);
}

void append_number(std::string& out, std::int64_t n)
{
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, n);
    out.append(buf, end);
}

void append_json_line(std::string& out, const request_record& r, std::int64_t duration_ms)
{
    out += "{\"time\":\""sv;
    append_utc_now(out);
    out += "\",\"type\":\"access\",\"request_id\":"sv;
    core::append_json_string(out, r.request_id);
    out += ",\"tenant\":"sv;
    core::append_json_string(out, r.tenant);
    out += ",\"app\":"sv;
    core::append_json_string(out, r.app);
    out += ",\"method\":"sv;
    core::append_json_string(out, r.method);
    out += ",\"endpoint\":\""sv;
    append_endpoint_label(out, r.endpoint); // nothing in it to escape
    out += '"';
    out += ",\"status\":"sv;
    append_number(out, r.status);
    out += ",\"duration_ms\":"sv;
    append_number(out, duration_ms);
    out += ",\"ttfb_ms\":"sv;
    if (r.ttfb_seconds)
        append_number(out, static_cast<std::int64_t>(*r.ttfb_seconds * 1000.0 + 0.5));
    else
        out += "null"sv;
    out += ",\"attempts\":"sv;
    append_number(out, r.attempts);
    out += ",\"tokens\":"sv;
    append_number(out, r.tokens);
    out += ",\"bytes_in\":"sv;
    append_number(out, static_cast<std::int64_t>(r.bytes_in));
    out += ",\"bytes_out\":"sv;
    append_number(out, static_cast<std::int64_t>(r.bytes_out));
    out += ",\"client\":"sv;
    core::append_json_string(out, r.client);
    out += ",\"trace_id\":\""sv;
    core::append_hex(out, r.trace.trace);
    out += "\",\"span_id\":\""sv;
    core::append_hex(out, r.trace.span);
    out += "\"}\n"sv;
}

void append_text_line(std::string& out, const request_record& r, std::int64_t duration_ms)
{
    append_utc_now(out);
    fmt::format_to(std::back_inserter(out),
                   " access request_id={} tenant={} app={} method={} endpoint=\"{}\" status={} duration_ms={} ttfb_ms={} "
                   "attempts={} tokens={} bytes_in={} bytes_out={} client={} trace_id={} span_id={}\n",
                   r.request_id, r.tenant, r.app, r.method, endpoint_label(r.endpoint), r.status, duration_ms,
                   r.ttfb_seconds ? std::to_string(static_cast<std::int64_t>(*r.ttfb_seconds * 1000.0 + 0.5)) : "-",
                   r.attempts, r.tokens, r.bytes_in, r.bytes_out, r.client, core::to_hex(r.trace.trace),
                   core::to_hex(r.trace.span));
}

} // namespace

void setup_logging(const config::log_config& cfg)
{
    spdlog::init_thread_pool(8192, 1);
    auto sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
    auto main = std::make_shared<spdlog::async_logger>("gateway", sink, spdlog::thread_pool(),
                                                       spdlog::async_overflow_policy::overrun_oldest);
    json_format() = cfg.format == config::log_format::json;
    if (json_format())
        main->set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","message":"%v"})", spdlog::pattern_time_type::utc);
    else
        main->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
    main->set_level(spdlog_level(cfg.level));
    main->flush_on(spdlog::level::warn);
    spdlog::set_default_logger(main);
    if (cfg.access_log) {
        auto access = std::make_shared<spdlog::async_logger>("access", sink, spdlog::thread_pool(),
                                                             spdlog::async_overflow_policy::overrun_oldest);
        access->set_pattern("%v");
        access->set_level(spdlog::level::info);
        access_logger() = access;
    }
}

void log_access(const request_record& r, double duration_seconds)
{
    if (!access_logger()) return;
    auto& batch = access_batch();
    auto duration_ms = static_cast<std::int64_t>(duration_seconds * 1000.0 + 0.5);
    if (json_format())
        append_json_line(batch, r, duration_ms);
    else
        append_text_line(batch, r, duration_ms);
    if (batch.size() >= access_batch_bytes) flush_access_log();
}

void flush_access_log()
{
    auto& batch = access_batch();
    if (batch.empty()) return;
    if (auto& logger = access_logger()) logger->info(std::string_view(batch.data(), batch.size() - 1)); // the logger adds the last newline
    batch.clear();
}

} // namespace gw::gateway
