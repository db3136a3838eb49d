// The emulator behind the network layer: Dify's API, the control routes outside /v1
// (/_emulator/stats, /_emulator/faults, /_emulator/reset), fault selection and request
// statistics. Sans-io and single-threaded: the server calls it from one executor.
#pragma once

#include "gateway/emulator/dify_api.hpp"
#include "gateway/emulator/faults.hpp"
#include "gateway/emulator/stats.hpp"

#include <chrono>
#include <functional>
#include <memory>

namespace gw::emulator {

struct service_options
{
    std::chrono::milliseconds token_delay{0};
    std::chrono::milliseconds ping_interval{10'000};
    std::function<std::int64_t()> clock; // unix seconds; default: system clock
    std::uint64_t seed = 0;              // 0: random
};

// A reply plus the network behaviour the server must apply while sending it.
struct dispatch
{
    reply rep;
    fault_spec fault;
};

class service
{
public:
    service(std::vector<app_def> apps, service_options opts);

    dispatch handle(const request& req);

    void connection_accepted() { stats_.connection_accepted(); }
    void tls_handshake(const std::string& version, bool resumed) { stats_.tls_handshake(version, resumed); }
    const service_options& options() const { return opts_; }
    store& data() { return *store_; }

private:
    reply control(const request& req);

    service_options opts_;
    std::vector<app_def> apps_;
    std::shared_ptr<store> store_;
    dify_api api_;
    fault_queue faults_;
    stats stats_;
};

} // namespace gw::emulator
