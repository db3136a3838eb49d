// A worker's span exporter: spans the request path finishes are queued (bounded:
// tracing.max_queue_spans; beyond it they are dropped and counted) and sent to the OTLP
// endpoint as OTLP/HTTP JSON in batches of tracing.max_batch_spans, every
// schedule_delay_ms or as soon as a batch is full, on the worker's own connection
// (a one-connection pool: keep-alive, TLS for https), each export within
// export_timeout_ms. A failed export is not retried: its spans are dropped and counted, so
// a collector that is down never makes the gateway pile up or storm it. Runs on the
// worker's thread, off the request path; nothing is exported unless an endpoint is set.
#pragma once

#include "config/gateway_config.hpp"
#include "config/tracing.hpp"
#include "core/span.hpp"
#include "gateway/upstream/pool.hpp"

#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace gw::gateway {

// Process-wide export figures, for /metrics.
struct trace_figures
{
    std::atomic<std::uint64_t> spans_exported{0};
    std::atomic<std::uint64_t> spans_dropped{0}; // queue full, or their export failed
    std::atomic<std::uint64_t> exports_failed{0};
    static trace_figures& process();
};

class span_exporter
{
public:
    explicit span_exporter(net::any_io_executor ex) : ex_(ex), wake_(std::in_place, ex), exported_(std::in_place, ex) {}
    ~span_exporter();
    span_exporter(const span_exporter&) = delete;
    span_exporter& operator=(const span_exporter&) = delete;

    // Applies `c` (at start and on reload, on the worker's thread): the export loop starts,
    // goes on with the new settings, or stops (spans still queued are sent first).
    void configure(const config::tracing_config& c, const std::string& service_version);
    bool enabled() const { return target_.has_value(); }
    const config::tracing_config& settings() const { return cfg_; }

    void submit(core::span s);
    // Sends what is queued now, and waits for exports already on their way (the worker is
    // stopping; each export within its timeout).
    net::awaitable<void> flush();
    // The worker is going: nothing more is taken or sent, and the timer goes while its
    // io_context still exists.
    void close();
    std::size_t queued() const { return queue_.size(); }

private:
    net::awaitable<void> run();
    net::awaitable<void> export_batch();

    net::any_io_executor ex_;
    std::optional<net::steady_timer> wake_;     // reset by close()
    std::optional<net::steady_timer> exported_; // cancelled when an export ends (flush waits on it); reset by close()
    std::size_t in_flight_ = 0;                 // exports on their way
    config::tracing_config cfg_;
    std::optional<config::otlp_target> target_;
    core::span_resource resource_;
    std::shared_ptr<upstream_pool> collector_;
    std::vector<core::span> queue_;
    bool running_ = false;
};

} // namespace gw::gateway
