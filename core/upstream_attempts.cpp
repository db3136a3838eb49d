#include "core/upstream_attempts.hpp"

namespace gw::core {

namespace {

// Failures that say the upstream itself is unwell (the breaker counts them); a 429 or an
// application error is an answer from a healthy upstream.
bool unwell(upstream_failure f)
{
    return f == upstream_failure::status_502 || f == upstream_failure::status_503 || f == upstream_failure::status_504 ||
           f == upstream_failure::connect;
}

void tell_breaker(circuit_breaker& b, nanos now, bool failed)
{
    if (failed)
        b.on_failure(now);
    else
        b.on_success();
}

} // namespace

attempt_machine::attempt_machine(attempt_settings settings, circuit_breaker& breaker, retry_budget& budget,
                                 std::function<double()> random01)
    : settings_(settings), breaker_(breaker), budget_(budget), random01_(std::move(random01))
{
}

attempt_action attempt_machine::start(nanos now)
{
    budget_.on_request(now);
    return next_attempt(now);
}

attempt_action attempt_machine::resume(nanos now)
{
    return next_attempt(now);
}

attempt_action attempt_machine::next_attempt(nanos now)
{
    if (!breaker_.allow(now)) return gave_up(attempt_step::fail_circuit_open);
    ++attempts_;
    return {attempt_step::acquire};
}

attempt_action attempt_machine::gave_up(attempt_step without_held) const
{
    return {holding_ ? attempt_step::pass_held : without_held};
}

attempt_action attempt_machine::acquire_failed(nanos now)
{
    tell_breaker(breaker_, now, true);
    auto a = after_failure(now, upstream_failure::connect, std::nullopt, false);
    return a.step == attempt_step::wait ? a : gave_up(attempt_step::fail_connect);
}

attempt_action attempt_machine::send_failed(nanos now, bool stale, bool body_sent)
{
    if (stale) { // nothing reached Dify: straight to another connection, if retries allow
        auto a = after_failure(now, upstream_failure::stale_connection, std::nullopt, body_sent);
        if (a.step == attempt_step::wait) {
            breaker_.release_probe(); // says nothing about the upstream: this call may probe again
            auto next = next_attempt(now); // no pause: no Dify was bothered
            next.retrying = upstream_failure::stale_connection;
            return next;
        }
    }
    tell_breaker(breaker_, now, true);
    holding_ = false; // this failure is the answer, not an older held reply
    return {attempt_step::fail_response};
}

attempt_action attempt_machine::replied(nanos now, int status, std::optional<upstream_failure> failure, std::optional<nanos> retry_after,
                                        bool body_sent)
{
    if (!failure) {
        tell_breaker(breaker_, now, status >= 502 && status <= 504);
        holding_ = false;
        return {attempt_step::relay};
    }
    tell_breaker(breaker_, now, unwell(*failure));
    holding_ = true;
    auto a = after_failure(now, *failure, retry_after, body_sent);
    return a.step == attempt_step::wait ? a : attempt_action{attempt_step::pass_held};
}

attempt_action attempt_machine::after_failure(nanos now, upstream_failure f, std::optional<nanos> retry_after, bool body_sent)
{
    auto d = decide_retry(settings_.retry, attempts_, f, settings_.generating, settings_.safe_method, retry_after,
                          settings_.deadline - now, random01_);
    attempt_action a{attempt_step::fail_connect}; // "no retry": the caller says what that means
    if (!d.retry || body_sent) return a;
    bool rotate = f == upstream_failure::status_429 && keys_tried_ < settings_.key_count;
    // A stale connection costs Dify nothing: it needs no budget.
    if (f != upstream_failure::stale_connection && !budget_.try_spend(now)) return a;
    if (rotate) ++keys_tried_;
    return {attempt_step::wait, rotate ? nanos(0) : d.delay, rotate, f};
}

} // namespace gw::core
