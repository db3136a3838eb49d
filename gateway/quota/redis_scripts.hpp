// The Lua scripts of the Redis quota store and how they are called. Each script touches
// the keys of one hash tag (one Cluster slot) and reads Redis' own clock (TIME), so every
// replica decides on the same time. Called with EVALSHA; when Redis has lost its script
// cache (a restart, SCRIPT FLUSH, a node new to the slot) the reply is NOSCRIPT and
// with_script_bodies() turns those calls into EVALs.
//
// Concurrency is held as leases: members of a sorted set scored by their expiry, which a
// running request renews (renew_leases) and its end removes; a replica that dies cannot
// hold slots beyond one lease TTL. A token reservation is recorded in the tenant's token
// hash as `hold:<lease>` = `<day>:<amount>`, so settling it twice (a retried settlement)
// charges once, and giving it back lowers the day it was taken from.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace gw::gateway::redis_scripts {

using command = std::vector<std::string>;
// Keys and arguments named where they are: each is copied once, into the command (a braced
// list of strings would be copied into the list, then again into a vector).
using words = std::initializer_list<std::string_view>;

// A batch of one tenant's admissions, decided in order as separate calls would be.
// KEYS: rate bucket (hash), leases (zset), tokens (hash), cancelled leases (hash).
// ARGV: rate, burst, max_concurrent, tokens_per_day, lease ttl ms, "0" (no settlement
// folded in: see fold_settlement), then per admission: lease id, estimate, generates
// (1/0). Returns per admission {verdict, bucket tokens (string), unix seconds, reserved};
// verdict 0 admitted, 1 rate, 2 concurrency, 3 tokens, 4 cancelled (the gateway gave this
// admission up already: it takes nothing).
command admit_tenant(words keys, std::vector<std::string> args);
// A batch of one app's admissions. KEYS: leases (zset), cancelled leases (hash). ARGV:
// max_concurrent, lease ttl ms, then the lease ids. Returns per lease 0 admitted, 2 full,
// 4 cancelled.
command admit_app(words keys, std::vector<std::string> args);
// Settlements of one tenant and day. KEYS: leases (zset), tokens (hash),
// settled-without-reservation marks of the day (hash). ARGV: day, then per request: lease
// to release ('' = none), lease whose usage to settle ('' = none), tokens used, 1 =
// settles the lease's reservation / 0 = charges usage admitted without one (Redis was
// away). Idempotent. Returns the tokens charged.
command finish_tenant(words keys, words args);
// KEYS: leases (zset). ARGV: lease ttl ms, then the leases to extend (those still held).
command renew_leases(words keys, std::vector<std::string> args);
// Gives back what an admission the caller saw fail may have taken, and marks its lease
// cancelled (kept 10 minutes) so that the admission, if Redis runs it only later, takes
// nothing. KEYS: leases (zset), tokens (hash), cancelled leases (hash). ARGV: lease.
command cancel_tenant(words keys, words args);
// The same for an app's lease. KEYS: leases (zset), cancelled leases (hash). ARGV: lease.
command cancel_app(words keys, words args);

// A command of other words (ZREM, SET...), each copied once.
command plain(words parts);

// How many leading elements of `cmd` must be equal for another command to be merged into
// it (the rest are per-item arguments that can be appended): finish_tenant (its keys and
// day) and ZREM (its key); 0 for every other command.
std::size_t merge_prefix(const command& cmd);
// The element of a command that names the group it merges with: a ZREM's key, a
// settlement's day marks key (its tenant and day; its day alone would put every tenant's
// settlements in one group, and tenants whose settlements alternate would not merge).
// Empty for a command that merges with none.
std::string_view merge_group(const command& cmd);
// Appends `next`'s per-item arguments to `into` when both have the same merge prefix and
// `into` stays within `max_args`; false (nothing changed) otherwise.
bool merge_into(command& into, const command& next, std::size_t max_args = 1024);

// Folds a finish_tenant call of the same tenant into an admit_tenant call that has none
// yet: the admission's script run settles first, as the settlement's own run ahead of it
// would have, and saves a run (its set-up, TIME, the call). The admission gains KEYS[5]
// (the settlement's day marks) and the settlement's day and groups after its ARGV[6],
// which counts them; its reply gains one last element, the settlement's own reply (the
// tokens charged, or its error: one the settlement raises does not stop the admissions),
// and an error reply of the admission becomes an array of that error and the
// settlement's. False (nothing changed) when the two do not fit.
bool fold_settlement(command& admission, const command& settlement);

// `calls` with every EVALSHA whose reply was NOSCRIPT turned into an EVAL of the same
// script; `which` gets their positions. Empty when no reply was NOSCRIPT.
std::vector<command> with_script_bodies(const std::vector<command>& calls, const std::vector<bool>& noscript,
                                        std::vector<std::size_t>& which);

} // namespace gw::gateway::redis_scripts
