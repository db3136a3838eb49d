// dify-bench: a loopback-only load generator for Dify-shaped traffic (through
// dify-gateway, nginx, haproxy, or straight to dify-emulator). Modes:
//   blocking  N connections send blocking chat-messages back to back;
//   stream    N concurrent SSE streams, measuring time to first event and gaps;
//   hold      N streams opened and held (memory per open stream is measured outside).
// --rate paces blocking requests open-loop (latency counted from each request's scheduled
// start, so a saturated server shows as growing latency; the schedule starts once every
// connection is open, so set-up is not counted); --open-rate paces new
// connections; --words sets the query length, and so the number of streamed events.
// Bounded by --requests and --duration-s; prints a progress line each second, then a
// summary (throughput, latency percentiles, errors) and, with --json, one JSON line.
#include "core/text.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using clock_type = std::chrono::steady_clock;
constexpr auto use_nothrow = net::as_tuple(net::use_awaitable);

struct options
{
    std::string url = "http://127.0.0.1:8080";
    std::string ca_file;
    std::string key;
    std::string path = "/v1/chat-messages";
    std::string mode = "blocking";
    int connections = 16;
    long requests = 10'000;
    double duration_s = 10;
    std::size_t body_bytes = 0; // padding of the query
    int words = 0;              // query of N words: the emulator streams one event per word
    double rate = 0;            // requests per second over all connections; 0 = as fast as possible
    double open_rate = 0;       // new connections per second; 0 = all at once
    bool json = false;
};

struct target
{
    bool tls = false;
    std::string host;
    std::string port;
    std::string base_path;
};

// Latencies in microseconds; percentiles by sorting at the end (bounded runs).
struct samples
{
    std::vector<double> values;
    double percentile(double p)
    {
        if (values.empty()) return 0;
        std::sort(values.begin(), values.end());
        auto idx = static_cast<std::size_t>(p / 100.0 * static_cast<double>(values.size() - 1) + 0.5);
        return values[std::min(idx, values.size() - 1)];
    }
};

struct results
{
    long started = 0, completed = 0, errors = 0, events = 0, open_streams = 0;
    std::map<int, long> statuses;
    samples latency_us, ttfb_us, gap_us;
};

class runner
{
public:
    runner(net::io_context& io, options opts, target t, ssl::context* tls)
        : io_(io), opts_(std::move(opts)), target_(std::move(t)), tls_(tls)
    {
        std::string query = "bench";
        for (int w = 1; w < opts_.words; ++w) query += " w" + std::to_string(w);
        if (query.size() < opts_.body_bytes) query.append(opts_.body_bytes - query.size(), 'x');
        bool streaming = opts_.mode != "blocking";
        body_ = boost::json::serialize(boost::json::object{{"inputs", boost::json::object()},
                                                           {"query", query},
                                                           {"response_mode", streaming ? "streaming" : "blocking"},
                                                           {"user", "bench"}});
        start_ = clock_type::now();
        deadline_ = start_ + std::chrono::milliseconds(static_cast<long>(opts_.duration_s * 1000));
        go_.expires_at(clock_type::time_point::max());
    }

    // Open loop with every connection opened at once: the clock starts when all are open
    // (or failed), so that no request's latency includes a connection's TCP or TLS set-up.
    void connection_ready()
    {
        if (going_ || ++ready_ < opts_.connections) return;
        going_ = true;
        start_ = clock_type::now();
        deadline_ = start_ + std::chrono::milliseconds(static_cast<long>(opts_.duration_s * 1000));
        go_.cancel();
    }
    // From the start of the schedule to the last response (the progress ticker may run on).
    double elapsed_s() const { return std::chrono::duration<double>(last_done_ - start_).count(); }

    bool more() const { return res.started < opts_.requests && clock_type::now() < deadline_; }
    bool time_left() const { return clock_type::now() < deadline_; }

