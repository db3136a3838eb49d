#include "gateway/quota/redis_store.hpp"

#include "core/key_hash.hpp"
#include "gateway/ops/spawn.hpp"
#include "gateway/quota/redis_scripts.hpp"

#include <boost/asio/co_spawn.hpp>

#include <spdlog/spdlog.h>

#include <charconv>
#include <map>
#include <random>

namespace gw::gateway {

namespace {

std::string number(double v)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}

// Whether calls that failed with `ec` may have reached Redis: not when no connection was
// there to carry them.
bool might_have_run(const error_code& ec)
{
    return ec != redis_errc::backing_off && ec != redis_errc::stalled && ec != redis_errc::no_master && ec != redis_errc::failing_over &&
           ec != net::error::connection_refused && ec != net::error::host_not_found &&
           ec != net::error::host_unreachable && ec != net::error::network_unreachable;
}

} // namespace

std::string redis_quota_store::tenant_key(const std::string& tenant, std::string_view part)
{
    return "dify-gateway:{t:" + tenant + "}:" + std::string(part);
}

std::string redis_quota_store::app_key(const std::string& app)
{
    return "dify-gateway:{a:" + app + "}:active";
}

std::string redis_quota_store::app_cancelled_key(const std::string& app)
{
    return "dify-gateway:{a:" + app + "}:cancelled";
}

redis_quota_store::redis_quota_store(std::shared_ptr<redis_link> link, std::shared_ptr<const config::gateway_config> cfg,
                                     std::shared_ptr<usage_counters> counters, std::shared_ptr<memory_quota_store> local)
    : link_(std::move(link)), cfg_holder_(std::move(cfg)), cfg_(*cfg_holder_), counters_(std::move(counters)), local_(std::move(local))
{
    std::random_device rd;
    lease_prefix_ = core::sha256_hex(std::to_string(rd()) + std::to_string(rd())).substr(0, 12) + ":";
    lease_ttl_ms_ = std::to_string(link_->lease_ttl().count());
    for (const auto& [name, t] : cfg_.tenants)
        tenant_names_[name] = {tenant_key(name, "rate"),
                               tenant_key(name, "active"),
                               tenant_key(name, "tokens"),
                               tenant_key(name, "cancelled"),
                               {number(t.rate ? t.rate->requests_per_second : 0), number(t.rate ? t.rate->burst : 0),
                                std::to_string(t.max_concurrent), std::to_string(t.tokens_per_day), lease_ttl_ms_}};
    for (const auto& [name, a] : cfg_.apps) app_names_[name] = {app_key(name), app_cancelled_key(name), std::to_string(a.max_concurrent)};
    ownership_ttl_ = std::to_string(cfg_.quota_store.ownership_ttl_s.count());
}

redis_client::clock::time_point redis_quota_store::deadline() const
{
    return redis_client::clock::now() + cfg_.quota_store.timeout_ms;
}

net::awaitable<admission> redis_quota_store::on_store_error(const std::string& tenant, const std::string& app, bool generates,
                                                           const std::string& lease)
{
    ++counters_->store_errors();
    const auto& policy = cfg_.quota_store.on_error;
    if (policy == config::store_error_policy::local) co_return local_->admit_now(tenant, app, generates);
    admission out;
    if (policy == config::store_error_policy::deny) {
        out.refused = quota_reason::store_unavailable;
        out.retry_after_seconds = 1;
        co_return out;
    }
    out.ticket = std::make_unique<quota_ticket>(shared_from_this(), cfg_.tenants.find(tenant)->first,
                                                cfg_.apps.find(app)->first); // allow: unchecked
    out.ticket->lease = lease; // names its usage when it is settled later
    co_return out;
}

