#include "tests/support/gateway_fixture.hpp"

#include "config/validate.hpp"
#include "tests/support/test_certs.hpp"

#include <unistd.h>

#include <fstream>
#include <stdexcept>

namespace gw::test {

const std::string& test_ca_file()
{
    static const std::string path = [] {
        std::string p = "/tmp/gw-test-ca-" + std::to_string(::getpid()) + ".pem";
        std::ofstream(p) << pki().ca_cert_pem;
        return p;
    }();
    return path;
}

config::gateway_config gateway_config_for(const running_emulator& emu)
{
    config::gateway_config c;
    c.server.listen = "127.0.0.1:0";
    c.server.threads = 2;
    c.server.drain_idle_grace_ms = std::chrono::milliseconds(0); // idle test clients do not hold a drain up
    c.admin.listen = "127.0.0.1:0";
    c.log.level = gw::config::log_level::warn;
    config::upstream_config u;
    u.url = (emu.tls() ? "https://localhost:" : "http://localhost:") + std::to_string(emu.endpoint().port());
    u.ca_file = emu.tls() ? test_ca_file() : "";
    u.max_connections = 4;
    c.upstreams["dify"] = u;
    c.apps["chat"] = {"dify", {keys::chat}, 0};
    c.apps["agent"] = {"dify", {keys::agent}, 0};
    c.apps["chatflow"] = {"dify", {keys::chatflow}, 0};
    c.apps["workflow"] = {"dify", {keys::workflow}, 0};
    c.apps["completion"] = {"dify", {keys::completion}, 0};
    config::tenant_config alpha;
    alpha.keys = {tenant_keys::alpha};
    alpha.apps = {"chat", "agent", "chatflow", "workflow", "completion"};
    alpha.default_app = "chat";
    c.tenants["alpha"] = alpha;
    config::tenant_config beta;
    beta.keys = {tenant_keys::beta};
    beta.apps = {"chat", "workflow"};
    beta.default_app = "chat";
    c.tenants["beta"] = beta;
    return c;
}

running_gateway::running_gateway(const running_emulator& emu, const std::function<void(config::gateway_config&)>& adjust)
    : running_gateway([&] {
          auto c = gateway_config_for(emu);
          if (adjust) adjust(c);
          return c;
      }())
{
}

gateway::quota_clocks movable_clocks::clocks() const
{
    auto clocks = gateway::quota_clocks::system();
    clocks.steady = [system = clocks.steady, ahead = ahead_ns] { return system() + core::nanos(ahead->load()); };
    return clocks;
}

running_gateway::running_gateway(config::gateway_config cfg, std::string config_path, gateway::quota_clocks clocks)
{
    config::problems problems;
    config::validate(cfg, problems); // fills derived fields (upstream host/port/tls)
    if (!problems.empty()) throw std::runtime_error("test gateway config: " + problems.list().front());
    server_ = std::make_unique<gateway::server>(std::make_shared<const config::gateway_config>(std::move(cfg)),
                                                std::move(config_path), std::move(clocks));
    server_->start();
}

void running_gateway::drain_and_wait()
{
    if (stopped_) return;
    stopped_ = true;
    server_->drain();
    server_->wait();
}

running_gateway::~running_gateway()
{
    drain_and_wait();
}

double metric_sample(const std::string& text, const std::string& series)
{
    auto pos = text.find("\n" + series + " ");
    if (pos == std::string::npos) return -1;
    pos += series.size() + 2;
    return std::stod(text.substr(pos, text.find('\n', pos) - pos));
}

} // namespace gw::test