    net::awaitable<void> client(std::vector<tcp::endpoint> eps)
    {
        if (target_.tls) {
            ssl::stream<beast::tcp_stream> s(io_, *tls_);
            SSL_set_tlsext_host_name(s.native_handle(), target_.host.c_str());
            s.set_verify_callback(ssl::host_name_verification(target_.host));
            s.next_layer().expires_after(std::chrono::seconds(10));
            auto [ec, ep] = co_await s.next_layer().async_connect(eps, use_nothrow);
            if (!ec) std::tie(ec) = co_await s.async_handshake(ssl::stream_base::client, use_nothrow);
            connection_ready();
            if (ec) {
                ++res.errors;
                co_return;
            }
            co_await loop(s, s.next_layer());
            if (more()) co_await client(eps); // the server closed the connection: open another
        } else {
            beast::tcp_stream s(io_);
            s.expires_after(std::chrono::seconds(10));
            auto [ec, ep] = co_await s.async_connect(eps, use_nothrow);
            connection_ready();
            if (ec) {
                ++res.errors;
                co_return;
            }
            co_await loop(s, s);
            if (more()) co_await client(eps); // the server closed the connection: open another
        }
    }

    results res;

private:
    template <typename Stream>
    net::awaitable<void> loop(Stream& s, beast::tcp_stream& tcp)
    {
        beast::flat_buffer buffer;
        net::steady_timer pace(io_);
        if (!going_) co_await go_.async_wait(use_nothrow); // connection_ready() cancels it
        while (more()) {
            auto start = clock_type::now();
            if (opts_.rate > 0) { // open loop: request i starts at start_ + i / rate
                start = start_ + std::chrono::duration_cast<clock_type::duration>(
                                     std::chrono::duration<double>(static_cast<double>(res.started) / opts_.rate));
                ++res.started;
                pace.expires_at(start);
                co_await pace.async_wait(use_nothrow);
            } else {
                ++res.started;
            }
            http::request<http::string_body> req{http::verb::post, target_.base_path + opts_.path, 11};
            req.set(http::field::host, target_.host);
            req.set(http::field::authorization, "Bearer " + opts_.key);
            req.set(http::field::content_type, "application/json");
            req.body() = body_;
            req.prepare_payload();
            tcp.expires_after(std::chrono::seconds(120));
            auto [wec, wn] = co_await http::async_write(s, req, use_nothrow);
            if (wec) {
                ++res.errors;
                co_return;
            }
            http::response_parser<http::buffer_body> p;
            p.body_limit(boost::none);
            auto [hec, hn] = co_await http::async_read_header(s, buffer, p, use_nothrow);
            if (hec) {
                ++res.errors;
                co_return;
            }
            ++res.statuses[static_cast<int>(p.get().result_int())];
            bool streaming = core_is_sse(p.get()[http::field::content_type]);
            if (streaming) ++res.open_streams;
            std::array<char, 16 * 1024> piece;
            std::optional<clock_type::time_point> last_event;
            std::string tail;
            while (!p.is_done()) {
                p.get().body().data = piece.data();
                p.get().body().size = piece.size();
                auto [rec, rn] = co_await http::async_read_some(s, buffer, p, use_nothrow);
                if (rec == http::error::need_buffer) rec = {};
                if (rec) {
                    ++res.errors;
                    if (streaming) --res.open_streams;
                    co_return;
                }
                if (!streaming) continue;
                tail.append(piece.data(), piece.size() - p.get().body().size);
                for (auto end = tail.find("\n\n"); end != std::string::npos; end = tail.find("\n\n")) {
                    auto now = clock_type::now();
                    if (!last_event)
                        res.ttfb_us.values.push_back(std::chrono::duration<double, std::micro>(now - start).count());
                    else
                        res.gap_us.values.push_back(std::chrono::duration<double, std::micro>(now - *last_event).count());
                    last_event = now;
                    ++res.events;
                    tail.erase(0, end + 2);
                }
            }
            if (streaming) --res.open_streams;
            last_done_ = clock_type::now();
            res.latency_us.values.push_back(std::chrono::duration<double, std::micro>(last_done_ - start).count());
            ++res.completed;
            if (!p.get().keep_alive()) co_return;
        }
    }