net::awaitable<admission> redis_quota_store::admit(const std::string& tenant, const std::string& app, bool generates)
{
    auto self = shared_from_this(); // a reload may replace this store while the call waits
    if (!cfg_.tenants.contains(tenant) || !cfg_.apps.contains(app)) co_return admission{}; // not in this config
    const auto& t = cfg_.tenants.at(tenant);
    const auto& a = cfg_.apps.at(app);
    pending_admission mine;
    mine.app = app;
    mine.lease = lease_prefix_ + std::to_string(++lease_counter_);
    mine.estimate = generates && t.tokens_per_day > 0 ? local_->estimate(app) : 0;
    mine.generates = generates;
    mine.deadline = deadline();
    auto call = std::make_shared<redis_call>();
    mine.call = call;
    const auto lease = mine.lease;
    const auto until = mine.deadline;
    if (auto batch = admissions_.add(tenant, std::move(mine)); !batch.empty()) {
        // This caller leads its batch: it sends it and reads the replies itself (its own
        // verdict needs no wake-up); batches that waited meanwhile go on without it.
        batch_turn turn{*this, tenant};
        co_await send_admission_batch(tenant, std::move(batch));
        if (auto next = turn.end(); !next.empty())
            net::co_spawn(co_await net::this_coro::executor, send_admissions(self, tenant, std::move(next)),
                          log_failure("quota store admissions"));
    }

    // Not retried on failure: a script Redis ran before the connection broke would count twice.
    auto ec = co_await wait_for(*call, until);
    const bool app_limited = a.max_concurrent > 0;
    if (ec || !well_formed(call->replies, app_limited)) {
        give_back_after_failure(tenant, app, lease, ec, generates);
        if (!failing_) // one line per outage, not one per request
            spdlog::warn("quota store failing ({}); on_error = {}",
                         ec                      ? ec.message()
                         : call->replies.empty() ? std::string("no reply")
                                                 : "unexpected reply: " + call->replies[0].str,
                         config::name_of(cfg_.quota_store.on_error, config::store_error_policy_names));
        failing_ = true;
        co_return co_await on_store_error(tenant, app, generates, lease);
    }
    if (failing_) spdlog::info("quota store reachable again");
    failing_ = false;
    co_return decide(tenant, app, generates, lease, call->replies);
}

bool redis_quota_store::well_formed(const std::vector<redis_value>& replies, bool app_limited)
{
    return replies.size() == (app_limited ? 2u : 1u) && replies[0].type == redis_value::kind::array &&
           replies[0].elements.size() == 4 && replies[0].elements[0].integer <= 3 &&
           (!app_limited || (replies[1].type == redis_value::kind::integer && replies[1].integer <= 2));
}

void redis_quota_store::give_back_after_failure(const std::string& tenant, const std::string& app, const std::string& lease,
                                                const error_code& ec, bool generates)
{
    // The scripts may have run before the failure (a reply lost with its connection, a
    // deadline passed while Redis was paused): give back whatever they took. Idempotent,
    // and queued behind the admission on the same connection. Not when they were never
    // sent (no connection): after a minute of outage that would be thousands of writes.
    if (!might_have_run(ec)) return;
    const auto& t = cfg_.tenants.at(tenant);
    if (t.max_concurrent > 0 || (generates && t.tokens_per_day > 0)) {
        const auto& names = names_of_tenant(tenant);
        link_->write(redis_scripts::cancel_tenant({names.active, names.tokens, names.cancelled}, {lease}));
    }
    if (cfg_.apps.at(app).max_concurrent > 0) {
        const auto& names = names_of_app(app);
        link_->write(redis_scripts::cancel_app({names.active, names.cancelled}, {lease}));
    }
}

