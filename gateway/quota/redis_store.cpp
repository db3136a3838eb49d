#include "gateway/quota/redis_store.hpp"

#include "core/key_hash.hpp"

#include "gateway/spawn.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <random>

namespace gw::gateway {

namespace {

// KEYS: rate bucket (hash), leases (zset), tokens (hash).
// ARGV: rate, burst, max_concurrent, tokens_per_day, estimate, lease id, lease ttl ms, generates.
// Returns {verdict, bucket tokens (string), unix seconds, reserved}; verdict 0 admitted,
// 1 rate, 2 concurrency, 3 tokens.
constexpr std::string_view admit_tenant_lua = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokens = -1
if rate > 0 then
  local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
  tokens = tonumber(b[1]) or burst
  local ts = tonumber(b[2]) or now
  if now > ts then tokens = math.min(burst, tokens + (now - ts) / 1000000 * rate) else now = ts end
  if tokens < 1 then return {1, tostring(tokens), tonumber(t[1]), 0} end
  tokens = tokens - 1
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 60000)
end
local max_conc = tonumber(ARGV[3])
if max_conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= max_conc then return {2, tostring(tokens), tonumber(t[1]), 0} end
end
local reserved = 0
local limit = tonumber(ARGV[4])
if limit > 0 and ARGV[8] == '1' then
  local day = math.floor(tonumber(t[1]) / 86400)
  local used = tonumber(redis.call('HGET', KEYS[3], 'used:' .. day) or '0')
  local held = tonumber(redis.call('HGET', KEYS[3], 'reserved:' .. day) or '0')
  local left = limit - used - held
  if left <= 0 then return {3, tostring(tokens), tonumber(t[1]), 0} end
  reserved = math.min(tonumber(ARGV[5]), left)
  redis.call('HINCRBY', KEYS[3], 'reserved:' .. day, reserved)
  redis.call('EXPIRE', KEYS[3], 172800)
end
if max_conc > 0 then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[7]) * 1000, ARGV[6])
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[7]))
end
return {0, tostring(tokens), tonumber(t[1]), reserved}
)lua";

// KEYS: leases (zset). ARGV: max_concurrent, lease id, lease ttl ms. Returns 0 admitted, 2 full.
constexpr std::string_view admit_app_lua = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local max_conc = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= max_conc then return 2 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]) * 1000, ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 0
)lua";

// KEYS: leases (zset), tokens (hash). ARGV: lease id ('' = none), reservation day,
// reserved, used. Usage of a reservation made on an earlier UTC day is not charged.
constexpr std::string_view finish_tenant_lua = R"lua(
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end
local t = redis.call('TIME')
local today = math.floor(tonumber(t[1]) / 86400)
local day, reserved, used = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if day == today and (reserved > 0 or used > 0) then
  redis.call('HINCRBY', KEYS[2], 'reserved:' .. day, -reserved)
  redis.call('HINCRBY', KEYS[2], 'used:' .. day, used)
  redis.call('EXPIRE', KEYS[2], 172800)
end
return 0
)lua";

std::string sha1_hex(std::string_view s)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(s.data(), s.size(), digest, &len, EVP_sha1(), nullptr);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < len; ++i) {
        out.push_back(hex[digest[i] >> 4]);
        out.push_back(hex[digest[i] & 0xF]);
    }
    return out;
}

struct script
{
    std::string_view body;
    std::string sha;
};
const script& admit_tenant_script()
{
    static const script s{admit_tenant_lua, sha1_hex(admit_tenant_lua)};
    return s;
}
const script& admit_app_script()
{
    static const script s{admit_app_lua, sha1_hex(admit_app_lua)};
    return s;
}
const script& finish_tenant_script()
{
    static const script s{finish_tenant_lua, sha1_hex(finish_tenant_lua)};
    return s;
}

redis_client::command evalsha(const script& s, std::vector<std::string> keys, std::vector<std::string> args)
{
    redis_client::command c{"EVALSHA", s.sha, std::to_string(keys.size())};
    c.insert(c.end(), keys.begin(), keys.end());
    c.insert(c.end(), args.begin(), args.end());
    return c;
}

std::string script_body_for(const std::string& sha)
{
    for (const auto* s : {&admit_tenant_script(), &admit_app_script(), &finish_tenant_script()})
        if (s->sha == sha) return std::string(s->body);
    return {};
}

// Leases outlive any request the gateway serves: Dify runs end within 20 minutes.
constexpr std::int64_t lease_ttl_ms = 3'600'000;

std::string number(double v)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}

core::rate_decision rate_view(const config::rate_config& r, double tokens, bool allowed)
{
    core::rate_decision d;
    d.allowed = allowed;
    d.limit = static_cast<std::int64_t>(r.burst);
    d.remaining = static_cast<std::int64_t>(std::floor(std::max(0.0, tokens)));
    d.reset_seconds = static_cast<std::int64_t>(std::ceil((r.burst - tokens) / r.requests_per_second));
    if (!allowed)
        d.retry_after_seconds = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil((1.0 - tokens) / r.requests_per_second)));
    return d;
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

