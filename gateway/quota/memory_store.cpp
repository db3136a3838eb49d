#include "gateway/quota/memory_store.hpp"

#include <time.h>

#include <chrono>

namespace gw::gateway {

quota_clocks quota_clocks::system()
{
    return {[] { return std::chrono::duration_cast<core::nanos>(std::chrono::steady_clock::now().time_since_epoch()); },
            [] {
                // Whole seconds for UTC days: the coarse clock is exact enough and far cheaper.
                timespec ts{};
                ::clock_gettime(CLOCK_REALTIME_COARSE, &ts);
                return static_cast<std::int64_t>(ts.tv_sec);
            }};
}

std::int64_t seconds_to_utc_midnight(std::int64_t unix_seconds)
{
    return (core::utc_day(unix_seconds) + 1) * 86400 - unix_seconds;
}

memory_quota_store::memory_quota_store(const config::gateway_config& cfg, std::shared_ptr<usage_counters> counters,
                                       quota_clocks clocks)
    : counters_(std::move(counters)), clocks_(std::move(clocks)),
      owners_(std::make_shared<core::ownership_table>(static_cast<std::size_t>(cfg.quota_store.ownership_max_entries))),
      conversations_(std::make_shared<core::conversation_map>(static_cast<std::size_t>(cfg.quota_store.ownership_max_entries)))
{
    build(cfg, nullptr);
}

std::shared_ptr<memory_quota_store> memory_quota_store::reconfigured(const config::gateway_config& cfg,
                                                                     std::shared_ptr<usage_counters> counters) const
{
    auto next = std::shared_ptr<memory_quota_store>(new memory_quota_store(std::move(counters), clocks_));
    next->owners_ = owners_;
    next->conversations_ = conversations_;
    next->build(cfg, this);
    return next;
}

void memory_quota_store::record_owner(core::owned_kind kind, std::string_view id, const std::string& tenant)
{
    owners_->record(kind, id, tenant, clocks_.unix_seconds(), ownership_ttl_s_);
}

std::optional<std::string> memory_quota_store::owner_now(core::owned_kind kind, const std::string& id)
{
    return owners_->owner(kind, id, clocks_.unix_seconds());
}

net::awaitable<std::optional<std::string>> memory_quota_store::owner_of(core::owned_kind kind, const std::string& id)
{
    co_return owner_now(kind, id);
}

void memory_quota_store::remember_conversation(
    const std::string& tenant, const std::string& key, const std::string& conversation_id
)
{
    conversations_->remember(tenant, key, conversation_id, clocks_.unix_seconds(), ownership_ttl_s_);
}

std::optional<std::string> memory_quota_store::conversation_now(const std::string& key)
{
    return conversations_->find(key, clocks_.unix_seconds());
}

net::awaitable<std::optional<std::string>> memory_quota_store::conversation_of(const std::string& key)
{
    co_return conversation_now(key);
}

void memory_quota_store::build(const config::gateway_config& cfg, const memory_quota_store* previous)
{
    ownership_ttl_s_ = cfg.quota_store.ownership_ttl_s.count();
    auto now = clocks_.steady();
    for (const auto& [name, t] : cfg.tenants) {
        std::shared_ptr<tenant_state> s;
        if (previous)
            if (auto it = previous->tenant_slots_.find(name); it != previous->tenant_slots_.end()) s = previous->tenants_[it->second];
        if (!s) s = std::make_shared<tenant_state>();
        {
            std::lock_guard lock(s->m); // shared with the previous store's users
            if (!t.rate)
                s->bucket.reset();
            else if (s->bucket)
                s->bucket->reconfigure(t.rate->requests_per_second, t.rate->burst, now);
            else
                s->bucket.emplace(t.rate->requests_per_second, t.rate->burst, now);
            s->max_concurrent = t.max_concurrent;
            if (t.tokens_per_day <= 0)
                s->budget.reset();
            else if (s->budget)
                s->budget->set_limit(t.tokens_per_day);
            else
                s->budget.emplace(t.tokens_per_day);
        }
        tenant_slots_.emplace(name, static_cast<std::uint32_t>(tenants_.size()));
        tenants_.push_back(std::move(s));
    }
    for (const auto& [name, a] : cfg.apps) {
        std::shared_ptr<app_state> s;
        if (previous)
            if (auto it = previous->app_slots_.find(name); it != previous->app_slots_.end()) s = previous->apps_[it->second];
        if (!s) s = std::make_shared<app_state>();
        {
            std::lock_guard lock(s->m);
            s->max_concurrent = a.max_concurrent;
        }
        app_slots_.emplace(name, static_cast<std::uint32_t>(apps_.size()));
        apps_.push_back(std::move(s));
    }
    counts_.resize(tenants_.size() * apps_.size());
    for (const auto& [tenant, ts] : tenant_slots_)
        for (const auto& [app, as] : app_slots_) counts_[ts * apps_.size() + as] = counters_->find(tenant, app);
}

admission memory_quota_store::admit_now(const std::string& tenant, const std::string& app, bool generates)
{
    admission out;
    auto tenant_it = tenant_slots_.find(tenant);
    auto app_it = app_slots_.find(app);
    if (tenant_it == tenant_slots_.end() || app_it == app_slots_.end()) return out; // not in this config: no limits
    auto& t = *tenants_[tenant_it->second];
    auto& a = *apps_[app_it->second];
    core::reservation reservation;
    std::int64_t estimate_tokens = 0;
    if (generates && t.budget) {
        std::lock_guard lock(a.m);
        estimate_tokens = a.estimator.estimate();
    }
    {
        std::lock_guard lock(t.m);
        if (t.bucket) {
            out.rate = t.bucket->try_acquire(clocks_.steady());
            if (!out.rate->allowed) {
                out.refused = quota_reason::rate;
                out.retry_after_seconds = out.rate->retry_after_seconds;
                return out;
            }
        }
        if (t.max_concurrent > 0 && t.active >= t.max_concurrent) {
            out.refused = quota_reason::tenant_concurrency;
            out.retry_after_seconds = 1;
            return out;
        }
        if (generates && t.budget) {
            reservation = t.budget->reserve(today(), estimate_tokens);
            if (!reservation.admitted) {
                out.refused = quota_reason::tokens;
                out.retry_after_seconds = seconds_to_utc_midnight(clocks_.unix_seconds());
                return out;
            }
        }
        ++t.active;
    }
    {
        std::lock_guard lock(a.m);
        if (a.max_concurrent > 0 && a.active >= a.max_concurrent) {
            out.refused = quota_reason::app_concurrency;
            out.retry_after_seconds = 1;
        } else {
            ++a.active;
        }
    }
    if (out.refused) { // give back what the tenant side took
        std::lock_guard lock(t.m);
        --t.active;
        if (t.budget && reservation.admitted) t.budget->settle(reservation, today(), 0);
        return out;
    }
    out.ticket = std::make_unique<quota_ticket>(shared_from_this(), tenant_it->first, app_it->first);
    out.ticket->tenant_slot = tenant_it->second;
    out.ticket->app_slot = app_it->second;
    out.ticket->reservation = reservation;
    out.ticket->holds_tenant_slot = true;
    out.ticket->holds_app_slot = true;
    return out;
}

net::awaitable<admission> memory_quota_store::admit(const std::string& tenant, const std::string& app, bool generates)
{
    co_return admit_now(tenant, app, generates);
}

void memory_quota_store::finish(quota_ticket& ticket, std::int64_t tokens)
{
    auto& t = *tenants_[ticket.tenant_slot];
    auto& a = *apps_[ticket.app_slot];
    const bool budgeted = t.budget && ticket.reservation.admitted;
    const auto day = budgeted || tokens > 0 ? today() : 0;
    auto* counts = counts_[ticket.tenant_slot * apps_.size() + ticket.app_slot];
    {
        std::lock_guard lock(t.m);
        if (ticket.holds_tenant_slot) --t.active;
        if (budgeted) t.budget->settle(ticket.reservation, day, tokens);
    }
    if (ticket.holds_app_slot) {
        std::lock_guard lock(a.m);
        --a.active;
    }
    ticket.holds_tenant_slot = ticket.holds_app_slot = false;
    if (tokens > 0 && counts) usage_counters::add_tokens(*counts, day, tokens);
}

net::awaitable<budget_view> memory_quota_store::budget(const std::string& tenant)
{
    auto& t = *tenants_[tenant_slots_.at(tenant)];
    std::lock_guard lock(t.m);
    if (!t.budget) co_return budget_view{};
    co_return budget_view{t.budget->used(today()), t.budget->remaining(today())};
}

std::optional<tenant_quota_view> memory_quota_store::quota_view(const std::string& tenant)
{
    auto slot = tenant_slots_.find(tenant);
    if (slot == tenant_slots_.end()) return std::nullopt;
    auto& t = *tenants_[slot->second];
    std::lock_guard lock(t.m);
    tenant_quota_view v;
    if (t.bucket) {
        const auto now = clocks_.steady();
        v.burst = static_cast<double>(t.bucket->peek(now).limit);
        v.rate_remaining = t.bucket->tokens(now);
    }
    if (t.max_concurrent > 0) {
        v.max_concurrent = t.max_concurrent;
        v.concurrent_remaining = std::max(0, t.max_concurrent - t.active);
    }
    if (t.budget) {
        v.tokens_per_day = t.budget->limit();
        v.tokens_remaining = t.budget->remaining(today());
    }
    return v;
}

std::int64_t memory_quota_store::estimate(const std::string& app)
{
    auto it = app_slots_.find(app);
    if (it == app_slots_.end()) return core::usage_estimator().estimate(); // removed by a reload
    auto& a = *apps_[it->second];
    std::lock_guard lock(a.m);
    return a.estimator.estimate();
}

void memory_quota_store::observe_usage(const std::string& app, std::int64_t tokens)
{
    auto it = app_slots_.find(app);
    if (it == app_slots_.end()) return;
    auto& a = *apps_[it->second];
    std::lock_guard lock(a.m);
    a.estimator.observe(tokens);
}

} // namespace gw::gateway