admission redis_quota_store::decide(const std::string& tenant, const std::string& app, bool generates, const std::string& lease,
                                    const std::vector<redis_value>& replies)
{
    const auto& t = cfg_.tenants.at(tenant);
    const bool app_limited = cfg_.apps.at(app).max_concurrent > 0;
    const auto& r = replies[0].elements;
    int verdict = static_cast<int>(r[0].integer); // 0 admitted, 1 rate, 2 tenant concurrency, 3 tokens
    double bucket = std::strtod(r[1].str.c_str(), nullptr);
    std::int64_t unix_seconds = r[2].integer;
    std::int64_t reserved = r[3].integer;
    bool app_ok = !app_limited || replies[1].integer == 0;

    admission out;
    if (t.rate) out.rate = core::describe_bucket(t.rate->requests_per_second, t.rate->burst, bucket, verdict != 1);
    auto ticket = std::make_unique<quota_ticket>(shared_from_this(), cfg_.tenants.find(tenant)->first, cfg_.apps.find(app)->first);
    ticket->lease = lease;
    ticket->reservation = {core::utc_day(unix_seconds), reserved, verdict == 0 && generates && t.tokens_per_day > 0};
    ticket->holds_tenant_slot = verdict == 0 && t.max_concurrent > 0;
    ticket->holds_app_slot = app_ok && app_limited;
    if (verdict == 0 && app_ok) {
        if (ticket->holds_tenant_slot || ticket->holds_app_slot)
            link_->hold_lease(lease, ticket->holds_tenant_slot ? names_of_tenant(tenant).active : "",
                              ticket->holds_app_slot ? names_of_app(app).active : "");
        out.ticket = std::move(ticket);
        return out;
    }
    // Refused: give back whatever one of the two scripts took (the ticket's finish does).
    if (verdict == 0)
        out.refused = quota_reason::app_concurrency;
    else
        out.refused = verdict == 1 ? quota_reason::rate : verdict == 2 ? quota_reason::tenant_concurrency : quota_reason::tokens;
    out.retry_after_seconds = verdict == 1   ? out.rate->retry_after_seconds
                              : verdict == 3 ? seconds_to_utc_midnight(unix_seconds)
                                             : 1;
    ticket->charge(0);
    return out;
}

net::awaitable<void> redis_quota_store::send_admissions(std::shared_ptr<redis_quota_store> self, std::string tenant,
                                                        std::vector<pending_admission> batch)
{
    while (!batch.empty()) {
        batch_turn turn{*self, tenant};
        co_await self->send_admission_batch(tenant, std::move(batch));
        batch = turn.end();
    }
}

redis_quota_store::batch_turn::~batch_turn()
{
    if (ended_) return;
    // The batch ended abnormally (an exception, or its frame destroyed): the tenant's group
    // must not stay "in flight". Calls that waited for it are dropped; their callers give
    // up at their deadlines, as for a lost reply.
    while (!store_.admissions_.done(tenant_).empty()) {
    }
}

// One tenant script naming every admission, and one app script per app with a
// concurrency limit, in one pipeline; each caller gets its own elements of the replies.
// The pipeline waits until the latest caller's deadline: each caller's own wait ends at
// its own, and a caller that gave up has queued the give-back of its lease.
net::awaitable<void> redis_quota_store::send_admission_batch(const std::string& tenant, std::vector<pending_admission> batch)
{
    // A caller that gave up (its deadline passed while it waited here) has queued the
    // give-back of its lease and gone: not sent at all.
    std::erase_if(batch, [](const pending_admission& p) { return p.call.expired(); });
    if (batch.empty()) co_return;
    const auto& names = names_of_tenant(tenant);
    std::vector<std::string> args;
    args.reserve(names.limits.size() + 1 + 3 * batch.size());
    args.insert(args.end(), names.limits.begin(), names.limits.end());
    args.emplace_back("0"); // no settlement in it (the link may fold one in)
    std::map<std::string, std::vector<std::size_t>> by_app; // apps with a concurrency limit -> their admissions
    auto until = batch.front().deadline;
    for (std::size_t i = 0; i < batch.size(); ++i) {
        const auto& p = batch[i];
        args.push_back(p.lease);
        args.push_back(std::to_string(p.estimate));
        args.emplace_back(p.generates ? "1" : "0");
        if (cfg_.apps.at(p.app).max_concurrent > 0) by_app[p.app].push_back(i);
        until = std::max(until, p.deadline);
    }
    std::vector<redis_client::command> calls;
    calls.push_back(redis_scripts::admit_tenant({names.rate, names.active, names.tokens, names.cancelled}, std::move(args)));
    for (const auto& [app, which] : by_app) {
        const auto& app_names = names_of_app(app);
        std::vector<std::string> app_args{app_names.max_concurrent, lease_ttl_ms_};
        for (auto i : which) app_args.push_back(batch[i].lease);
        calls.push_back(redis_scripts::admit_app({app_names.active, app_names.cancelled}, std::move(app_args)));
    }
    auto [ec, replies] = co_await link_->run(std::move(calls), until);

    std::vector<std::vector<redis_value>> mine(batch.size());
    if (!ec) {
        // Element k of a per-admission array reply goes to admission to[k]; a reply that is
        // not such an array (an error reply) goes to each of them, which report it.
        auto hand_out = [&mine](const redis_value& r, const std::vector<std::size_t>& to) {
            bool fits = r.type == redis_value::kind::array && r.elements.size() == to.size();
            for (std::size_t k = 0; k < to.size(); ++k) mine[to[k]].push_back(fits ? r.elements[k] : r);
        };
        std::vector<std::size_t> everyone(batch.size());
        std::iota(everyone.begin(), everyone.end(), std::size_t{0});
        hand_out(replies[0], everyone);
        std::size_t call = 1;
        for (const auto& [app, which] : by_app) hand_out(replies[call++], which);
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
        auto call = batch[i].call.lock();
        if (!call) continue; // gave up while the batch was out
        call->ec = ec;
        call->replies = std::move(mine[i]);
        call->done = true;
        if (call->on_done) call->on_done();
    }
}

