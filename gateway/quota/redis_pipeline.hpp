// The calls in flight on one multiplexed Redis connection (sans-io, no Asio). Redis
// answers a connection's commands in the order it received them, so callers' commands are
// appended to one output buffer (written in as few writes as the socket allows) and the
// replies read back are handed to the calls in submission order. A call whose caller gave
// up (deadline) stays in the queue and its replies are read and discarded: the stream
// stays in step for everyone after it.
#pragma once

#include "gateway/quota/resp_reader.hpp"

#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace gw::gateway {

// One caller's pipeline of commands and, once done, its replies or the connection's error.
struct redis_call
{
    std::size_t expected = 0;              // replies it waits for
    std::vector<redis_value> replies;      // in command order (error replies are values)
    boost::system::error_code ec;          // the connection failed before all replies came
    bool done = false;
    std::function<void()> on_done;         // the waiting caller's wake-up; cleared if it gave up
    std::chrono::steady_clock::time_point submitted{};
    // A subscription (RESP2 SUBSCRIBE): every reply from its first on is handed here as it
    // comes, and the call ends only with the connection. It must be the last call queued.
    // Runs inside feed(), on the connection's reader: it must not block or submit on this
    // connection; it may end the connection (fail_all), and then no more is handed out.
    std::function<void(const redis_value&)> on_message;
};

class redis_pipeline
{
public:
    // Queues `wire` (formatted commands expecting `call->expected` replies) behind
    // everything submitted before. A call expecting replies for no bytes ends at once
    // with a protocol error: it would take the replies of the calls behind it.
    void submit(std::shared_ptr<redis_call> call, std::string_view wire);
    // Commands whose replies the subscription (the last call queued) takes: PING.
    void append_output(std::string_view wire) { output_.append(wire); }
    // When the oldest call still waiting for replies was submitted (max() when none).
    std::chrono::steady_clock::time_point oldest_submitted() const;
    // The bytes to write next: everything submitted since the last take.
    std::string take_output();
    // The same bytes, left in place; drop_output(n) once the first n are written.
    std::string_view output() const { return output_; }
    void drop_output(std::size_t n) { output_.erase(0, n); }
    bool has_output() const { return !output_.empty(); }
    // Calls submitted and not yet answered in full.
    std::size_t in_flight() const { return pending_.size(); }

    // Reply bytes read from the connection; completes the calls they finish. False when
    // the bytes are not RESP, or answer no call: the connection is out of step and must go.
    bool feed(const char* data, std::size_t size);
    // The connection is gone: every call still waiting ends with `ec`.
    void fail_all(boost::system::error_code ec);

private:
    static void complete(redis_call& call);

    std::string output_;
    std::deque<std::shared_ptr<redis_call>> pending_;
    resp_reader reader_;
};

} // namespace gw::gateway
