#include "gateway/ops/span_exporter.hpp"

#include "gateway/ops/spawn.hpp"
#include "gateway/upstream/round_trip.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/host_name.hpp>

#include <spdlog/spdlog.h>

namespace gw::gateway {

namespace http = beast::http;

trace_figures& trace_figures::process()
{
    static trace_figures figures;
    return figures;
}

namespace {

// The collector as an upstream of one connection (connect and TLS as for Dify).
config::upstream_config collector_settings(const config::tracing_config& c, const config::otlp_target& t)
{
    config::upstream_config u;
    u.url = c.otlp_endpoint;
    u.tls = t.tls;
    u.host = t.host.size() > 2 && t.host.front() == '[' ? t.host.substr(1, t.host.size() - 2) : t.host;
    u.port = t.port;
    u.max_connections = 1;
    u.connect_timeout_ms = c.export_timeout_ms;
    u.response_timeout_ms = c.export_timeout_ms;
    return u;
}

} // namespace

span_exporter::~span_exporter()
{
    close();
}

void span_exporter::configure(const config::tracing_config& c, const std::string& service_version)
{
    const bool same_endpoint = c.otlp_endpoint == cfg_.otlp_endpoint && c.export_timeout_ms == cfg_.export_timeout_ms;
    cfg_ = c;
    resource_.service_name = c.service_name;
    resource_.service_version = service_version;
    error_code no_name; // a host without a name: the resource simply has no instance id
    resource_.instance_id = net::ip::host_name(no_name);
    target_ = c.otlp_endpoint.empty() ? std::nullopt : config::parse_otlp_endpoint(c.otlp_endpoint);
    if (!same_endpoint || !target_) {
        if (collector_) collector_->stop();
        collector_.reset();
    }
    if (target_ && !collector_) {
        auto u = collector_settings(c, *target_);
        collector_ = std::make_shared<upstream_pool>(ex_, u, u.tls ? make_upstream_tls(u) : nullptr);
    }
    if (!target_) {
        trace_figures::process().spans_dropped += queue_.size();
        queue_.clear();
    }
    if (target_ && !running_) {
        running_ = true;
        net::co_spawn(ex_, run(), log_failure("span exporter"));
    }
    if (wake_) wake_->cancel(); // the loop picks up the new schedule (or ends)
}

void span_exporter::submit(core::span s)
{
    if (!target_) return;
    if (queue_.size() >= static_cast<std::size_t>(cfg_.max_queue_spans)) {
        ++trace_figures::process().spans_dropped;
        return;
    }
    queue_.push_back(std::move(s));
    if (queue_.size() == static_cast<std::size_t>(cfg_.max_batch_spans) && wake_) wake_->cancel();
}

void span_exporter::close()
{
    target_.reset();
    trace_figures::process().spans_dropped += queue_.size();
    queue_.clear();
    if (collector_) collector_->stop();
    collector_.reset();
    wake_.reset();
    exported_.reset();
}

net::awaitable<void> span_exporter::flush()
{
    for (;;) {
        while (!queue_.empty() && target_) co_await export_batch();
        if (in_flight_ == 0 || !exported_) co_return;
        exported_->expires_at(net::steady_timer::time_point::max());
        co_await exported_->async_wait(use_nothrow); // an export in flight ended
    }
}

net::awaitable<void> span_exporter::run()
{
    while (target_ && wake_) {
        wake_->expires_after(cfg_.schedule_delay_ms);
        co_await wake_->async_wait(use_nothrow); // the delay passed, a batch filled, or a reload
        co_await flush();
    }
    running_ = false;
}

net::awaitable<void> span_exporter::export_batch()
{
    const auto n = std::min(queue_.size(), static_cast<std::size_t>(cfg_.max_batch_spans));
    std::vector<core::span> batch(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.begin() + static_cast<std::ptrdiff_t>(n)));
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
    http::request<http::string_body> req{http::verb::post, target_->target, 11};
    req.set(http::field::host, target_->port == (target_->tls ? 443 : 80) ? target_->host : target_->host + ":" + std::to_string(target_->port));
    req.set(http::field::content_type, "application/json");
    req.set(http::field::user_agent, "dify-gateway/" + resource_.service_version);
    for (const auto& [k, v] : cfg_.headers) req.set(k, v);
    req.body() = core::otlp_json(resource_, batch);
    req.prepare_payload();
    auto collector = collector_; // kept: a reload may replace it meanwhile
    auto& figures = trace_figures::process();
    struct in_flight // counted while on its way; its end wakes a waiting flush
    {
        span_exporter& e;
        explicit in_flight(span_exporter& e) : e(e) { ++e.in_flight_; }
        ~in_flight()
        {
            --e.in_flight_;
            if (e.exported_) e.exported_->cancel();
        }
    } counted{*this};
    const auto deadline = clock::now() + cfg_.export_timeout_ms;
    auto [aec, lease] = co_await collector->acquire(deadline);
    error_code ec = aec;
    unsigned status = 0;
    if (!ec) {
        lease->expires_at(deadline);
        auto [rec, st, reusable] = co_await round_trip(*lease, req);
        lease->expires_never();
        lease.give_back(reusable);
        ec = rec;
        status = st;
    }
    if (!ec && status / 100 == 2) {
        figures.spans_exported += n;
        co_return;
    }
    ++figures.exports_failed;
    figures.spans_dropped += n;
    spdlog::warn("span export to {} failed ({}); {} spans dropped", cfg_.otlp_endpoint,
                 ec ? ec.message() : "status " + std::to_string(status), n);
}

} // namespace gw::gateway
