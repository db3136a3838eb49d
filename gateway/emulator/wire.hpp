// The emulator's sans-io view of HTTP: a parsed request, the reply a handler produces
// (a whole body, or an SSE event source), and the body styles Dify really emits:
// REST errors (compact JSON + newline), blocking generate replies (Python json.dumps
// style), SSE frames (compact), and Flask's HTML 404 page.
#pragma once

#include <boost/json/value.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gw::emulator {

inline constexpr std::string_view dify_version = "1.13.2";

struct request
{
    std::string method;                                      // "GET", "POST", ...
    std::string path;                                        // target without the query
    std::string query;                                       // raw query string without '?'
    std::vector<std::pair<std::string, std::string>> headers; // names as received
    std::string body;

    // First header with that (case-insensitive) name; "" when absent.
    std::string_view header(std::string_view name) const;
    // Decoded query parameter; nullopt when absent.
    std::optional<std::string> query_param(std::string_view name) const;
};

// An SSE event source driven by the server: `next()` yields one complete frame at a time.
class event_stream
{
public:
    virtual ~event_stream() = default;
    // The next frame ("data: {...}\n\n"), or nullopt when the stream is finished.
    virtual std::optional<std::string> next() = 0;
    // True once the last frame was handed out (next() would return nullopt).
    virtual bool finished() const = 0;
    // Workflow and chatflow streams open with a bare ping (Dify 1.13).
    virtual bool initial_ping() const { return false; }

    // Ends the generation early (stop endpoint); wakes the writer through `on_wake`.
    void request_stop()
    {
        stop_requested_ = true;
        if (on_wake) on_wake();
    }
    bool stop_requested() const { return stop_requested_; }
    // Set by the server while it waits between frames; cleared when it stops waiting.
    std::function<void()> on_wake;

private:
    bool stop_requested_ = false;
};

struct reply
{
    int status = 200;
    std::string content_type = "application/json";
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    std::shared_ptr<event_stream> stream; // set: an SSE reply (status 200, chunked)
    std::chrono::milliseconds delay{0};   // time the "model" takes before a blocking reply
    std::shared_ptr<void> hold;           // released when the reply is done (concurrency slot)
};

// A REST error in Dify's shape: {"code":..,"message":..,"status":..} plus newline.
reply error_reply(int status, std::string_view code, std::string_view message);
// A REST JSON body (compact + newline, as flask-restx writes it).
reply json_reply(int status, const boost::json::value& body);
// A blocking generate reply (Python json.dumps: ", " and ": " separators, ASCII only).
reply generate_reply(const boost::json::value& body);
// Flask's HTML 404 for paths no route matches.
reply html_not_found();

// Python json.dumps(value) with default separators and ensure_ascii.
std::string python_dumps(const boost::json::value& v);
// Compact JSON as orjson writes it (no spaces, raw UTF-8, shortest round-trip doubles).
std::string compact_dumps(const boost::json::value& v);
// One SSE data frame: "data: <compact json>\n\n".
std::string sse_data_frame(const boost::json::value& v);
inline constexpr std::string_view sse_ping_frame = "event: ping\n\n";

} // namespace gw::emulator