redis_quota_store::redis_quota_store(net::any_io_executor ex, std::shared_ptr<const config::gateway_config> cfg,
                                     std::shared_ptr<usage_counters> counters, std::shared_ptr<memory_quota_store> local)
    : ex_(ex),
      cfg_holder_(std::move(cfg)),
      cfg_(*cfg_holder_),
      counters_(std::move(counters)),
      local_(std::move(local)),
      client_(ex, config::parse_redis_url(cfg_.quota_store.url).value() /* validated */, std::chrono::milliseconds(cfg_.quota_store.timeout_ms))
{
    std::random_device rd;
    lease_prefix_ = core::sha256_hex(std::to_string(rd()) + std::to_string(rd())).substr(0, 12) + ":";
}

net::awaitable<std::tuple<error_code, std::vector<redis_value>>> redis_quota_store::run_scripts(std::vector<redis_client::command> calls)
{
    auto [ec, replies] = co_await client_.exec(calls);
    if (ec) co_return std::tuple{ec, std::move(replies)};
    // Redis lost its script cache (restart, SCRIPT FLUSH): send the bodies once more.
    std::vector<redis_client::command> retry;
    std::vector<std::size_t> where;
    for (std::size_t i = 0; i < replies.size(); ++i) {
        if (replies[i].is_error() && replies[i].str.starts_with("NOSCRIPT")) {
            auto cmd = calls[i];
            cmd[0] = "EVAL";
            cmd[1] = script_body_for(calls[i][1]);
            retry.push_back(std::move(cmd));
            where.push_back(i);
        }
    }
    if (!retry.empty()) {
        auto [rec, again] = co_await client_.exec(retry);
        if (rec) co_return std::tuple{rec, std::move(replies)};
        for (std::size_t k = 0; k < where.size(); ++k) replies[where[k]] = std::move(again[k]);
    }
    co_return std::tuple{error_code{}, std::move(replies)};
}

net::awaitable<admission> redis_quota_store::on_store_error(const std::string& tenant, const std::string& app, bool generates)
{
    ++counters_->store_errors();
    const auto& policy = cfg_.quota_store.on_error;
    if (policy == "local") co_return local_->admit_now(tenant, app, generates);
    admission out;
    if (policy == "deny") {
        out.refused = quota_reason::store_unavailable;
        out.retry_after_seconds = 1;
        co_return out;
    }
    out.ticket = std::make_unique<quota_ticket>(shared_from_this(), cfg_.tenants.find(tenant)->first,
                                                cfg_.apps.find(app)->first); // allow: unchecked
    co_return out;
}

