// The admin listener (admin.listen), separate from the tenant listener and not opened
// by tenant keys: GET /healthz (alive), GET /readyz (503 while draining),
// GET /metrics (Prometheus text format), GET /admin/usage (per tenant and app: requests, refusals by reason, tokens today,
// remaining daily budget), POST /admin/reload (re-read the config file). Runs on one
// worker's executor.
#pragma once

#include "gateway/worker.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <functional>
#include <memory>

namespace gw::gateway {

class admin_listener
{
public:
    using reload_fn = std::function<std::vector<std::string>()>; // problems; empty = reloaded

    // Binds `listen` (throws std::runtime_error on failure). `ready` tells /readyz;
    // `reload` serves POST /admin/reload.
    admin_listener(worker& w, const std::string& listen, std::function<bool()> ready, reload_fn reload,
                   std::function<std::string()> metrics);

    boost::asio::ip::tcp::endpoint endpoint() const { return endpoint_; }
    void start();
    void stop(); // call on the worker's executor

private:
    net::awaitable<void> accept_loop();

    worker& w_;
    std::function<bool()> ready_;
    reload_fn reload_;
    std::function<std::string()> metrics_;
    std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
    boost::asio::ip::tcp::endpoint endpoint_;
};

} // namespace gw::gateway
