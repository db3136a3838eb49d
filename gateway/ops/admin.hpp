// The admin listener (admin.listen), separate from the tenant listener and not opened
// by tenant keys: GET /healthz (alive), GET /readyz (503 while draining),
// GET /metrics (Prometheus text format), GET /admin/usage (per tenant and app: requests, refusals by reason, tokens today,
// remaining daily budget), POST /admin/reload (re-read the config file). The two /admin/
// actions need admin.token, or a caller on the same host when none is set
// (core/admin_access.hpp). Runs on one worker's executor; sessions refer to the listener,
// which outlives that executor's run.
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

    // Binds cfg.listen (throws std::runtime_error on failure). `ready` tells /readyz;
    // `reload` serves POST /admin/reload.
    admin_listener(worker& w, const config::admin_config& cfg, std::function<bool()> ready, reload_fn reload,
                   std::function<std::string()> metrics);

    boost::asio::ip::tcp::endpoint endpoint() const { return endpoint_; }
    void start();
    void stop(); // call on the worker's executor

private:
    net::awaitable<void> accept_loop();
    net::awaitable<void> session(boost::asio::ip::tcp::socket socket);

    worker& w_;
    std::string token_;
    std::function<bool()> ready_;
    reload_fn reload_;
    std::function<std::string()> metrics_;
    std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
    boost::asio::ip::tcp::endpoint endpoint_;
};

} // namespace gw::gateway
