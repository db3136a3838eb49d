// A test OTLP/HTTP receiver on loopback (ephemeral port): takes POSTs of OTLP JSON
// (ExportTraceServiceRequest), keeps their spans, answers 200 — or a status the test set
// for the next exports. Runs on its own thread; the test waits for spans on a condition,
// never by sleeping.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/json.hpp>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace gw::test {

class otlp_receiver
{
public:
    otlp_receiver();
    ~otlp_receiver();

    // "http://127.0.0.1:<port>/v1/traces"
    std::string url() const;
    // Every span received so far (the objects of resourceSpans[].scopeSpans[].spans[]).
    std::vector<boost::json::object> spans();
    // Waits (up to 10 s) until `done(spans)` holds; the spans then.
    std::vector<boost::json::object> wait_for(const std::function<bool(const std::vector<boost::json::object>&)>& done);
    // The next `n` exports are answered `status`.
    void fail_next(int n, unsigned status);
    int exports() const;
    // The last export's headers, lower-case names.
    std::vector<std::pair<std::string, std::string>> last_headers();

private:
    void serve(boost::asio::ip::tcp::socket socket);

    boost::asio::io_context io_{1};
    boost::asio::ip::tcp::acceptor acceptor_;
    std::thread thread_;
    std::vector<std::thread> connections_; // one thread per connection (each worker keeps one)
    std::vector<int> fds_;                 // theirs, shut down by the destructor
    mutable std::mutex m_;
    std::condition_variable changed_;
    std::vector<boost::json::object> spans_;
    std::vector<std::pair<std::string, std::string>> last_headers_;
    int exports_ = 0;
    int fail_left_ = 0;
    unsigned fail_status_ = 503;
};

// A span attribute's value as JSON ({"stringValue": ...} etc.), or null.
boost::json::value attribute(const boost::json::object& span, std::string_view key);

} // namespace gw::test
