#include "gateway/quota/redis_link.hpp"

#include "gateway/quota/redis_scripts.hpp"
#include "gateway/ops/spawn.hpp"

#include <boost/asio/co_spawn.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>

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

using entries = std::vector<core::write_queue<redis_link::command>::entry>;

// The writes of a batch as calls, merged where Redis can take them as one (a tenant's
// settlements of one day in one script run, lease releases of one key in one ZREM):
// `call_of[i]` is the call carrying write i. A write that cannot be merged is moved into
// its own call (take_back() returns it for a retry); one that later writes may be
// merged into is copied, since the call grows.
struct merged_writes
{
    std::vector<redis_link::command> calls;
    std::vector<std::size_t> call_of;
};

merged_writes merge_writes(entries& batch)
{
    merged_writes out;
    out.calls.reserve(batch.size());
    out.call_of.reserve(batch.size());
    std::vector<std::size_t> open; // per merge prefix, the call still taking more (a batch has few)
    for (auto& e : batch) {
        if (redis_scripts::merge_prefix(e.item) == 0) {
            out.call_of.push_back(out.calls.size());
            out.calls.push_back(std::move(e.item));
            continue;
        }
        auto same = std::find_if(open.begin(), open.end(),
                                 [&](std::size_t c) { return redis_scripts::same_merge_prefix(out.calls[c], e.item); });
        if (same != open.end() && redis_scripts::merge_into(out.calls[*same], e.item)) {
            out.call_of.push_back(*same);
            continue;
        }
        if (same != open.end())
            *same = out.calls.size(); // that one is full: this one takes more from now on
        else
            open.push_back(out.calls.size());
        out.call_of.push_back(out.calls.size());
        out.calls.push_back(e.item);
    }
    return out;
}

// Write i of a merged batch, as queued again: a write moved into its call is taken back.
void take_back(entries& batch, std::size_t i, const std::vector<std::size_t>& call_of, std::vector<redis_link::command>& calls)
{
    if (batch[i].item.empty()) batch[i].item = std::move(calls[call_of[i]]); // a queued command is never empty
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

void redis_link::start()
{
    net::co_spawn(ex_, flush_loop(shared_from_this()), log_failure("quota store write flusher"));
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
    const auto ahead = static_cast<std::ptrdiff_t>(merged.calls.size());
    auto all = std::move(merged.calls);
    all.insert(all.end(), std::make_move_iterator(calls.begin()), std::make_move_iterator(calls.end()));
    auto [ec, replies] = co_await run_scripts(all, deadline);
    in_flight_ -= riders.size();
    settle_writes(std::move(riders), merged.call_of, all, ec, replies, false); // the caller counts its own failure
    if (!ec) replies.erase(replies.begin(), replies.begin() + ahead);
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
    settle_writes(std::move(batch), merged.call_of, merged.calls, ec, replies, true);
}

void redis_link::settle_writes(std::vector<core::write_queue<command>::entry> batch, const std::vector<std::size_t>& call_of,
                               std::vector<command>& calls, error_code ec, const std::vector<redis_value>& replies, bool count_failure)
{
    decltype(batch) failed;
    if (ec) {
        if (count_failure) ++counters_->errors;
        if (!failing_) spdlog::warn("quota store: {} background write(s) failed ({}); retrying", batch.size(), ec.message());
        failing_ = true;
        failed_at_ = clock::now();
        for (std::size_t i = 0; i < batch.size(); ++i) take_back(batch, i, call_of, calls);
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
            take_back(batch, i, call_of, calls);
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
