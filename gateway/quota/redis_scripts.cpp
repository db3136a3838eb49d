#include "gateway/quota/redis_scripts.hpp"

#include <openssl/evp.h>

namespace gw::gateway::redis_scripts {

namespace {

constexpr std::string_view admit_tenant_lua = R"lua(
if redis.call('HEXISTS', KEYS[4], ARGV[6]) == 1 then return {4, '-1', 0, 0} end
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
  redis.call('HSET', KEYS[3], 'hold:' .. ARGV[6], day .. ':' .. reserved)
  redis.call('EXPIRE', KEYS[3], 172800)
end
if max_conc > 0 then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[7]) * 1000, ARGV[6])
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[7]))
end
return {0, tostring(tokens), tonumber(t[1]), reserved}
)lua";

constexpr std::string_view admit_app_lua = R"lua(
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return 4 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local max_conc = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= max_conc then return 2 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]) * 1000, ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 0
)lua";

// Usage of a reservation made on an earlier UTC day is not charged to today. Usage
// without a reservation (admitted while Redis was away) is marked done in a per-day hash
// (KEYS[3]) so that a retried settlement charges it once.
constexpr std::string_view finish_tenant_lua = R"lua(
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end
if ARGV[2] == '' then return 0 end
local t = redis.call('TIME')
local day = tonumber(ARGV[3])
local today = day == math.floor(tonumber(t[1]) / 86400)
if ARGV[5] == '1' then
  local hold = redis.call('HGET', KEYS[2], 'hold:' .. ARGV[2])
  if not hold then return 0 end
  redis.call('HDEL', KEYS[2], 'hold:' .. ARGV[2])
  local held_day, held = string.match(hold, '^(%d+):(%d+)$')
  if held then redis.call('HINCRBY', KEYS[2], 'reserved:' .. held_day, -tonumber(held)) end
else
  if redis.call('HSETNX', KEYS[3], ARGV[2], '1') == 0 then return 0 end
  redis.call('EXPIRE', KEYS[3], 172800)
end
if today then
  redis.call('HINCRBY', KEYS[2], 'used:' .. day, tonumber(ARGV[4]))
  redis.call('EXPIRE', KEYS[2], 172800)
end
return 1
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
    std::string_view body;
    std::string sha = sha1_hex(body);
};

const std::vector<script>& scripts()
{
    static const std::vector<script> all{{admit_tenant_lua}, {admit_app_lua},   {finish_tenant_lua},
                                         {renew_leases_lua}, {cancel_tenant_lua}, {cancel_app_lua}};
    return all;
}

command evalsha(std::size_t which, std::vector<std::string> keys, std::vector<std::string> args)
{
    command c{"EVALSHA", scripts()[which].sha, std::to_string(keys.size())};
    c.insert(c.end(), std::make_move_iterator(keys.begin()), std::make_move_iterator(keys.end()));
    c.insert(c.end(), std::make_move_iterator(args.begin()), std::make_move_iterator(args.end()));
    return c;
}

} // namespace

command admit_tenant(std::vector<std::string> keys, std::vector<std::string> args)
{
    return evalsha(0, std::move(keys), std::move(args));
}
command admit_app(std::vector<std::string> keys, std::vector<std::string> args)
{
    return evalsha(1, std::move(keys), std::move(args));
}
command finish_tenant(std::vector<std::string> keys, std::vector<std::string> args)
{
    return evalsha(2, std::move(keys), std::move(args));
}
command renew_leases(std::vector<std::string> keys, std::vector<std::string> args)
{
    return evalsha(3, std::move(keys), std::move(args));
}
command cancel_tenant(std::vector<std::string> keys, std::vector<std::string> args)
{
    return evalsha(4, std::move(keys), std::move(args));
}
command cancel_app(std::vector<std::string> keys, std::vector<std::string> args)
{
    return evalsha(5, std::move(keys), std::move(args));
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
