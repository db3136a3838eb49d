// The attempts of one call to an upstream, as a sans-io state machine. The driver (a
// coroutine that owns the sockets and the pooled connection) reports what happened and
// performs the step it gets back; every decision is made here, with time passed in:
//
//   start ──► acquire ──► connection? ──no──► retry? ──► wait d ──► (breaker allows?) ──► acquire
//                            │yes                └─no──► pass the held reply / fail: connect
//                            ▼
//                 request sent, reply head read? ──no──► stale pooled connection? ──► acquire at once
//                            │yes                        └─ otherwise ──► fail: response (may have run at Dify)
//                            ▼
//                 retryable failure (held whole)? ──no──► relay
//                            │yes
//                            └──► retry? ──► wait d (429 with another Dify key: rotate, no wait) ──► …
//                                  └─no──► pass the held reply
//
// Which failures are retried and how long to wait is decide_retry's (retry.hpp); retries
// also need the upstream's retry budget, a request whose body was streamed is never sent
// twice, and no attempt starts while the upstream's circuit breaker is open. The breaker
// hears every attempt's outcome. Not thread-safe; the breaker and budget are the
// upstream's (per worker) and must outlive the machine.
#pragma once

#include "core/retry.hpp"

#include <cstddef>
#include <functional>
#include <optional>

namespace gw::core {

struct attempt_settings
{
    retry_settings retry;
    nanos deadline{0};          // of the whole call, on the clock of every `now` passed in
    bool generating = false;    // a generation call: a 500 is not retried
    bool safe_method = false;   // GET or HEAD
    std::size_t key_count = 1;  // the app's Dify keys: a 429 tries the next one at once
};

enum class attempt_step
{
    acquire,            // take a connection and send the request (a new attempt)
    wait,               // pause for `delay`, then call resume()
    relay,              // the reply is the answer: relay it to the client
    pass_held,          // retries are over: the held error reply goes to the client
    fail_circuit_open,  // no attempt: the upstream's circuit is open (503)
    fail_connect,       // no connection could be had, and no reply is held
    fail_response,      // the request may have reached Dify: its failure is the answer
};

struct attempt_action
{
    attempt_step step = attempt_step::acquire;
    nanos delay{0};                             // for wait
    bool rotate_key = false;                    // use the app's next Dify key from now on
    std::optional<upstream_failure> retrying{}; // this action retries after that failure (for metrics)
};

class attempt_machine
{
public:
    attempt_machine(attempt_settings settings, circuit_breaker& breaker, retry_budget& budget, std::function<double()> random01);

    // The call begins (counted in the retry budget's window).
    attempt_action start(nanos now);
    // After a wait: the next attempt, unless the circuit opened meanwhile.
    attempt_action resume(nanos now);
    // No connection (connect or TLS failed, or none free before the deadline).
    attempt_action acquire_failed(nanos now);
    // Sending the request or reading the reply head failed. `stale`: a reused pooled
    // connection closed before a byte came back (nothing reached Dify). `body_sent`: part
    // of a streamed request body already went (it cannot be sent again).
    attempt_action send_failed(nanos now, bool stale, bool body_sent);
    // A reply head came. `failure`: the reply is a retryable failure the driver holds
    // whole (nullopt: relay it as it comes). `status` tells the breaker about 502-504.
    attempt_action replied(nanos now, int status, std::optional<upstream_failure> failure, std::optional<nanos> retry_after,
                           bool body_sent);

    // The driver ended the call without an outcome for the breaker (the client's body
    // broke off or timed out): a probe it held is released.
    void abandoned() { breaker_.release_probe(); }

    int attempts() const { return attempts_; }
    // Whether an error reply is held (the driver keeps it until relay or pass_held).
    bool holds_reply() const { return holding_; }

private:
    // Whether to try again after `f`, and how.
    attempt_action after_failure(nanos now, upstream_failure f, std::optional<nanos> retry_after, bool body_sent);
    attempt_action gave_up(attempt_step without_held) const;
    attempt_action next_attempt(nanos now);

    attempt_settings settings_;
    circuit_breaker& breaker_;
    retry_budget& budget_;
    std::function<double()> random01_;
    int attempts_ = 0;
    std::size_t keys_tried_ = 1;
    bool holding_ = false;
};

} // namespace gw::core
