// Fault injection for the emulator: a fault spec ("status=503; retry_after=2",
// "reset_after=3", "stall_ms=500; after=2", ...) given per request in the
// X-Emulator-Fault header or programmed for the next N matching requests.
#pragma once

#include "gateway/emulator/apps.hpp"
#include "gateway/emulator/wire.hpp"

#include <boost/json/value.hpp>

#include <deque>
#include <optional>
#include <string>

namespace gw::emulator {

// Every field is optional; an empty spec injects nothing. Counts are stream events.
struct fault_spec
{
    int status = 0;                  // answer this HTTP status instead of Dify's reply
    std::optional<int> retry_after;  // with status: a Retry-After header (seconds)
    bool concurrency = false;        // Dify's concurrency-limit 400 invalid_param
    bool close = false;              // close the connection without responding
    std::optional<int> reset_after;  // TCP reset after K events (0: instead of responding)
    int stall_ms = 0;                // silence before headers, or after `after` events
    std::optional<int> after;        // where stall/malformed_sse/error_event happen (events)
    int trickle_ms = 0;              // write the response 8 bytes at a time, this far apart
    bool malformed_sse = false;      // a frame whose JSON is broken
    bool error_event = false;        // an `error` event, then the stream ends

    bool empty() const;
    bool replaces_reply() const { return status != 0 || concurrency; }
    std::string to_string() const;
};

// Parses "key=value; flag; ..." (keys as the fields above). nullopt + error on bad input.
std::optional<fault_spec> parse_fault(std::string_view text, std::string& error);

// The reply a status/concurrency fault gives, shaped like what sits in front of Dify:
// Dify JSON for 400/429/500, an HTML proxy page for 502/503/504.
reply fault_reply(const fault_spec& f, const app_def* app);

// Faults programmed through /_emulator/faults, consumed by matching requests in order.
class fault_queue
{
public:
    struct entry
    {
        std::string method;      // "" = any
        std::string path_prefix; // "" = any
        int remaining = 1;
        fault_spec spec;
    };

    void add(entry e) { entries_.push_back(std::move(e)); }
    // The first matching entry's spec (and one use of it), or nullopt.
    std::optional<fault_spec> take(std::string_view method, std::string_view path);
    void clear() { entries_.clear(); }
    boost::json::value to_json() const;

private:
    std::deque<entry> entries_;
};

} // namespace gw::emulator