    static bool core_is_sse(std::string_view content_type)
    {
        return gw::core::media_type(content_type) == "text/event-stream";
    }

    net::io_context& io_;
    options opts_;
    target target_;
    ssl::context* tls_;
    std::string body_;
    clock_type::time_point start_, deadline_, last_done_;
    net::steady_timer go_{io_};
    int ready_ = 0;
    bool going_ = opts_.rate <= 0 || opts_.open_rate > 0; // only the open loop waits for its connections
};

net::awaitable<void> progress(runner& r, const options& o, clock_type::time_point start)
{
    net::steady_timer t(co_await net::this_coro::executor);
    long last = 0;
    while (r.time_left() && (r.res.started < o.requests || r.res.open_streams > 0)) {
        t.expires_after(std::chrono::seconds(1));
        co_await t.async_wait(use_nothrow);
        double elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
        std::fprintf(stderr, "[%5.1fs] completed %ld (+%ld/s) errors %ld open streams %ld events %ld\n", elapsed,
                     r.res.completed, r.res.completed - last, r.res.errors, r.res.open_streams, r.res.events);
        last = r.res.completed;
    }
}

// Opens the connections, at most --open-rate per second.
net::awaitable<void> open_connections(runner& r, std::vector<tcp::endpoint> eps, options o)
{
    auto ex = co_await net::this_coro::executor;
    net::steady_timer t(ex);
    auto start = clock_type::now();
    for (int c = 0; c < o.connections && r.time_left(); ++c) {
        if (o.open_rate > 0) {
            t.expires_at(start + std::chrono::duration_cast<clock_type::duration>(
                                     std::chrono::duration<double>(static_cast<double>(c) / o.open_rate)));
            co_await t.async_wait(use_nothrow);
        }
        net::co_spawn(ex, r.client(eps), net::detached);
    }
}

const char* usage = R"(usage: dify-bench --url URL --key KEY [options]
  --url URL          http(s)://127.0.0.1:PORT[/prefix] (loopback only)
  --ca FILE          CA for https
  --key KEY          bearer key (tenant key, or a Dify app key when going direct)
  --path PATH        default /v1/chat-messages
  --mode MODE        blocking | stream | hold            (default blocking)
  --connections N    concurrent connections / streams     (default 16)
  --requests N       stop after N requests                (default 10000)
  --duration-s S     stop after S seconds                 (default 10)
  --body-bytes B     pad the query to B bytes
  --words N          a query of N words (one streamed event per word)
  --rate R           offered load, requests/s over all connections (open loop)
  --open-rate R      open at most R new connections per second
  --json             also print one JSON line with the results
)";

} // namespace

