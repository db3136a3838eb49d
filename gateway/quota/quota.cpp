#include "gateway/quota/quota.hpp"

#include "gateway/ops/metric_names.hpp"

namespace gw::gateway {

const char* reason_name(quota_reason r)
{
    switch (r) {
    case quota_reason::rate: return "rate";
    case quota_reason::tenant_concurrency: return "tenant_concurrency";
    case quota_reason::app_concurrency: return "app_concurrency";
    case quota_reason::tokens: return "tokens";
    case quota_reason::store_unavailable: return "store_unavailable";
    }
    return "unknown";
}

quota_ticket::quota_ticket(std::shared_ptr<quota_store> store, const std::string& tenant, const std::string& app)
    : store_(std::move(store)), tenant_(&tenant), app_(&app)
{
}

quota_ticket::~quota_ticket()
{
    if (!settled_) store_->finish(*this, fallback_);
}

void quota_ticket::charge(std::int64_t tokens)
{
    if (settled_) return;
    settled_ = true;
    store_->finish(*this, tokens);
}

usage_counters::usage_counters(const std::map<std::string, std::vector<std::string>>& tenant_apps, const usage_counters* previous)
{
    if (previous) store_ = previous->store_;
    for (const auto& [tenant, apps] : tenant_apps) {
        for (const auto& app : apps) {
            std::pair key{tenant, app};
            auto old = previous ? previous->counts_.find(key) : counts_.end();
            bool carried = previous && old != previous->counts_.end();
            auto& c = counts_.emplace(key, carried ? old->second : std::make_shared<counts>()).first->second;
            auto pair = metric_names::process().pair(tenant, app);
            if (pair >= by_pair_.size()) by_pair_.resize(pair + 1);
            by_pair_[pair] = c.get();
        }
    }
}

usage_counters::counts* usage_counters::find(const std::string& tenant, const std::string& app)
{
    auto it = counts_.find(std::pair{tenant, app});
    return it == counts_.end() ? nullptr : it->second.get();
}

void usage_counters::add_tokens(const std::string& tenant, const std::string& app, std::int64_t day, std::int64_t tokens)
{
    if (auto* c = find(tenant, app)) add_tokens(*c, day, tokens);
}

void usage_counters::add_tokens(counts& c, std::int64_t day, std::int64_t tokens)
{
    if (c.tokens_day.load() != day) { // first settlement of a new day resets the daily count
        c.tokens_day = day;
        c.tokens = 0;
    }
    c.tokens += tokens;
}

} // namespace gw::gateway
