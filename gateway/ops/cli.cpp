#include "gateway/ops/cli.hpp"

#include "config/loader.hpp"
#include "core/key_hash.hpp"
#include "gateway/downstream/server.hpp"
#include "gateway/ops/logging.hpp"
#include "gateway/upstream/tls_record_buffers.hpp"

#include <boost/asio/signal_set.hpp>

#include <spdlog/spdlog.h>

#include <functional>
#include <iostream>
#include <ostream>
#include <thread>

namespace gw::gateway {

namespace {

constexpr const char* usage = R"(usage:
  dify-gateway --config FILE         run the gateway (SIGTERM/SIGINT drain; a second signal stops at once)
  dify-gateway --check-config FILE   validate FILE; print every problem with its JSON path
                                     (exit 0 = valid, 2 = invalid)
  dify-gateway hash-key KEY          print sha256:<hex> of KEY, for tenants.<name>.keys
  dify-gateway --version
  dify-gateway --help

A gateway in front of Dify's Service API: per-tenant keys, per-app Dify keys, pooled TLS
upstream connections, SSE relay, quotas and retries. See README.md.
)";

int check_config(const std::string& path, std::ostream& out, std::ostream& err)
{
    auto result = config::load_config_file(path);
    if (result.ok()) {
        const auto& c = *result.config;
        out << path << ": valid (" << c.tenants.size() << " tenants, " << c.apps.size() << " apps, "
            << c.upstreams.size() << " upstreams)\n";
        return exit_ok;
    }
    err << path << ": " << result.problems.size() << (result.problems.size() == 1 ? " problem" : " problems") << "\n";
    for (const auto& p : result.problems) err << "  " << p << "\n";
    return exit_bad_config;
}

} // namespace

namespace {

// Runs the gateway for `config_path` until SIGTERM/SIGINT (drain; a second signal stops
// at once); SIGHUP reloads. Returns the process exit code.
int run_gateway(const std::string& config_path)
{
    auto loaded = config::load_config_file(config_path);
    if (!loaded.ok()) {
        std::cerr << config_path << ": " << loaded.problems.size() << " problem(s)\n";
        for (const auto& p : loaded.problems) std::cerr << "  " << p << "\n";
        return 2;
    }
    auto cfg = std::make_shared<const config::gateway_config>(std::move(*loaded.config));
    setup_logging(cfg->log);
    if (tls_record_buffers_refused())
        spdlog::warn("OpenSSL allocated before the gateway could install its record-buffer recycling: each TLS record "
                     "costs a malloc and a free");
    try {
        server srv(cfg, config_path);
        srv.start();
        net::io_context signals_ctx;
        net::signal_set signals(signals_ctx, SIGINT, SIGTERM, SIGHUP);
        int received = 0;
        std::function<void(const error_code&, int)> on_signal = [&](const error_code& ec, int sig) {
            if (ec) return;
            if (sig == SIGHUP) {
                srv.reload(config_path);
                signals.async_wait(on_signal);
                return;
            }
            if (++received == 1) {
                spdlog::info("signal {}: draining (up to {} ms)", sig, cfg->server.drain_timeout_ms.count());
                srv.drain();
                signals.async_wait(on_signal);
            } else {
                spdlog::warn("second signal: stopping now");
                std::_Exit(1);
            }
        };
        signals.async_wait(on_signal);
        std::thread signal_thread([&] { signals_ctx.run(); });
        // Announced once signals are handled, so a SIGHUP right after this line reloads.
        std::cout << "dify-gateway listening on http://" << srv.endpoint() << " (" << srv.worker_count() << " workers)"
                  << std::endl;
        srv.wait();
        signals_ctx.stop();
        signal_thread.join();
        spdlog::info("stopped");
        spdlog::shutdown(); // flush the async loggers
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "dify-gateway: " << e.what() << "\n";
        return 1;
    }
}

} // namespace

int run_cli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err)
{
    if (args.empty()) {
        err << usage;
        return exit_usage;
    }
    const auto& cmd = args[0];
    if (cmd == "--help" || cmd == "-h") {
        out << usage;
        return exit_ok;
    }
    if (cmd == "--version") {
        out << "dify-gateway " << GW_VERSION << "\n";
        return exit_ok;
    }
    if (cmd == "--check-config") {
        if (args.size() != 2) {
            err << "--check-config takes exactly one FILE\n";
            return exit_usage;
        }
        return check_config(args[1], out, err);
    }
    if (cmd == "--config") {
        if (args.size() != 2) {
            err << "--config takes exactly one FILE\n";
            return exit_usage;
        }
        return run_gateway(args[1]);
    }
    if (cmd == "hash-key") {
        if (args.size() != 2 || args[1].empty()) {
            err << "hash-key takes exactly one non-empty KEY\n";
            return exit_usage;
        }
        out << core::hash_key(args[1]) << "\n";
        return exit_ok;
    }
    err << "unknown command or option \"" << cmd << "\"\n" << usage;
    return exit_usage;
}

} // namespace gw::gateway