void redis_quota_store::finish(quota_ticket& t, std::int64_t tokens)
{
    if (tokens > 0) counters_->add_tokens(t.tenant(), t.app(), local_->today(), tokens);
    if (!t.lease.empty()) link_->release_lease(t.lease);
    // Usage admitted unchecked (on_error = allow) still reaches the shared daily budget.
    bool unreserved_usage = !t.reservation.admitted && tokens > 0 && !t.lease.empty() && cfg_.tenants.at(t.tenant()).tokens_per_day > 0;
    if (t.holds_tenant_slot || t.reservation.admitted || unreserved_usage) {
        auto day = t.reservation.admitted ? t.reservation.day : local_->today();
        const auto& names = names_of_tenant(t.tenant());
        const bool settles = t.reservation.admitted || unreserved_usage;
        const std::string_view none;
        link_->write(redis_scripts::finish_tenant(
            {names.active, names.tokens, tenant_key(t.tenant(), "settled:" + std::to_string(day))},
            {std::to_string(day), t.holds_tenant_slot ? t.lease : none, settles ? t.lease : none,
             std::to_string(settles ? tokens : 0), t.reservation.admitted ? "1" : "0"}));
    }
    if (t.holds_app_slot) link_->write(redis_scripts::plain({"ZREM", names_of_app(t.app()).active, t.lease}));
    t.holds_tenant_slot = t.holds_app_slot = false;
}

namespace {

// A record's key, hashed on the record itself: records spread over a Cluster's masters,
// as the ids do. (Two or three records per generating request, kept for days, are the
// store's largest share: under one hash tag they would all load one master.)
std::string owner_key(core::owned_kind kind, std::string_view id)
{
    constexpr std::string_view prefix = "dify-gateway:{o:";
    const std::string_view kind_name = core::kind_name(kind);
    std::string key;
    key.reserve(prefix.size() + kind_name.size() + 1 + id.size() + 1);
    key.append(prefix).append(kind_name).append(1, ':').append(id).append(1, '}');
    return key; // not the reference append returns: that would be copied
}

// Where gateways built before December 2026 kept a record (one hash tag for all records).
// Read when a record is not under its own key, so that an upgrade keeps enforcing the
// records made before it until they expire (quota_store.ownership_ttl_s); never written.
std::string shared_tag_owner_key(core::owned_kind kind, std::string_view id)
{
    return "dify-gateway:{o}:" + std::string(core::kind_name(kind)) + ":" + std::string(id);
}

} // namespace

