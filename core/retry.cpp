#include "core/retry.hpp"

#include "core/text.hpp"

#include <algorithm>
#include <charconv>
#include <ctime>

namespace gw::core {

std::optional<upstream_failure> classify_status(int status, std::string_view code, std::string_view message)
{
    switch (status) {
    case 429: return upstream_failure::status_429;
    case 502: return upstream_failure::status_502;
    case 503: return upstream_failure::status_503;
    case 504: return upstream_failure::status_504;
    case 500: return upstream_failure::status_500;
    default: break;
    }
    if (status == 400 && code == "invalid_param" && message.starts_with("Too many requests"))
        return upstream_failure::concurrency_limit;
    if (status >= 400) return upstream_failure::other;
    return std::nullopt;
}

bool may_be_retryable_status(int status)
{
    if (status == 400) return true; // Dify's concurrency limit: a 400 told apart by its body
    const auto failure = classify_status(status, {}, {});
    return failure && *failure != upstream_failure::other;
}

std::optional<nanos> parse_retry_after(std::string_view value, std::int64_t now_unix)
{
    value = trim(value);
    std::int64_t seconds = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
    if (ec == std::errc() && p == value.data() + value.size() && seconds >= 0) return std::chrono::seconds(seconds);
    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
    std::tm tm{};
    std::string text(value);
    const char* end = ::strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end != '\0') return std::nullopt;
    std::int64_t at = ::timegm(&tm);
    return std::chrono::seconds(std::max<std::int64_t>(0, at - now_unix));
}

retry_decision decide_retry(const retry_settings& s, int attempts_done, upstream_failure f, bool generating, bool safe_method,
                            std::optional<nanos> retry_after, nanos time_left, const std::function<double()>& random01)
{
    retry_decision d;
    if (attempts_done >= s.max_attempts) return d;
    switch (f) {
    case upstream_failure::connect:
    case upstream_failure::stale_connection:
    case upstream_failure::status_429:
    case upstream_failure::status_502:
    case upstream_failure::status_503:
    case upstream_failure::status_504:
    case upstream_failure::concurrency_limit: break;
    case upstream_failure::status_500:
        // A generation may have run (not idempotent); a GET may be retried once.
        if (generating || !safe_method || attempts_done > 1) return d;
        break;
    case upstream_failure::other: return d;
    }
    if (f == upstream_failure::stale_connection) { // nothing reached Dify: at once
        d.retry = time_left > nanos(0);
        return d;
    }
    // Full jitter: uniform in [0, min(max, base * 2^(attempt-1))].
    auto cap = s.base_delay * (std::int64_t{1} << std::min(attempts_done - 1, 30));
    cap = std::min(cap, s.max_delay);
    d.delay = nanos(static_cast<std::int64_t>(random01() * static_cast<double>(cap.count())));
    if (retry_after) d.delay = std::max(d.delay, *retry_after);
    d.retry = d.delay < time_left; // a retry that cannot finish before the deadline is pointless
    return d;
}

retry_budget::retry_budget(double percent, nanos window, int floor) : percent_(percent), half_window_(window / 2), floor_(floor) {}

void retry_budget::rotate(nanos now)
{
    if (now - current_start_ >= 2 * half_window_) {
        requests_[0] = requests_[1] = retries_[0] = retries_[1] = 0;
        current_start_ = now;
    } else if (now - current_start_ >= half_window_) {
        requests_[0] = requests_[1];
        retries_[0] = retries_[1];
        requests_[1] = retries_[1] = 0;
        current_start_ += half_window_;
    }
}

void retry_budget::on_request(nanos now)
{
    rotate(now);
    ++requests_[1];
}

bool retry_budget::try_spend(nanos now)
{
    rotate(now);
    double allowed = std::max<double>(floor_, (requests_[0] + requests_[1]) * percent_ / 100.0);
    if (retries_[0] + retries_[1] + 1 > allowed) {
        ++denied_;
        return false;
    }
    ++retries_[1];
    return true;
}

bool circuit_breaker::allow(nanos now)
{
    if (state_ == state::open && now - opened_at_ >= cooldown_) move_to(state::half_open);
    if (state_ == state::closed) return true;
    if (state_ == state::half_open && !probe_in_flight_) {
        probe_in_flight_ = true;
        return true;
    }
    return false;
}

void circuit_breaker::on_success()
{
    failures_ = 0;
    probe_in_flight_ = false;
    if (state_ != state::closed) move_to(state::closed);
}

void circuit_breaker::on_failure(nanos now)
{
    probe_in_flight_ = false;
    if (state_ == state::half_open || ++failures_ >= threshold_) {
        opened_at_ = now;
        failures_ = 0;
        if (state_ != state::open) move_to(state::open);
    }
}

void circuit_breaker::move_to(state s)
{
    state_ = s;
    ++transitions_;
}

const char* to_string(upstream_failure f)
{
    switch (f) {
    case upstream_failure::connect: return "connect";
    case upstream_failure::stale_connection: return "stale_connection";
    case upstream_failure::status_429: return "429";
    case upstream_failure::status_502: return "502";
    case upstream_failure::status_503: return "503";
    case upstream_failure::status_504: return "504";
    case upstream_failure::concurrency_limit: return "concurrency_limit";
    case upstream_failure::status_500: return "500";
    case upstream_failure::other: return "other";
    }
    return "unknown";
}

const char* to_string(circuit_breaker::state s)
{
    switch (s) {
    case circuit_breaker::state::closed: return "closed";
    case circuit_breaker::state::open: return "open";
    case circuit_breaker::state::half_open: return "half_open";
    }
    return "unknown";
}

} // namespace gw::core
