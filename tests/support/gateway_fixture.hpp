// Runs dify-gateway in-process on loopback (ephemeral port) in front of a running
// emulator over TLS verified with the test CA. Tenants: "alpha" (every app, default
// chat) and "beta" (chat and workflow, default chat).
#pragma once

#include "config/gateway_config.hpp"
#include "gateway/downstream/server.hpp"
#include "tests/support/emulator_fixture.hpp"

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>

namespace gw::test {

namespace tenant_keys {
inline const std::string alpha = "alpha-key-0123456789abcdef";
inline const std::string beta = "beta-key-0123456789abcdef";
} // namespace tenant_keys

// The config the fixture uses; tests adjust it before starting a gateway.
config::gateway_config gateway_config_for(const running_emulator& emu);

class running_gateway
{
public:
    explicit running_gateway(const running_emulator& emu, const std::function<void(config::gateway_config&)>& adjust = {});
    explicit running_gateway(config::gateway_config cfg, std::string config_path = "",
                             gateway::quota_clocks clocks = gateway::quota_clocks::system());
    ~running_gateway();

    boost::asio::ip::tcp::endpoint endpoint() const { return server_->endpoint(); }
    std::unique_ptr<http_client> client() const { return std::make_unique<http_client>(endpoint(), false); }
    gateway::server& server() { return *server_; }
    // Drains and waits for the workers to stop (the destructor does it too).
    void drain_and_wait();

private:
    std::unique_ptr<gateway::server> server_;
    bool stopped_ = false;
};

// The system clocks, with a steady clock the test can move on at once (monotonic: only
// forward), for what depends on time passing (a breaker's open time, a rate's refill).
struct movable_clocks
{
    std::shared_ptr<std::atomic<std::int64_t>> ahead_ns = std::make_shared<std::atomic<std::int64_t>>(0);
    void move_on(std::chrono::nanoseconds d) const { *ahead_ns += d.count(); }
    gateway::quota_clocks clocks() const;
};

// The value of one sample line `name{labels} value` of a /metrics text, or -1 when absent.
double metric_sample(const std::string& text, const std::string& series);

// The test CA as a file (written once per process), for upstreams.*.ca_file.
const std::string& test_ca_file();

} // namespace gw::test