net::awaitable<admission> redis_quota_store::admit(const std::string& tenant, const std::string& app, bool generates)
{
    if (!cfg_.tenants.contains(tenant) || !cfg_.apps.contains(app)) co_return admission{}; // not in this config
    const auto& t = cfg_.tenants.at(tenant);
    const auto& a = cfg_.apps.at(app);
    std::string lease = lease_prefix_ + std::to_string(++lease_counter_);
    std::int64_t estimate = generates && t.tokens_per_day > 0 ? local_->estimate(app) : 0;
    std::vector<redis_client::command> calls;
    calls.push_back(evalsha(admit_tenant_script(),
                            {tenant_key(tenant, "rate"), tenant_key(tenant, "active"), tenant_key(tenant, "tokens")},
                            {number(t.rate ? t.rate->requests_per_second : 0), number(t.rate ? t.rate->burst : 0),
                             std::to_string(t.max_concurrent), std::to_string(t.tokens_per_day), std::to_string(estimate),
                             lease, std::to_string(lease_ttl_ms), generates ? "1" : "0"}));
    if (a.max_concurrent > 0)
        calls.push_back(evalsha(admit_app_script(), {app_key(app)}, {std::to_string(a.max_concurrent), lease, std::to_string(lease_ttl_ms)}));

    auto [ec, replies] = co_await run_scripts(calls);
    bool malformed = !ec && (replies.size() != calls.size() || replies[0].type != redis_value::kind::array ||
                             replies[0].elements.size() != 4 || (calls.size() == 2 && replies[1].type != redis_value::kind::integer));
    if (ec || malformed) {
        if (!failing_) // one line per outage, not one per request
            spdlog::warn("quota store failing ({}); on_error = {}", ec ? ec.message() : "unexpected reply",
                         cfg_.quota_store.on_error);
        failing_ = true;
        co_return co_await on_store_error(tenant, app, generates);
    }
    if (failing_) spdlog::info("quota store reachable again");
    failing_ = false;
    const auto& r = replies[0].elements;
    int verdict = static_cast<int>(r[0].integer);
    double bucket = std::strtod(r[1].str.c_str(), nullptr);
    std::int64_t unix_seconds = r[2].integer;
    std::int64_t reserved = r[3].integer;
    bool app_ok = calls.size() == 1 || replies[1].integer == 0;

    admission out;
    if (t.rate) out.rate = rate_view(*t.rate, bucket, verdict != 1);
    auto ticket = std::make_unique<quota_ticket>(shared_from_this(), cfg_.tenants.find(tenant)->first, cfg_.apps.find(app)->first);
    ticket->lease = lease;
    ticket->reservation = {core::utc_day(unix_seconds), reserved, verdict == 0 && generates && t.tokens_per_day > 0};
    ticket->holds_tenant_slot = verdict == 0 && t.max_concurrent > 0;
    ticket->holds_app_slot = app_ok && a.max_concurrent > 0;
    if (verdict == 0 && app_ok) {
        out.ticket = std::move(ticket);
        co_return out;
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
    co_return out;
}

net::awaitable<void> redis_quota_store::settle(std::shared_ptr<redis_quota_store> self, std::vector<redis_client::command> calls)
{
    auto [ec, replies] = co_await self->run_scripts(std::move(calls));
    if (ec) {
        ++self->counters_->store_errors();
        spdlog::warn("quota store: settling failed: {}", ec.message());
    }
}

void redis_quota_store::finish(quota_ticket& t, std::int64_t tokens)
{
    if (tokens > 0) counters_->add_tokens(t.tenant(), t.app(), local_->today(), tokens);
    std::vector<redis_client::command> calls;
    if (t.holds_tenant_slot || t.reservation.admitted)
        calls.push_back(evalsha(finish_tenant_script(), {tenant_key(t.tenant(), "active"), tenant_key(t.tenant(), "tokens")},
                                {t.holds_tenant_slot ? t.lease : "", std::to_string(t.reservation.day),
                                 std::to_string(t.reservation.admitted ? t.reservation.amount : 0),
                                 std::to_string(t.reservation.admitted ? tokens : 0)}));
    if (t.holds_app_slot) calls.push_back({"ZREM", app_key(t.app()), t.lease});
    t.holds_tenant_slot = t.holds_app_slot = false;
    if (calls.empty()) return;
    net::co_spawn(ex_, settle(shared_from_this(), std::move(calls)), log_failure("quota settlement"));
}

namespace {

std::string owner_key(core::owned_kind kind, const std::string& id)
{
    return std::string("dify-gateway:{o}:") + core::kind_name(kind) + ":" + id;
}

} // namespace

void redis_quota_store::record_owner(core::owned_kind kind, const std::string& id, const std::string& tenant)
{
    if (id.empty()) return;
    local_->record_owner(kind, id, tenant);
    // NX: the first owner stays; the owner's later uses do not extend the key (EX on create).
    std::vector<redis_client::command> calls{
        {"SET", owner_key(kind, id), tenant, "NX", "EX", std::to_string(cfg_.quota_store.ownership_ttl_s)}};
    net::co_spawn(ex_, settle(shared_from_this(), std::move(calls)), log_failure("quota settlement"));
}

net::awaitable<std::optional<std::string>> redis_quota_store::owner_of(core::owned_kind kind, const std::string& id)
{
    std::vector<redis_client::command> query{{"GET", owner_key(kind, id)}};
    auto [ec, replies] = co_await client_.exec(std::move(query)); // named: no braced temporaries in co_await (g++ 12)
    if (ec || replies.size() != 1 || replies[0].is_error()) {
        ++counters_->store_errors();
        co_return local_->owner_now(kind, id);
    }
    if (replies[0].type != redis_value::kind::string) co_return std::nullopt;
    co_return replies[0].str;
}

net::awaitable<budget_view> redis_quota_store::budget(const std::string& tenant)
{
    const auto& t = cfg_.tenants.at(tenant);
    if (t.tokens_per_day <= 0) co_return budget_view{};
    auto day = std::to_string(local_->today());
    std::vector<redis_client::command> query{{"HMGET", tenant_key(tenant, "tokens"), "used:" + day, "reserved:" + day}};
    auto [ec, replies] = co_await client_.exec(std::move(query)); // named: no braced temporaries in co_await (g++ 12)
    if (ec || replies.empty() || replies[0].elements.size() != 2) {
        ++counters_->store_errors();
        co_return co_await local_->budget(tenant);
    }
    auto value = [](const redis_value& v) { return v.type == redis_value::kind::string ? std::stoll(v.str) : 0LL; };
    std::int64_t used = value(replies[0].elements[0]), held = value(replies[0].elements[1]);
    co_return budget_view{used, std::max<std::int64_t>(0, t.tokens_per_day - used - held)};
}

} // namespace gw::gateway
