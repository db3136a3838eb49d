#include "gateway/logging.hpp"

#include <boost/json.hpp>

#include <spdlog/async.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <ctime>

namespace gw::gateway {

namespace {

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

std::string utc_now()
{
    auto now = std::chrono::system_clock::now();
    auto t = std::chrono::system_clock::to_time_t(now);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[40];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    char out[48];
    std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms));
    return out;
}

} // namespace

void setup_logging(const config::log_config& cfg)
{
    spdlog::init_thread_pool(8192, 1);
    auto sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
    auto main = std::make_shared<spdlog::async_logger>("gateway", sink, spdlog::thread_pool(),
                                                       spdlog::async_overflow_policy::overrun_oldest);
    json_format() = cfg.format == "json";
    if (json_format())
        main->set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","message":"%v"})", spdlog::pattern_time_type::utc);
    else
        main->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
    main->set_level(spdlog::level::from_str(cfg.level));
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
    auto& logger = access_logger();
    if (!logger) return;
    auto ms = [](double s) { return static_cast<std::int64_t>(s * 1000.0 + 0.5); };
    if (json_format()) {
        boost::json::object o{{"time", utc_now()}, {"type", "access"}, {"request_id", r.request_id}, {"tenant", r.tenant},
                              {"app", r.app}, {"method", r.method}, {"endpoint", r.endpoint}, {"status", r.status},
                              {"duration_ms", ms(duration_seconds)},
                              {"ttfb_ms", r.ttfb_seconds ? boost::json::value(ms(*r.ttfb_seconds)) : boost::json::value(nullptr)},
                              {"attempts", r.attempts}, {"tokens", r.tokens}, {"bytes_in", r.bytes_in},
                              {"bytes_out", r.bytes_out}, {"client", r.client}};
        logger->info(boost::json::serialize(o));
    } else {
        logger->info("{} access request_id={} tenant={} app={} method={} endpoint=\"{}\" status={} duration_ms={} ttfb_ms={} "
                     "attempts={} tokens={} bytes_in={} bytes_out={} client={}",
                     utc_now(), r.request_id, r.tenant, r.app, r.method, r.endpoint, r.status, ms(duration_seconds),
                     r.ttfb_seconds ? std::to_string(ms(*r.ttfb_seconds)) : "-", r.attempts, r.tokens, r.bytes_in,
                     r.bytes_out, r.client);
    }
}

} // namespace gw::gateway
