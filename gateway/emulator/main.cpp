// dify-emulator: a Dify Service API emulator (HTTP or HTTPS) with fault injection.
// Prints "dify-emulator listening on <scheme>://<host>:<port>" once ready, so scripts can
// start it on port 0 and read the port back.
#include "core/text.hpp"
#include "gateway/emulator/server.hpp"

#include <boost/asio/signal_set.hpp>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>

namespace {

constexpr const char* usage = R"(usage: dify-emulator [options]

A faithful Dify Service API (/v1) emulator for development, tests and benchmarks.

options:
  --listen HOST:PORT       address to listen on (default 127.0.0.1:5001; port 0 = any free port)
  --tls-cert FILE          PEM certificate chain: serve HTTPS (needs --tls-key)
  --tls-key FILE           PEM private key
  --apps FILE              JSON list of apps (key, mode, name, max_active_requests, ...);
                           default: the built-in set, one app per mode (see README)
  --ping-interval-ms N     send `event: ping` after N ms without a frame (default 10000)
  --token-delay-ms N       delay between streamed events; blocking replies wait the sum (default 0)
  --connect-delay-ms N     each new connection waits N ms before the server reads from it
                           (TLS: before the handshake), as a distant server's setup (default 0)
  --seed N                 seed for generated ids (default: random)
  --drain-timeout-ms N     on SIGTERM/SIGINT, let replies and streams under way finish for at
                           most N ms, then stop (default 30000; a second signal stops at once)
  --version, --help

control routes (outside /v1): GET /_emulator/stats, GET|POST|DELETE /_emulator/faults,
POST /_emulator/reset; per request: header `X-Emulator-Fault: status=503; retry_after=2`.
)";

long parse_number(const std::string& flag, const std::string& v)
{
    char* end = nullptr;
    long n = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || n < 0) throw std::runtime_error(flag + ": expected a non-negative integer, got \"" + v + "\"");
    return n;
}

} // namespace

int main(int argc, char** argv)
{
    namespace emu = gw::emulator;
    std::string listen = "127.0.0.1:5001", cert, key, apps_file;
    emu::service_options opts;
    std::chrono::milliseconds drain_timeout{30000}, connect_delay{0};
    try {
        for (int i = 1; i < argc; ++i) {
            std::string a = argv[i];
            auto value = [&]() -> std::string {
                if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
                return argv[++i];
            };
            if (a == "--help" || a == "-h") {
                std::cout << usage;
                return 0;
            } else if (a == "--version") {
                std::cout << "dify-emulator " << GW_VERSION << " (emulates Dify " << emu::dify_version << ")\n";
                return 0;
            } else if (a == "--listen") {
                listen = value();
            } else if (a == "--tls-cert") {
                cert = value();
            } else if (a == "--tls-key") {
                key = value();
            } else if (a == "--apps") {
                apps_file = value();
            } else if (a == "--ping-interval-ms") {
                opts.ping_interval = std::chrono::milliseconds(std::max(1L, parse_number(a, value())));
            } else if (a == "--token-delay-ms") {
                opts.token_delay = std::chrono::milliseconds(parse_number(a, value()));
            } else if (a == "--connect-delay-ms") {
                connect_delay = std::chrono::milliseconds(parse_number(a, value()));
            } else if (a == "--drain-timeout-ms") {
                drain_timeout = std::chrono::milliseconds(parse_number(a, value()));
            } else if (a == "--seed") {
                opts.seed = static_cast<std::uint64_t>(parse_number(a, value()));
            } else {
                throw std::runtime_error("unknown option " + a + " (see --help)");
            }
        }
        if (cert.empty() != key.empty()) throw std::runtime_error("--tls-cert and --tls-key go together");
        auto hp = gw::core::parse_host_port(listen);
        if (!hp) throw std::runtime_error("--listen: \"" + listen + "\" is not HOST:PORT");

        auto apps = apps_file.empty() ? emu::builtin_apps() : emu::load_apps_file(apps_file);
        boost::asio::io_context io(1);
        emu::service svc(std::move(apps), opts);
        emu::server_options so{hp->host, hp->port, cert.empty() ? nullptr : emu::make_server_tls(cert, key), connect_delay};
        emu::server srv(io, svc, so);
        srv.start();
        boost::asio::signal_set signals(io, SIGINT, SIGTERM);
        signals.async_wait([&](const boost::system::error_code& ec, int) {
            if (ec) return;
            signals.async_wait([&](const boost::system::error_code&, int) { // a second signal
                srv.abandon_drain();
                io.stop();
            });
            srv.drain(drain_timeout, [&] { io.stop(); });
        });
        auto ep = srv.endpoint();
        std::cout << "dify-emulator listening on " << (so.tls ? "https" : "http") << "://"
                  << (ep.address().is_v6() ? "[" + ep.address().to_string() + "]" : ep.address().to_string()) << ":"
                  << ep.port() << " (" << svc.data().apps().size() << " apps)" << std::endl;
        io.run();
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "dify-emulator: " << e.what() << "\n";
        return 2;
    }
}
