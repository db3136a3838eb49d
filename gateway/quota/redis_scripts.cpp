#include "gateway/quota/redis_scripts.hpp"

#include <openssl/evp.h>

#include <algorithm>

namespace gw::gateway::redis_scripts {

namespace {

// One batch of a tenant's admissions, decided in arrival order as if each were its own
// call: the same verdicts, with one read and one write of each key per batch.
//
// Redis runs these scripts for every request, so they are written for its CPU: numbers
// are turned into strings with '%d' (Lua's own conversion and '%.0f' go through the
// floating-point printer) and passed as the strings they came in where possible; strings
// known to be numbers (the arguments, TIME's reply, digits a pattern matched) are read by
// arithmetic (`s + 0` runs strtod once, `tonumber` twice), and only fields stored in Redis
// go through `tonumber`, whose nil says "not a number"; and a key's TTL is not set again
// on every write. Its `ttl_until` field holds when the TTL last
// set ends (Redis's clock, microseconds; Redis keeps expiries as such points too); a write
// sets the TTL again only when less than what it needs is left, less a margin: the
// bucket needs until it is full again plus a minute (margin 30 s, so it still outlives
// its refill), the token hash two days (margin an hour). A TTL that a configuration with
// a shorter refill set is renewed by the first write under a longer one.
constexpr std::string_view admit_tenant_lua = R"lua(
local t = redis.call('TIME')
local secs = t[1] + 0
local now = secs * 1000000 + t[2]
local rate, burst, max_conc = ARGV[1] + 0, ARGV[2] + 0, ARGV[3] + 0
local limit, ttl = ARGV[4] + 0, ARGV[5] + 0
-- A settlement folded in goes first, as it would have in its own run ahead of this one,
-- and fails alone: an error it raises (a command Redis refused) is its reply, and the
-- admissions are decided all the same.
local settled_args, settled = ARGV[6] + 0, nil
if settled_args > 0 then
  local ok, r = pcall(settle, KEYS[2], KEYS[3], KEYS[5], ARGV[7], 8, 6 + settled_args, now, secs)
  settled = (ok or type(r) == 'table') and r or redis.error_reply(tostring(r))
end
local function reply(r)
  if settled_args == 0 then return r end
  if r.err then r = {r} end
  r[#r + 1] = settled
  return r
end
local first = 7 + settled_args
local leases, count = {}, 0
for i = first, #ARGV, 3 do count = count + 1; leases[count] = ARGV[i] end
local cancelled = redis.call('HMGET', KEYS[4], unpack(leases))
local tokens, took, bucket_time, bucket_ttl_ms = -1, false, now, nil
if rate > 0 then
  local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'ttl_until')
  tokens = tonumber(b[1]) or burst
  -- The bucket's own clock: a time written ahead of Redis's (a failover to a node whose clock
  -- is behind) holds refills back until Redis's clock passes it, but never moves the clock
  -- that leases are swept and scored by. A time beyond any clock is read as none.
  local ts = tonumber(b[2])
  if not ts or not (ts < 1e17) then ts = now end
  if now > ts then tokens = math.min(burst, tokens + (now - ts) / 1000000 * rate) end
  bucket_time = math.max(now, ts)
  -- Until the bucket is full again, and a minute; capped (a rate near zero gives 1e17 or
  -- inf, which PEXPIRE refuses: the script would fail on every admission).
  local needed = math.min(math.ceil(burst / rate * 1000) + 60000, 1e15)
  if (tonumber(b[3]) or 0) < now + (needed - 30000) * 1000 then bucket_ttl_ms = needed end
end
local active = 0
if max_conc > 0 then
  active = redis.call('ZCARD', KEYS[2])
  if active + #leases > max_conc then -- expired leases (a replica that died) are swept only when they could refuse
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
    active = redis.call('ZCARD', KEYS[2])
  end
end
local day = string.format('%d', math.floor(secs / 86400))
local used, held, held_garbled, usage_ttl_old = 0, 0, false, false
if limit > 0 then
  local u = redis.call('HMGET', KEYS[3], 'used:' .. day, 'reserved:' .. day, 'ttl_until')
  local held_number = tonumber(u[2])
  used, held, held_garbled = tonumber(u[1]) or 0, held_number or 0, u[2] and not held_number
  usage_ttl_old = (tonumber(u[3]) or 0) < now + 169200000000
end
local out, members, holds = {}, {}, {}
for i = 1, count do
  local at = first + (i - 1) * 3
  local verdict, reserved = 0, 0
  if cancelled[i] then
    verdict = 4
  elseif rate > 0 and tokens < 1 then
    verdict = 1
  else
    if rate > 0 then tokens, took = tokens - 1, true end
    if max_conc > 0 and active >= max_conc then verdict = 2 end
    if verdict == 0 and limit > 0 and ARGV[at + 2] == '1' then
      local left = limit - used - held
      if left <= 0 then
        verdict = 3
      else
        reserved = math.min(ARGV[at + 1] + 0, left)
        held = held + reserved
        holds[#holds + 1] = 'hold:' .. leases[i]
        holds[#holds + 1] = day .. ':' .. string.format('%d', reserved)
      end
    end
    if verdict == 0 and max_conc > 0 then
      active = active + 1
      members[#members + 1] = string.format('%d', now + ttl * 1000)
      members[#members + 1] = leases[i]
    end
  end
  out[i] = {verdict, tostring(verdict == 4 and -1 or tokens), secs, reserved}
end
-- The day's reservations are written back as a number: one that cannot be read is an
-- error before anything is written, never replaced by a guess.
if #holds > 0 and held_garbled then
  return reply(redis.error_reply('reserved:' .. day .. ' is not a number'))
end
if took then
  -- 'ts' as whole microseconds (tostring keeps 14 digits: a 100 us step here)
  local fields = {'tokens', tostring(tokens), 'ts', string.format('%d', bucket_time)}
  if bucket_ttl_ms then fields[5], fields[6] = 'ttl_until', string.format('%d', now + bucket_ttl_ms * 1000) end
  redis.call('HSET', KEYS[1], unpack(fields))
  if bucket_ttl_ms then redis.call('PEXPIRE', KEYS[1], string.format('%d', bucket_ttl_ms)) end
end
if #holds > 0 then
  holds[#holds + 1] = 'reserved:' .. day
  holds[#holds + 1] = string.format('%d', held)
  if usage_ttl_old then holds[#holds + 1], holds[#holds + 2] = 'ttl_until', string.format('%d', now + 172800000000) end
  redis.call('HSET', KEYS[3], unpack(holds))
  if usage_ttl_old then redis.call('EXPIRE', KEYS[3], '172800') end
end
if #members > 0 then
  redis.call('ZADD', KEYS[2], unpack(members))
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return reply(out)
)lua";

constexpr std::string_view admit_app_lua = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local max_conc, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local leases = {}
for i = 3, #ARGV do leases[#leases + 1] = ARGV[i] end
local cancelled = redis.call('HMGET', KEYS[2], unpack(leases))
local active = redis.call('ZCARD', KEYS[1])
if active + #leases > max_conc then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  active = redis.call('ZCARD', KEYS[1])
end
local out, members = {}, {}
for i = 1, #leases do
  if cancelled[i] then
    out[i] = 4
  elseif active >= max_conc then
    out[i] = 2
  else
    out[i], active = 0, active + 1
    members[#members + 1] = now + ttl * 1000
    members[#members + 1] = leases[i]
  end
end
if #members > 0 then
  redis.call('ZADD', KEYS[1], unpack(members))
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return out
)lua";

// Settlements of one tenant and day, one group of four arguments per request: a function
// that finish_tenant runs alone and admit_tenant runs before its admissions (the link
// folds a waiting settlement into the admission it sends: one script run, one TIME).
// Usage of a reservation made on an earlier UTC day is not charged to today. Usage
// without a reservation (admitted while Redis was away) is marked done in a per-day hash
// (`settled`) so that a retried settlement charges it once; a lease named twice is
// settled once. The day's counters are read with the holds and written back as one HSET
// (the script is atomic); the token hash's TTL as in admit_tenant_lua. Returns the tokens
// charged, or an error reply (checked before any write but the releases').
constexpr std::string_view settle_lua = R"lua(
local function settle(active, tokens, settled, day, first, last, now, secs)
local today = day + 0 == math.floor(secs / 86400)
local releases, seen, reserved, unreserved = {}, {}, {}, {}
for i = first, last, 4 do
  if ARGV[i] ~= '' then releases[#releases + 1] = ARGV[i] end
  local lease = ARGV[i + 1]
  if lease ~= '' and not seen[lease] then
    seen[lease] = true
    local list = ARGV[i + 3] == '1' and reserved or unreserved
    list[#list + 1] = {lease, ARGV[i + 2] + 0}
  end
end
if #releases > 0 then redis.call('ZREM', active, unpack(releases)) end
if #reserved == 0 and #unreserved == 0 then return 0 end
local fields = {}
for i, r in ipairs(reserved) do fields[i] = 'hold:' .. r[1] end
local n = #fields
fields[n + 1], fields[n + 2], fields[n + 3] = 'reserved:' .. day, 'used:' .. day, 'ttl_until'
local values = redis.call('HMGET', tokens, unpack(fields))
local charged, any, done, back, back_today = 0, false, {}, {}, 0
for i, r in ipairs(reserved) do
  if values[i] then
    done[#done + 1] = fields[i]
    local held_day, held = string.match(values[i], '^(%d+):(%d+)$')
    if held_day == day then
      back_today = back_today + held
    elseif held then
      back[held_day] = (back[held_day] or 0) + held
    end
    charged, any = charged + r[2], true
  end
end
-- The counters this settlement writes back must read as numbers (checked before any write).
local held_number, used_number = tonumber(values[n + 1]), tonumber(values[n + 2])
local held_today, used_today = held_number or 0, used_number or 0
if back_today > 0 and values[n + 1] and not held_number then
  return redis.error_reply('reserved:' .. day .. ' is not a number')
end
if today and (any or #unreserved > 0) and values[n + 2] and not used_number then
  return redis.error_reply('used:' .. day .. ' is not a number')
end
if #done > 0 then redis.call('HDEL', tokens, unpack(done)) end
for held_day, amount in pairs(back) do
  if amount > 0 then redis.call('HINCRBY', tokens, 'reserved:' .. held_day, -amount) end
end
if #unreserved > 0 then
  for _, r in ipairs(unreserved) do
    if redis.call('HSETNX', settled, r[1], '1') == 1 then charged, any = charged + r[2], true end
  end
  redis.call('EXPIRE', settled, '172800')
end
local writes = {}
if back_today > 0 then writes = {'reserved:' .. day, string.format('%d', held_today - back_today)} end
local ttl_old = false
if today and any then
  writes[#writes + 1], writes[#writes + 2] = 'used:' .. day, string.format('%d', used_today + charged)
  ttl_old = (tonumber(values[n + 3]) or 0) < now + 169200000000
  if ttl_old then writes[#writes + 1], writes[#writes + 2] = 'ttl_until', string.format('%d', now + 172800000000) end
end
if #writes > 0 then redis.call('HSET', tokens, unpack(writes)) end
if ttl_old then redis.call('EXPIRE', tokens, '172800') end
return charged
end
)lua";

constexpr std::string_view finish_tenant_lua = R"lua(
local t = redis.call('TIME')
local secs = t[1] + 0
return settle(KEYS[1], KEYS[2], KEYS[3], ARGV[1], 2, #ARGV, secs * 1000000 + t[2], secs)
)lua";

// The give-back of an admission whose caller saw it fail: marked cancelled first, so the
// admission, should Redis run it only now, takes nothing.
constexpr std::string_view cancel_tenant_lua = R"lua(
redis.call('HSET', KEYS[3], ARGV[1], '1')
redis.call('EXPIRE', KEYS[3], 600)
redis.call('ZREM', KEYS[1], ARGV[1])
local hold = redis.call('HGET', KEYS[2], 'hold:' .. ARGV[1])
if not hold then return 0 end
redis.call('HDEL', KEYS[2], 'hold:' .. ARGV[1])
local held_day, held = string.match(hold, '^(%d+):(%d+)$')
if held then redis.call('HINCRBY', KEYS[2], 'reserved:' .. held_day, -tonumber(held)) end
return 1
)lua";

constexpr std::string_view cancel_app_lua = R"lua(
redis.call('HSET', KEYS[2], ARGV[1], '1')
redis.call('EXPIRE', KEYS[2], 600)
redis.call('ZREM', KEYS[1], ARGV[1])
return 0
)lua";

constexpr std::string_view renew_leases_lua = R"lua(
local t = redis.call('TIME')
local expiry = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[1]) * 1000
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
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
    std::string body;
    std::string sha = sha1_hex(body);
};

std::string with_settle(std::string_view body)
{
    return std::string(settle_lua).append(body);
}

// In the order the functions below name them.
const std::vector<script>& scripts()
{
    static const std::vector<script> all{{with_settle(admit_tenant_lua)}, {std::string(admit_app_lua)},
                                         {with_settle(finish_tenant_lua)}, {std::string(renew_leases_lua)},
                                         {std::string(cancel_tenant_lua)}, {std::string(cancel_app_lua)}};
    return all;
}

// An admit_tenant call's layout: EVALSHA sha numkeys, the keys, then ARGV; ARGV[6] counts
// the settlement arguments after it.
constexpr std::size_t admit_keys = 4;
constexpr std::size_t admit_settle_count_at = 3 + admit_keys + 5;
// A finish_tenant call's: EVALSHA sha 3, active, tokens, settled, day, then the groups.
constexpr std::size_t finish_day_at = 6;

// EVALSHA, the script's digest, the keys; room for `args` more.
command evalsha_head(std::size_t which, words keys, std::size_t args)
{
    command c;
    c.reserve(3 + keys.size() + args);
    c.emplace_back("EVALSHA");
    c.push_back(scripts()[which].sha);
    c.push_back(std::to_string(keys.size()));
    for (auto k : keys) c.emplace_back(k);
    return c;
}
command evalsha(std::size_t which, words keys, std::vector<std::string> args)
{
    auto c = evalsha_head(which, keys, args.size());
    c.insert(c.end(), std::make_move_iterator(args.begin()), std::make_move_iterator(args.end()));
    return c;
}
command evalsha(std::size_t which, words keys, words args)
{
    auto c = evalsha_head(which, keys, args.size());
    for (auto a : args) c.emplace_back(a);
    return c;
}

} // namespace

command admit_tenant(words keys, std::vector<std::string> args)
{
    return evalsha(0, keys, std::move(args));
}
command admit_app(words keys, std::vector<std::string> args)
{
    return evalsha(1, keys, std::move(args));
}
command finish_tenant(words keys, words args)
{
    return evalsha(2, keys, args);
}
command renew_leases(words keys, std::vector<std::string> args)
{
    return evalsha(3, keys, std::move(args));
}
command cancel_tenant(words keys, words args)
{
    return evalsha(4, keys, args);
}
command cancel_app(words keys, words args)
{
    return evalsha(5, keys, args);
}

command plain(words parts)
{
    command c;
    c.reserve(parts.size());
    for (auto p : parts) c.emplace_back(p);
    return c;
}

std::size_t merge_prefix(const command& cmd)
{
    if (cmd.size() > 7 && cmd[0] == "EVALSHA" && cmd[1] == scripts()[2].sha && cmd[2] == "3") return 7; // keys and day
    if (cmd.size() > 2 && cmd[0] == "ZREM") return 2;
    return 0;
}

std::string_view merge_group(const command& cmd)
{
    const auto prefix = merge_prefix(cmd);
    return prefix == 2 ? cmd[1] : prefix == 7 ? cmd[5] : std::string_view{};
}

bool merge_into(command& into, const command& next, std::size_t max_args)
{
    auto prefix = merge_prefix(into);
    if (prefix == 0 || merge_prefix(next) != prefix || into.size() + next.size() - prefix > max_args) return false;
    if (!std::equal(into.begin(), into.begin() + static_cast<std::ptrdiff_t>(prefix), next.begin())) return false;
    into.insert(into.end(), next.begin() + static_cast<std::ptrdiff_t>(prefix), next.end());
    return true;
}

bool fold_settlement(command& admission, const command& settlement)
{
    const bool admits = admission.size() > admit_settle_count_at && admission[0] == "EVALSHA" &&
                        admission[1] == scripts()[0].sha && admission[2] == std::to_string(admit_keys) &&
                        admission[admit_settle_count_at] == "0";
    const bool settles = settlement.size() > finish_day_at && settlement[0] == "EVALSHA" && settlement[1] == scripts()[2].sha &&
                         settlement[2] == "3";
    // The same tenant: its leases and token hash.
    if (!admits || !settles || admission[4] != settlement[3] || admission[5] != settlement[4]) return false;
    admission[2] = std::to_string(admit_keys + 1);
    admission.insert(admission.begin() + 3 + admit_keys, settlement[5]); // the day's settled marks: KEYS[5]
    const auto count_at = admission.begin() + static_cast<std::ptrdiff_t>(admit_settle_count_at + 1);
    *count_at = std::to_string(settlement.size() - finish_day_at);
    admission.insert(count_at + 1, settlement.begin() + finish_day_at, settlement.end());
    return true;
}

std::vector<command> with_script_bodies(const std::vector<command>& calls, const std::vector<bool>& noscript,
                                        std::vector<std::size_t>& which)
{
    std::vector<command> out;
    which.clear();
    for (std::size_t i = 0; i < calls.size() && i < noscript.size(); ++i) {
        if (!noscript[i] || calls[i].size() < 2 || calls[i][0] != "EVALSHA") continue;
        for (const auto& s : scripts()) {
            if (s.sha != calls[i][1]) continue;
            auto cmd = calls[i];
            cmd[0] = "EVAL";
            cmd[1] = std::string(s.body);
            out.push_back(std::move(cmd));
            which.push_back(i);
        }
    }
    return out;
}

} // namespace gw::gateway::redis_scripts