void redis_quota_store::record_owner(core::owned_kind kind, std::string_view id, const std::string& tenant)
{
    if (id.empty()) return;
    local_->record_owner(kind, id, tenant);
    // NX: the first owner stays; the owner's later uses do not extend the key (EX on create).
    redis_client::command set;
    set.reserve(6);
    set.emplace_back("SET");
    set.push_back(owner_key(kind, id));
    set.push_back(tenant);
    set.emplace_back("NX");
    set.emplace_back("EX");
    set.push_back(ownership_ttl_);
    link_->write(std::move(set));
}

net::awaitable<std::optional<std::string>> redis_quota_store::owner_of(core::owned_kind kind, const std::string& id)
{
    auto self = shared_from_this(); // a reload may replace this store while the call waits
    const auto until = deadline();
    // The record's own key; when it has none, the key earlier gateways wrote (made and
    // asked only for ids no record names: ids from before the gateway, expired or made up).
    for (const bool earlier : {false, true}) {
        std::vector<redis_client::command> query{{"GET", earlier ? shared_tag_owner_key(kind, id) : owner_key(kind, id)}};
        auto [ec, replies] = co_await link_->client().exec(query, until); // named: no braced temporaries in co_await (g++ 12)
        if (ec || replies.size() != 1 || replies[0].is_error()) {
            ++counters_->store_errors();
            co_return local_->owner_now(kind, id);
        }
        if (replies[0].type == redis_value::kind::string) co_return replies[0].str;
    }
    co_return local_->owner_now(kind, id); // none, or a record still being written
}

namespace {

// One key per history, hashed on itself: conversations spread over a Cluster's nodes.
std::string conversation_key(const std::string& key)
{
    return "dify-gateway:{oa:" + key + "}";
}

} // namespace

void redis_quota_store::remember_conversation(
    const std::string& tenant, const std::string& key, const std::string& conversation_id
)
{
    local_->remember_conversation(tenant, key, conversation_id);
    link_->write(redis_scripts::plain({"SET", conversation_key(key), conversation_id, "EX", ownership_ttl_}));
}

net::awaitable<std::optional<std::string>> redis_quota_store::conversation_of(const std::string& key)
{
    auto self = shared_from_this(); // a reload may replace this store while the call waits
    std::vector<redis_client::command> query{{"GET", conversation_key(key)}};
    auto [ec, replies] = co_await link_->client().exec(query, deadline()); // named: no braced temporaries in co_await (g++ 12)
    if (ec || replies.size() != 1 || replies[0].is_error()) {
        ++counters_->store_errors();
        co_return local_->conversation_now(key);
    }
    if (replies[0].type != redis_value::kind::string) co_return local_->conversation_now(key); // still being written
    co_return replies[0].str;
}

net::awaitable<budget_view> redis_quota_store::budget(const std::string& tenant)
{
    auto self = shared_from_this(); // a reload may replace this store while the call waits
    const auto& t = cfg_.tenants.at(tenant);
    if (t.tokens_per_day <= 0) co_return budget_view{};
    auto day = std::to_string(local_->today());
    std::vector<redis_client::command> query{{"HMGET", names_of_tenant(tenant).tokens, "used:" + day, "reserved:" + day}};
    auto [ec, replies] = co_await link_->client().exec(query, deadline()); // named: no braced temporaries in co_await (g++ 12)
    if (ec || replies.empty() || replies[0].elements.size() != 2) {
        ++counters_->store_errors();
        co_return co_await local_->budget(tenant);
    }
    // A field that is missing (nil) counts 0; one that is not a whole number is the store
    // failing, not a reason to end the admin request with an exception.
    std::int64_t figures[2] = {0, 0};
    for (int i = 0; i < 2; ++i) {
        const auto& v = replies[0].elements[static_cast<std::size_t>(i)];
        if (v.type != redis_value::kind::string) continue;
        auto [end, err] = std::from_chars(v.str.data(), v.str.data() + v.str.size(), figures[i]);
        if (err != std::errc{} || end != v.str.data() + v.str.size()) {
            ++counters_->store_errors();
            co_return co_await local_->budget(tenant);
        }
    }
    const std::int64_t used = figures[0], held = figures[1];
    co_return budget_view{used, std::max<std::int64_t>(0, t.tokens_per_day - used - held)};
}

} // namespace gw::gateway
