"""The Lua scripts of ``RedisStore``: one script per decision, each touching one hash slot.

Every script is registered here under a name (``script(name, source)``); ``RedisStore`` loads
them all onto each connection it makes and runs one by name with ``_run(name, keys, args)``.
A new kind of shared state (a budget) adds its script here and a method that runs it — nothing
else. Scripts read the time from the server (``TIME``), never from the caller: the monotonic
clocks of two hosts do not agree. Times are seconds since ``EPOCH`` (a recent instant, so
microseconds still fit a double with room to spare) and travel as ``%.17g`` strings, since
Redis would truncate a Lua number to an integer.
"""

from __future__ import annotations

from typing import Final

__all__ = ["EPOCH", "SCRIPTS", "script"]

EPOCH: Final = 1_700_000_000  # 2023-11-14, in Unix seconds

SCRIPTS: dict[str, str] = {}

_PRELUDE: Final = f"""
local function now_s()
  local t = redis.call('TIME')
  return (tonumber(t[1]) - {EPOCH}) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.17g', x) end
"""


def script(name: str, source: str) -> str:
    """Register ``source`` (which may use ``now_s()`` and ``fmt(x)``) as ``name``; returns name."""
    if name in SCRIPTS:
        raise ValueError(f"a Redis script named {name!r} is already registered")
    SCRIPTS[name] = _PRELUDE + source
    return name


# --- cache --------------------------------------------------------------------------------------
# KEYS[1] entry, KEYS[2] its flight lock. An entry is "<ttl ms>\n<frozen bytes>": the age of a
# hit is its TTL less its PTTL.

CACHE_GET: Final = script(
    "cache.get",
    """
local value = redis.call('GET', KEYS[1])
if not value then return false end
return {value, redis.call('PTTL', KEYS[1])}
""",
)

# ARGV: value, ttl ms, the writer's flight token. Ends the writer's own flight, not another's.
CACHE_SET: Final = script(
    "cache.set",
    """
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
""",
)

CACHE_DELETE: Final = script("cache.delete", "redis.call('DEL', KEYS[1]) return 1")

# ARGV: flight token, lock ms. {1, value, pttl}: stored meanwhile; {2}: the caller now holds the
# flight; {0}: another caller holds it, ask again later.
CACHE_FLIGHT: Final = script(
    "cache.flight",
    """
local value = redis.call('GET', KEYS[1])
if value then return {1, value, redis.call('PTTL', KEYS[1])} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {0}
""",
)

# ARGV: flight token.
CACHE_END_FLIGHT: Final = script(
    "cache.end_flight",
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 1",
)

# --- rate limits (GCRA; see relaykit.stores.rate_limit) -----------------------------------------
# KEYS: one key per bucket, holding its theoretical arrival time (absent: the bucket is full).
# ARGV: max_wait_s, slack_s, then amount, capacity, refill_per_s for each key.
# Returns {granted 0|1, wait_s, limited_by (0-based, -1: none)}; all buckets or none are taken.

RATE_ACQUIRE: Final = script(
    "rate.acquire",
    """
local now = now_s()
local max_wait, slack = tonumber(ARGV[1]), tonumber(ARGV[2])
local tats, wait, limited_by = {}, 0, -1
for i = 1, #KEYS do
  local amount, capacity = tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
  local rate = tonumber(ARGV[3 * i + 2])
  if amount > capacity then return {0, 'inf', i - 1} end
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  tats[i] = tat
  local needed = tat + (amount - capacity) / rate - now
  if needed > wait then wait, limited_by = needed, i - 1 end
end
if wait <= slack then
  limited_by = -1
elseif wait > max_wait + slack then
  return {0, fmt(wait), limited_by}
end
for i = 1, #KEYS do
  local tat = tats[i] + tonumber(ARGV[3 * i]) / tonumber(ARGV[3 * i + 2])
  redis.call('SET', KEYS[i], fmt(tat), 'PX', math.ceil((tat - now) * 1000) + 1)
end
return {1, fmt(wait), limited_by}
""",
)

# KEYS[1] one bucket; ARGV: amount (negative gives back), refill_per_s. Never above capacity:
# a tat at or before now is a full bucket, which is no key at all.
RATE_ADJUST: Final = script(
    "rate.adjust",
    """
local now = now_s()
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
tat = tat + tonumber(ARGV[1]) / tonumber(ARGV[2])
if tat > now then
  redis.call('SET', KEYS[1], fmt(tat), 'PX', math.ceil((tat - now) * 1000) + 1)
else
  redis.call('DEL', KEYS[1])
end
return 1
""",
)

# --- circuit breakers (the state machine of relaykit.stores.breaker, on the server) -------------
# KEYS[1] the circuit's hash, KEYS[2] the leases of its probes in flight (a sorted set scored
# by lease expiry). Hash fields: s state (absent or 0 closed, 1 open, 2 half-open), u open
# until, r reason, n probe ids handed out, k consecutive failures, e newest time slice, c0..c9
# and f0..f9 calls and failures per slice. A closed circuit with nothing counted is no key.
# ARGV of every breaker script starts with the policy: failures, failure_rate, min_calls,
# window_s, cooldown_s, half_open_probes, probe_lease_s.

_BREAKER: Final = """
local h, z = KEYS[1], KEYS[2]
local failures, failure_rate, min_calls = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local window, cooldown = tonumber(ARGV[4]), tonumber(ARGV[5])
local probes, lease = tonumber(ARGV[6]), tonumber(ARGV[7])
local now = now_s()
local function keep(open_s)
  redis.call('PEXPIRE', h, math.ceil((open_s + lease + window) * 1000))
end
local function open(open_s, reason)
  redis.call('DEL', h, z)
  redis.call('HSET', h, 's', 1, 'u', fmt(now + open_s), 'r', reason)
  keep(open_s)
  return {1, fmt(open_s), reason}
end
local function plural(n, word)
  if n == 1 then return n .. ' ' .. word end
  return n .. ' ' .. word .. 's'
end
"""

