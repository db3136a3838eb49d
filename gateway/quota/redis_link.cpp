#include "gateway/quota/redis_link.hpp"

#include "gateway/quota/redis_scripts.hpp"
#include "gateway/ops/spawn.hpp"

#include <boost/asio/co_spawn.hpp>

#include <spdlog/spdlog.h>

#include <map>
#include <optional>
#include <string_view>
#include <unordered_map>

namespace gw::gateway {

namespace {

using namespace std::chrono_literals;

// A background batch may take longer than a request's admission would wait.
constexpr auto min_write_deadline = 1000ms;
// Writes one admission carries at most (each adds a little to that request's wait), and
// slot releases beyond them (they merge into a call per sorted set and tenant's day).
constexpr std::size_t max_riders = 64;
constexpr std::size_t max_release_riders = 1024;
// While writes fail, one batch every this long finds out whether Redis is back.
constexpr auto probe_interval = 200ms;

// Error replies that say "not now" rather than "never": the write is tried again.
bool transient(const redis_value& reply)
{
    for (const char* prefix : {"LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY", "NOSCRIPT", "MOVED", "ASK"})
        if (reply.str.starts_with(prefix)) return true;
    return false;
}

// Takes a folded settlement's reply out of its admission's reply (redis_scripts::
// fold_settlement): the last element, after which the admission's reply is as it would
// have been alone. A reply of another shape is an error that stopped the whole script:
// before the settlement ran (NOSCRIPT is resent before this), or in the admission's part
// after it (a command Redis refused there, such as a key of the wrong type). Either way
// the settlement takes that error: a transient one (READONLY, BUSY...) retries it, which
// settlements allow, and another counts it as refused, even when it was applied first.
redis_value take_settlement_reply(redis_value& admission)
{
    if (admission.type != redis_value::kind::array || admission.elements.empty()) return admission;
    redis_value settlement = std::move(admission.elements.back());
    admission.elements.pop_back();
    if (admission.elements.size() == 1 && admission.elements[0].is_error()) {
        redis_value error = std::move(admission.elements[0]); // the admission's own error reply
        admission = std::move(error);
    }
    return settlement;
}

} // namespace

redis_link::redis_link(net::any_io_executor ex, redis_client_options options, std::chrono::milliseconds lease_ttl,
                       std::shared_ptr<store_counters> counters, core::write_queue_limits limits)
    : ex_(ex),
      client_(std::make_shared<redis_client>(ex, std::move(options))),
      lease_ttl_(lease_ttl),
      counters_(std::move(counters)),
      queue_(limits),
      timer_(ex),
      next_renewal_(clock::now() + lease_ttl / 3),
      linger_(limits.delay)
{
}

redis_link::~redis_link()
{
    counters_->writes_pending -= reported_pending_;
    client_->close();
}

redis_link::merged_writes redis_link::merge_writes(entries& batch)
{
    merged_writes out;
    out.calls.reserve(batch.size());
    out.call_of.reserve(batch.size());
    out.moved.reserve(batch.size());
    out.own_size.reserve(batch.size());
    // Per merge group (redis_scripts::merge_group), by its hash, the call still taking more:
    // merge_into checks the whole prefix, so a hash two groups share only costs a merge.
    std::unordered_map<std::size_t, std::size_t> open;
    for (auto& e : batch) {
        if (const auto group = redis_scripts::merge_group(e.item); !group.empty()) {
            auto [it, opened] = open.try_emplace(std::hash<std::string_view>{}(group), out.calls.size());
            if (!opened && redis_scripts::merge_into(out.calls[it->second], e.item)) {
                out.moved.push_back(false);
                out.call_of.push_back(it->second);
                continue;
            }
            it->second = out.calls.size(); // a new call: the first of its group, or the last one was full
        }
        out.moved.push_back(true);
        out.call_of.push_back(out.calls.size());
        out.own_size.push_back(e.item.size());
        out.calls.push_back(std::move(e.item));
    }
    return out;
}

void redis_link::start()
{
    net::co_spawn(ex_, flush_loop(shared_from_this()), log_failure("quota store write flusher"));
    client_->start(); // with Sentinel, the master is asked for before the first request
}

void redis_link::stop()
{
    stopped_ = true;
    timer_.cancel();
    counters_->writes_dropped += queue_.size() + in_flight_; // nothing will send them, or hear back
    client_->close();
}

net::awaitable<std::tuple<error_code, std::vector<redis_value>>> redis_link::run(std::vector<command> calls, clock::time_point deadline)
{
    // The writes waiting now ride along, ahead of the calls: no extra round trip or write
    // for them, and a request's lease release always reaches Redis before the admission of
    // the next request this worker sends.
    last_admission_ = clock::now();
    // Only with one node: in a cluster a write bound for another master (perhaps one that is
    // down) must not decide whether this admission succeeds.
    // Nor while writes fail: the flusher's probes find out when Redis is back.
    bool ride = !client_->in_cluster() && !failing_;
    auto riders = ride ? queue_.take(last_admission_, max_riders) : entries{};
    if (ride) {
        // The slots this worker's requests gave back go too, not only the newest writes: the
        // next admission of a client at its concurrency limit must not see its previous
        // request's slot still taken. (Not covered: releases waiting as retries after a
        // failure, and on a Cluster, where writes do not ride.)
        auto releases = queue_.take_new_if([](const command& c) { return redis_scripts::merge_prefix(c) > 0; }, max_release_riders);
        riders.insert(riders.end(), std::make_move_iterator(releases.begin()), std::make_move_iterator(releases.end()));
    }
    if (riders.empty()) co_return co_await run_scripts(calls, deadline);
    in_flight_ += riders.size();
    auto merged = merge_writes(riders);
    // A settlement of a tenant this pipeline admits for goes in that admission's script run.
    std::vector<std::optional<std::size_t>> folded_into(merged.calls.size());
    for (std::size_t c = 0; c < merged.calls.size(); ++c)
        for (std::size_t k = 0; k < calls.size() && !folded_into[c]; ++k)
            if (redis_scripts::fold_settlement(calls[k], merged.calls[c])) folded_into[c] = k;
    std::vector<command> wire; // the other riders, then the calls
    wire.reserve(merged.calls.size() + calls.size());
    for (std::size_t c = 0; c < merged.calls.size(); ++c)
        if (!folded_into[c]) wire.push_back(std::move(merged.calls[c]));
    const auto ahead = wire.size();
    wire.insert(wire.end(), std::make_move_iterator(calls.begin()), std::make_move_iterator(calls.end()));
    auto [ec, replies] = co_await run_scripts(wire, deadline);
    in_flight_ -= riders.size();
    // Each rider call back in place (a retry takes its writes from there) with its reply; a
    // folded settlement's reply is the last element of its admission's.
    std::vector<redis_value> rider_replies(merged.calls.size());
    for (std::size_t c = 0, at = 0; c < merged.calls.size(); ++c) {
        if (folded_into[c]) continue;
        merged.calls[c] = std::move(wire[at]);
        if (!ec) rider_replies[c] = std::move(replies[at]);
        ++at;
    }
    for (std::size_t c = 0; c < merged.calls.size() && !ec; ++c)
        if (folded_into[c]) rider_replies[c] = take_settlement_reply(replies[ahead + *folded_into[c]]);
    settle_writes(std::move(riders), merged, ec, rider_replies, false); // the caller counts its own failure
    if (!ec) replies.erase(replies.begin(), replies.begin() + static_cast<std::ptrdiff_t>(ahead));
    co_return std::tuple{ec, std::move(replies)};
}

net::awaitable<std::tuple<error_code, std::vector<redis_value>>> redis_link::run_scripts(const std::vector<command>& calls,
                                                                                         clock::time_point deadline)
{
    auto [ec, replies] = co_await client_->exec(calls, deadline);
    if (ec) co_return std::tuple{ec, std::move(replies)};
    std::vector<bool> noscript(replies.size());
    for (std::size_t i = 0; i < replies.size(); ++i) noscript[i] = replies[i].is_error() && replies[i].str.starts_with("NOSCRIPT");
    std::vector<std::size_t> where;
    auto again = redis_scripts::with_script_bodies(calls, noscript, where);
    if (!again.empty()) {
        auto [rec, second] = co_await client_->exec(again, deadline);
        if (rec) co_return std::tuple{rec, std::move(replies)};
        for (std::size_t k = 0; k < where.size(); ++k) replies[where[k]] = std::move(second[k]);
    }
    co_return std::tuple{error_code{}, std::move(replies)};
}

void redis_link::write(command cmd)
{
    if (stopped_) { // the worker is ending: nothing will send it
        ++counters_->writes_dropped;
        return;
    }
    auto now = clock::now();
    queue_.push(std::move(cmd), now);
    if (now - last_admission_ > linger_) flush_now_ = true; // no admission is coming to carry it
    update_pending();
    wake();
}

void redis_link::wake()
{
    if (!sending_ && (flush_now_ || queue_.next_flush() < timer_.expiry())) timer_.cancel();
}

void redis_link::update_pending()
{
    auto pending = static_cast<std::int64_t>(queue_.size());
    counters_->writes_pending += pending - reported_pending_;
    reported_pending_ = pending;
    counters_->writes_dropped += queue_.dropped() - reported_dropped_;
    reported_dropped_ = queue_.dropped();
    counters_->writes_retried += queue_.retried() - reported_retried_;
    reported_retried_ = queue_.retried();
}

void redis_link::hold_lease(const std::string& lease, std::string tenant_key, std::string app_key)
{
    leases_[lease] = held{std::move(tenant_key), std::move(app_key)};
}

void redis_link::release_lease(const std::string& lease)
{
    leases_.erase(lease);
}

// One renewal per sorted set, naming every lease this worker still holds in it.
void redis_link::queue_renewals()
{
    std::map<std::string, std::vector<std::string>> by_key;
    for (const auto& [lease, h] : leases_) {
        for (const auto* key : {&h.tenant_key, &h.app_key}) {
            if (key->empty()) continue;
            auto& args = by_key[*key];
            if (args.empty()) args.push_back(std::to_string(lease_ttl_.count()));
            args.push_back(lease);
        }
    }
    for (auto& [key, args] : by_key) queue_.push(redis_scripts::renew_leases({key}, std::move(args)), clock::now());
    update_pending();
}

net::awaitable<void> redis_link::flush_loop(std::shared_ptr<redis_link> self)
{
    while (!self->stopped_) {
        auto now = clock::now();
        if (now >= self->next_renewal_) {
            self->queue_renewals();
            self->next_renewal_ = now + self->lease_ttl_ / 3;
        }
        auto at = self->flush_now_ && self->queue_.size() > 0 ? now : std::min(self->queue_.next_flush(), self->next_renewal_);
        if (self->failing_) at = std::max(at, self->failed_at_ + probe_interval); // one batch probes Redis, the rest wait
        if (at > now) {
            self->timer_.expires_at(at);
            co_await self->timer_.async_wait(use_nothrow); // write() cancels it when a batch is due sooner
            continue;
        }
        co_await self->send_batch(now);
    }
}

net::awaitable<void> redis_link::send_batch(clock::time_point now)
{
    flush_now_ = false;
    auto batch = queue_.take(now);
    if (batch.empty()) co_return; // admissions took them: nothing to learn about Redis from nothing
    sending_ = true;
    in_flight_ += batch.size();
    auto merged = merge_writes(batch);
    auto deadline = clock::now() + std::max(client_->timeout(), min_write_deadline);
    auto [ec, replies] = co_await run_scripts(merged.calls, deadline);
    sending_ = false;
    in_flight_ -= batch.size();
    settle_writes(std::move(batch), merged, ec, replies, true);
}

void redis_link::settle_writes(entries batch, merged_writes& merged, error_code ec, const std::vector<redis_value>& replies,
                               bool count_failure)
{
    const auto& call_of = merged.call_of;
    auto take_back = [&](std::size_t i) { // write i as it was queued, for a retry or the log
        if (!merged.moved[i]) return;
        auto& call = merged.calls[call_of[i]];
        call.resize(merged.own_size[call_of[i]]); // what merged writes appended is theirs: they keep their own
        batch[i].item = std::move(call);
    };
    entries failed;
    if (ec) {
        if (count_failure) ++counters_->errors;
        if (!failing_) spdlog::warn("quota store: {} background write(s) failed ({}); retrying", batch.size(), ec.message());
        failing_ = true;
        failed_at_ = clock::now();
        for (std::size_t i = 0; i < batch.size(); ++i) take_back(i);
        failed = std::move(batch);
    } else {
        bool landed = false;
        for (const auto& r : replies) landed = landed || !r.is_error();
        if (landed) {
            if (failing_) spdlog::info("quota store: background writes land again");
            failing_ = false;
            queue_.retry_now(clock::now()); // what waited out the outage goes now, not after its pause
        } else if (count_failure && !batch.empty()) {
            failing_ = true; // only "not now" replies (LOADING, CLUSTERDOWN...): keep to the probe pace
            failed_at_ = clock::now();
        }
        for (std::size_t i = 0; i < batch.size(); ++i) {
            const auto& reply = replies[call_of[i]];
            if (!reply.is_error()) continue;
            take_back(i);
            if (transient(reply)) {
                failed.push_back(std::move(batch[i]));
                continue;
            }
            ++counters_->errors;
            counters_->writes_dropped += 1;
            spdlog::error("quota store: Redis refused a write ({}): {}", batch[i].item.empty() ? "" : batch[i].item[0], reply.str);
        }
    }
    if (!failed.empty()) queue_.retry(std::move(failed), clock::now());
    update_pending();
    wake(); // retries reschedule the flusher
}

net::awaitable<void> redis_link::flush(clock::time_point deadline)
{
    net::steady_timer pause(ex_);
    while (clock::now() < deadline) {
        bool only_retries = in_flight_ == 0 && (queue_.size() == 0 || queue_.next_flush() > clock::now() + 50ms);
        if (only_retries) co_return;
        pause.expires_after(1ms);
        co_await pause.async_wait(use_nothrow);
    }
}

} // namespace gw::gateway