int main(int argc, char** argv)
{
    options o;
    try {
        for (int i = 1; i < argc; ++i) {
            std::string a = argv[i];
            auto value = [&]() -> std::string {
                if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
                return argv[++i];
            };
            if (a == "--help") {
                std::cout << usage;
                return 0;
            } else if (a == "--url") o.url = value();
            else if (a == "--ca") o.ca_file = value();
            else if (a == "--key") o.key = value();
            else if (a == "--path") o.path = value();
            else if (a == "--mode") o.mode = value();
            else if (a == "--connections") o.connections = std::stoi(value());
            else if (a == "--requests") o.requests = std::stol(value());
            else if (a == "--duration-s") o.duration_s = std::stod(value());
            else if (a == "--body-bytes") o.body_bytes = std::stoul(value());
            else if (a == "--words") o.words = std::stoi(value());
            else if (a == "--rate") o.rate = std::stod(value());
            else if (a == "--open-rate") o.open_rate = std::stod(value());
            else if (a == "--json") o.json = true;
            else throw std::runtime_error("unknown option " + a);
        }
        if (o.mode != "blocking" && o.mode != "stream" && o.mode != "hold") throw std::runtime_error("--mode: blocking, stream or hold");
        if (o.connections < 1 || o.requests < 1 || o.duration_s <= 0 || o.words < 0 || o.rate < 0 || o.open_rate < 0)
            throw std::runtime_error("bounds must be positive");
        if (o.mode == "hold") o.requests = o.connections; // each connection holds one stream

        auto parsed = boost::urls::parse_absolute_uri(o.url);
        if (!parsed || (parsed->scheme() != "http" && parsed->scheme() != "https")) throw std::runtime_error("--url: not http(s)");
        target t;
        t.tls = parsed->scheme() == "https";
        t.host = std::string(parsed->host());
        t.port = parsed->has_port() ? std::string(parsed->port()) : (t.tls ? "443" : "80");
        t.base_path = std::string(parsed->encoded_path());
        while (!t.base_path.empty() && t.base_path.back() == '/') t.base_path.pop_back();

        net::io_context io(1);
        tcp::resolver resolver(io);
        std::vector<tcp::endpoint> eps;
        for (const auto& e : resolver.resolve(t.host, t.port)) {
            if (!e.endpoint().address().is_loopback()) throw std::runtime_error("only loopback targets are allowed: " + t.host);
            eps.push_back(e.endpoint());
        }
        std::optional<ssl::context> tls;
        if (t.tls) {
            tls.emplace(ssl::context::tls_client);
            tls->set_verify_mode(ssl::verify_peer);
            if (o.ca_file.empty())
                tls->set_default_verify_paths();
            else
                tls->load_verify_file(o.ca_file);
        }
        runner r(io, o, t, tls ? &*tls : nullptr);
        auto start = clock_type::now();
        net::co_spawn(io, open_connections(r, eps, o), net::detached);
        net::co_spawn(io, progress(r, o, start), net::detached);
        io.run();
        double elapsed = r.res.completed > 0 ? r.elapsed_s() : std::chrono::duration<double>(clock_type::now() - start).count();

        auto& res = r.res;
        double rps = static_cast<double>(res.completed) / elapsed;
        std::printf("mode %s, %d connections, %.2f s: %ld requests (%.0f/s), %ld errors, %ld events\n", o.mode.c_str(),
                    o.connections, elapsed, res.completed, rps, res.errors, res.events);
        std::printf("latency us: p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f\n", res.latency_us.percentile(50),
                    res.latency_us.percentile(90), res.latency_us.percentile(99), res.latency_us.percentile(99.9),
                    res.latency_us.percentile(100));
        if (o.mode != "blocking")
            std::printf("stream us: ttfb p50 %.0f p99 %.0f  gap p50 %.0f p99 %.0f\n", res.ttfb_us.percentile(50),
                        res.ttfb_us.percentile(99), res.gap_us.percentile(50), res.gap_us.percentile(99));
        for (const auto& [status, n] : res.statuses) std::printf("status %d: %ld\n", status, n);
        if (o.json) {
            boost::json::object statuses;
            for (const auto& [status, n] : res.statuses) statuses[std::to_string(status)] = n;
            boost::json::object out{{"mode", o.mode}, {"connections", o.connections}, {"seconds", elapsed},
                                    {"requests", res.completed}, {"rps", rps}, {"errors", res.errors}, {"events", res.events},
                                    {"p50_us", res.latency_us.percentile(50)}, {"p90_us", res.latency_us.percentile(90)},
                                    {"p99_us", res.latency_us.percentile(99)}, {"p999_us", res.latency_us.percentile(99.9)},
                                    {"max_us", res.latency_us.percentile(100)}, {"ttfb_p50_us", res.ttfb_us.percentile(50)},
                                    {"ttfb_p99_us", res.ttfb_us.percentile(99)}, {"gap_p50_us", res.gap_us.percentile(50)},
                                    {"gap_p99_us", res.gap_us.percentile(99)}, {"statuses", statuses}};
            std::printf("%s\n", boost::json::serialize(out).c_str());
        }
        return res.errors == 0 ? 0 : 1;
    } catch (const std::exception& e) {
        std::cerr << "dify-bench: " << e.what() << "\n" << usage;
        return 2;
    }
}