# Returns {1, 0} admitted, {1, 1} admitted as a probe, {0, wait_s or '', reason} refused.
BREAKER_ADMIT: Final = script(
    "breaker.admit",
    _BREAKER
    + """
local v = redis.call('HMGET', h, 's', 'u', 'r')
local state = tonumber(v[1]) or 0
if state == 0 then return {1, 0} end
if state == 1 then
  local open_until = tonumber(v[2])
  if now < open_until then return {0, fmt(open_until - now), v[3]} end
  redis.call('HSET', h, 's', 2)
end
redis.call('ZREMRANGEBYSCORE', z, '-inf', fmt(now))
if redis.call('ZCARD', z) < probes then
  redis.call('ZADD', z, fmt(now + lease), redis.call('HINCRBY', h, 'n', 1))
  redis.call('PEXPIRE', z, math.ceil(lease * 1000) + 1000)
  keep(0)
  return {1, 1}
end
return {0, '', v[3] or ''}
""",
)

# ARGV after the policy: ok, probe, late (0|1), open_s ('' for none), reason.
# Returns {0} no change, {1, open_s, reason} opened, {2} closed.
BREAKER_RECORD: Final = script(
    "breaker.record",
    _BREAKER
    + """
local ok, probe, late = ARGV[8] == '1', ARGV[9] == '1', ARGV[10] == '1'
local open_s, reason = tonumber(ARGV[11]), ARGV[12]
local v = redis.call('HMGET', h, 's', 'u')
local state = tonumber(v[1]) or 0
if state == 2 and probe then
  redis.call('ZPOPMAX', z)
  if ok then
    redis.call('DEL', h, z)
    return {2}
  end
  if open_s then return open(open_s, reason) end
  return open(cooldown, 'a failed half-open probe')
end
if state ~= 0 then
  -- A call admitted before the circuit opened: only a provider's longer pushback counts.
  if open_s and now + open_s > tonumber(v[2]) then return open(open_s, reason) end
  return {0}
end
local fields = {'k', 'e'}
for i = 0, 9 do fields[#fields + 1] = 'c' .. i end
for i = 0, 9 do fields[#fields + 1] = 'f' .. i end
local got = redis.call('HMGET', h, unpack(fields))
local epoch = math.floor(now * 10 / window)
local consecutive, newest = tonumber(got[1]) or 0, tonumber(got[2]) or epoch
local calls, failed = {}, {}
for i = 0, 9 do
  calls[i] = tonumber(got[3 + i]) or 0
  failed[i] = tonumber(got[13 + i]) or 0
end
if epoch ~= newest then
  local stale = 10
  if epoch > newest then stale = math.min(epoch - newest, 10) end
  for step = 1, stale do
    local i = (newest + step) % 10
    calls[i], failed[i] = 0, 0
  end
end
local slot = epoch % 10
local result = {0}
if ok then
  consecutive = 0
  calls[slot] = calls[slot] + 1
else
  consecutive = consecutive + 1
  if not late then calls[slot] = calls[slot] + 1 end
  failed[slot] = failed[slot] + 1
  if open_s then return open(open_s, reason) end
  if consecutive >= failures then
    return open(cooldown, plural(consecutive, 'consecutive failure'))
  end
  local total_calls, total_failed = 0, 0
  for i = 0, 9 do
    total_calls, total_failed = total_calls + calls[i], total_failed + failed[i]
  end
  if total_calls >= min_calls and total_failed >= failure_rate * total_calls then
    return open(cooldown, plural(total_failed, 'failure') .. ' in ' .. plural(total_calls, 'call')
      .. ' within ' .. string.format('%g', window) .. ' s')
  end
end
local write = {'s', 0, 'k', consecutive, 'e', epoch}
for i = 0, 9 do
  write[#write + 1] = 'c' .. i
  write[#write + 1] = calls[i]
  write[#write + 1] = 'f' .. i
  write[#write + 1] = failed[i]
end
redis.call('HSET', h, unpack(write))
keep(0)
return result
""",
)

# Frees the newest probe lease of a half-open circuit.
BREAKER_RELEASE: Final = script(
    "breaker.release",
    _BREAKER
    + """
if tonumber(redis.call('HGET', h, 's')) == 2 then redis.call('ZPOPMAX', z) end
return 1
""",
)


# --- budgets (reserve and settle; see relaykit.stores.budget) -----------------------------------
# KEYS[1] one budget window's spend in dollars (absent: nothing spent). Its expiry is the
# window's end (a minute after), set by the caller's wall clock, which placed the call there.

# ARGV: amount, limit, slack, expires_at ms. Returns {granted 0|1, spent}: spent with the
# amount when granted, without it when not.
BUDGET_RESERVE: Final = script(
    "budget.reserve",
    """
local spent = tonumber(redis.call('GET', KEYS[1])) or 0
if spent + tonumber(ARGV[1]) > tonumber(ARGV[2]) + tonumber(ARGV[3]) then
  return {0, fmt(spent)}
end
local total = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
return {1, total}
""",
)

# ARGV: amount (negative gives back), expires_at ms. Never below zero; never checked against
# the limit: the money is spent either way.
BUDGET_SETTLE: Final = script(
    "budget.settle",
    """
local total = tonumber(redis.call('INCRBYFLOAT', KEYS[1], ARGV[1]))
if total < 0 then redis.call('SET', KEYS[1], '0') end
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
""",
)
