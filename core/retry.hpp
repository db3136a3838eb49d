// Retry decisions for upstream calls, with time and randomness injected:
// which failures are retried, exponential backoff with full jitter, Retry-After, the
// request's deadline, and a per-upstream retry budget that caps retries at a share of
// recent requests so a failing Dify never sees a retry storm.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>

namespace gw::core {

using nanos = std::chrono::nanoseconds;

enum class upstream_failure
{
    connect,            // connect / TLS failed: nothing was sent
    stale_connection,   // a pooled connection was dead before any response byte
    status_429,
    status_502,
    status_503,
    status_504,
    concurrency_limit,  // Dify's 400 invalid_param "Too many requests…"
    status_500,
    other,              // anything else: not retried
};
inline constexpr std::size_t upstream_failure_count = 9;

// Classifies a response status (+ body for 400s).
std::optional<upstream_failure> classify_status(int status, std::string_view code, std::string_view message);
// Whether a reply of this status may be a retryable failure (a 400 only by its body: worth
// reading it whole before classify_status decides).
bool may_be_retryable_status(int status);

// Parses Retry-After: delta seconds or an HTTP date (relative to `now_unix`).
std::optional<nanos> parse_retry_after(std::string_view value, std::int64_t now_unix);

struct retry_settings
{
    int max_attempts = 3;
    nanos base_delay = std::chrono::milliseconds(100);
    nanos max_delay = std::chrono::milliseconds(2000);
};

struct retry_decision
{
    bool retry = false;
    nanos delay{0};
};

// `attempts_done` attempts have failed with `f`. `generating` = a non-idempotent
// generation call; `safe_method` = GET/HEAD. `random01` returns a uniform value in [0, 1).
retry_decision decide_retry(const retry_settings& s, int attempts_done, upstream_failure f, bool generating, bool safe_method,
                            std::optional<nanos> retry_after, nanos time_left, const std::function<double()>& random01);

// Per upstream: retries may add at most `percent` of the requests seen in the last
// window (plus a small floor, so a quiet upstream can still retry). Not thread-safe.
class retry_budget
{
public:
    explicit retry_budget(double percent, nanos window = std::chrono::seconds(10), int floor = 3);
    void on_request(nanos now);
    // Takes one retry from the budget if there is one.
    bool try_spend(nanos now);
    std::int64_t denied() const { return denied_; }

private:
    void rotate(nanos now);
    double percent_;
    nanos half_window_;
    int floor_;
    nanos current_start_{0};
    std::int64_t requests_[2] = {0, 0}; // [previous half, current half]
    std::int64_t retries_[2] = {0, 0};
    std::int64_t denied_ = 0;
};

// Per upstream: closed → open after `threshold` consecutive failures; open answers at
// once for `cooldown`, then half-open lets one probe through; the probe's success closes
// it, its failure opens it again. Not thread-safe.
class circuit_breaker
{
public:
    enum class state { closed, open, half_open };
    circuit_breaker(int threshold = 5, nanos cooldown = std::chrono::seconds(5)) : threshold_(threshold), cooldown_(cooldown) {}

    // Whether a request may go upstream now (half-open: only the one probe).
    bool allow(nanos now);
    void on_success();
    void on_failure(nanos now);
    // The probe ended without telling anything about the upstream (a stale pooled
    // connection, the client gone): another request may probe.
    void release_probe() { probe_in_flight_ = false; }
    state current() const { return state_; }
    std::int64_t transitions() const { return transitions_; }

private:
    void move_to(state s);
    int threshold_;
    nanos cooldown_;
    state state_ = state::closed;
    int failures_ = 0;
    nanos opened_at_{0};
    bool probe_in_flight_ = false;
    std::int64_t transitions_ = 0;
};

const char* to_string(circuit_breaker::state s);
const char* to_string(upstream_failure f);

} // namespace gw::core
