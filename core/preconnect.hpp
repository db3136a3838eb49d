// Predictive preconnect for one upstream on one worker: how many connections to open
// ahead of demand so that a new request (above all a new SSE stream, which holds its
// connection for the whole stream) finds one ready instead of waiting for a TCP connect and
// a TLS handshake (two round trips to a distant Dify).
//
// The pool keeps `ratio` × the most connections leased at once in the last one to two
// windows, capped at max_connections: a ramp of new streams keeps (ratio − 1) spares per
// stream in use, opened while earlier streams run; a burst's spares stay wanted for a window
// after it, then the pool's idle timeout closes what is no longer wanted. A failed
// preconnect pauses preconnecting for `backoff` (requests still connect on their own and
// feed the circuit breaker). ratio ≤ 1 turns it off. Time is passed in; not thread-safe.
#pragma once

#include <chrono>

namespace gw::core {

class preconnect_plan
{
public:
    using nanos = std::chrono::nanoseconds; // a point on a monotonic clock

    // `window`: at least 1 ns (a shorter one is taken as that).
    preconnect_plan(double ratio, int max_connections, nanos window = std::chrono::seconds(10),
                    nanos backoff = std::chrono::seconds(1));

    bool enabled() const { return ratio_ > 1.0; }
    // The number of connections leased now (after an acquire or a release).
    void leased(int n, nanos now);
    void failed(nanos now) { paused_until_ = now + backoff_; }
    // Connections to keep open now (idle + leased + connecting).
    int wanted(nanos now);
    // How many to start now, given `open` (idle + leased + connecting).
    int to_open(int open, nanos now);

private:
    void rotate(nanos now);

    double ratio_;
    int max_connections_;
    nanos window_;
    nanos backoff_;
    nanos window_start_{0};
    int peak_[2] = {0, 0}; // [previous window, current window]
    nanos paused_until_{0};
};

} // namespace gw::core
