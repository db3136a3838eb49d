// Runs a dify-emulator (service + server) on a background thread over loopback, on an
// ephemeral port, plain or TLS (test CA). The service is touched only from that thread;
// tests talk to it over HTTP.
#pragma once

#include "gateway/emulator/server.hpp"
#include "tests/support/http_client.hpp"

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <thread>

namespace gw::test {

class running_emulator
{
public:
    // `connect_delay`: each new connection waits this long before the emulator reads from it
    // (a distant Dify's connection setup).
    explicit running_emulator(emulator::service_options opts = {}, bool tls = true,
                              std::vector<emulator::app_def> apps = emulator::builtin_apps(), std::uint16_t port = 0,
                              std::chrono::milliseconds connect_delay = {});
    ~running_emulator();

    boost::asio::ip::tcp::endpoint endpoint() const { return endpoint_; }
    bool tls() const { return tls_; }
    std::unique_ptr<http_client> client() const { return std::make_unique<http_client>(endpoint_, tls_); }
    // GET /_emulator/stats as JSON.
    boost::json::value stats() const;
    // The emulator's graceful stop (server::drain), started on its thread; `quiet` runs there.
    void drain(std::chrono::milliseconds limit, std::function<void()> quiet);

private:
    bool tls_;
    emulator::service svc_;       // outlives io_: pending sessions refer to it
    boost::asio::io_context io_{1};
    std::unique_ptr<emulator::server> server_;
    boost::asio::ip::tcp::endpoint endpoint_;
    std::thread thread_;
};

// The built-in apps' keys (config/emulator_apps.json).
namespace keys {
inline const std::string chat = "app-emuchat00000000000000001";
inline const std::string agent = "app-emuagent0000000000000001";
inline const std::string chatflow = "app-emuchatflow0000000000001";
inline const std::string workflow = "app-emuworkflow0000000000001";
inline const std::string completion = "app-emucompletion00000000001";
} // namespace keys

} // namespace gw::test
