"""The Lua scripts of :class:`~dspyq.resilience.ratelimit.RateLimiter`: each decision,
correction and reading of the limiter is one script, atomic across processes and timed
by Redis's clock (``TIME``). See :mod:`dspyq.resilience.ratelimit` for the algorithm.
"""

from __future__ import annotations

__all__ = ["ACQUIRE", "ADJUST", "RELEASE", "USAGE"]

# Shared Lua: the Redis server time (``now``, in microseconds), and a function that drops token
# entries older than a minute and returns the budget in use.
# Members of the token log are "<time>:<seq>:<amount>"; the running sum lives in the
# meta hash (field "tokens") so a decision does not have to add up the whole log.
_PRELUDE = """
local function amount(member)
  return tonumber(string.match(member, ':(%-?%d+)$'))
end
local function trim_tokens(tokens_key, meta_key, now)
  local cutoff = now - 60000000
  local expired = redis.call('ZRANGEBYSCORE', tokens_key, '-inf', cutoff)
  if #expired > 0 then
    local gone = 0
    for _, member in ipairs(expired) do gone = gone + amount(member) end
    redis.call('ZREMRANGEBYSCORE', tokens_key, '-inf', cutoff)
    redis.call('HINCRBY', meta_key, 'tokens', -gone)
  end
  if redis.call('ZCARD', tokens_key) == 0 then
    -- HDEL, not HSET: a refused call must not create a key without a TTL.
    redis.call('HDEL', meta_key, 'tokens')
    return 0
  end
  return tonumber(redis.call('HGET', meta_key, 'tokens') or '0')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

# KEYS: requests log, tokens log, meta hash (its field "last" is the last grant time).
# ARGV: limit, period_us, token budget (0 = none), tokens, ttl_ms, spacing_us.
# Returns {wait_us, now_us, seq}; wait_us == 0 means granted (and recorded as the
# member "<now_us>:<seq>", seq 0 when refused).
ACQUIRE = (
    _PRELUDE
    + """
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local spacing = tonumber(ARGV[6])

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
local wait = 0
local count = redis.call('ZCARD', KEYS[1])
if count >= limit then
  -- The request fits once enough of the oldest grants have left the window.
  local idx = count - limit
  local entry = redis.call('ZRANGE', KEYS[1], idx, idx, 'WITHSCORES')
  wait = tonumber(entry[2]) + period - now
end

-- Grants at least `spacing` apart: no burst at the window's edge.
local last = redis.call('HGET', KEYS[3], 'last')
if last then
  local spacing_wait = tonumber(last) + spacing - now
  if spacing_wait > wait then wait = spacing_wait end
end

if budget > 0 then
  local used = trim_tokens(KEYS[2], KEYS[3], now)
  -- Every request spends at least one token, even without an estimate.
  local need = used + math.max(tokens, 1) - budget
  if need > 0 then
    local token_wait = 60000000
    local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
    local freed = 0
    for i = 1, #entries, 2 do
      freed = freed + amount(entries[i])
      if freed >= need then
        token_wait = tonumber(entries[i + 1]) + 60000000 - now
        break
      end
    end
    if token_wait > wait then wait = token_wait end
  end
end

if wait > 0 then
  return {math.max(math.ceil(wait), 1), now, 0}
end

local seq = redis.call('HINCRBY', KEYS[3], 'seq', 1)
redis.call('ZADD', KEYS[1], now, string.format('%d', now) .. ':' .. seq)
redis.call('HSET', KEYS[3], 'last', string.format('%d', now))
redis.call('PEXPIRE', KEYS[1], ttl)
if budget > 0 and tokens > 0 then
  redis.call('ZADD', KEYS[2], now, string.format('%d', now) .. ':' .. seq .. ':' .. tokens)
  redis.call('HINCRBY', KEYS[3], 'tokens', tokens)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
redis.call('PEXPIRE', KEYS[3], ttl)
return {0, now, seq}
"""
)

# KEYS: requests log, tokens log, meta hash. ARGV: the grant's member, its tokens.
# Takes back a grant whose request was not made. The spacing after it stays: the next
# grant may come a little later than it could have, never sooner. Returns 1 if the
# grant was still in the log.
RELEASE = """
local gone = redis.call('ZREM', KEYS[1], ARGV[1])
local tokens = tonumber(ARGV[2])
if gone == 1 and tokens > 0 then
  if redis.call('ZREM', KEYS[2], ARGV[1] .. ':' .. ARGV[2]) == 1 then
    redis.call('HINCRBY', KEYS[3], 'tokens', -tokens)
  end
end
return gone
"""

# KEYS: tokens log, meta hash. ARGV: delta, ttl_ms. Returns the budget in use.
# More tokens than estimated are recorded now (they expire later than the real
# spend did: conservative). Fewer are taken back from the OLDEST entries, which
# expire no later than the estimate being corrected, so the log never under-counts.
ADJUST = (
    _PRELUDE
    + """
local delta = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local used = trim_tokens(KEYS[1], KEYS[2], now)
if delta > 0 then
  local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
  redis.call('ZADD', KEYS[1], now, string.format('%d', now) .. ':' .. seq .. ':' .. delta)
  used = redis.call('HINCRBY', KEYS[2], 'tokens', delta)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
elseif delta < 0 then
  local refund = -delta
  local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  local taken = 0
  for i = 1, #entries, 2 do
    if refund <= 0 then break end
    local member = entries[i]
    local have = amount(member)
    local take = math.min(have, refund)
    redis.call('ZREM', KEYS[1], member)
    if have > take then
      local head = string.match(member, '^(.*):%-?%d+$')
      redis.call('ZADD', KEYS[1], entries[i + 1], head .. ':' .. (have - take))
    end
    refund = refund - take
    taken = taken + take
  end
  if taken > 0 then used = redis.call('HINCRBY', KEYS[2], 'tokens', -taken) end
end
return used
"""
)

# KEYS: requests log, tokens log, meta hash. ARGV: period_us, track tokens (0/1).
# Returns {requests in window, tokens in window, now_us}.
USAGE = (
    _PRELUDE
    + """
local count = redis.call('ZCOUNT', KEYS[1], '(' .. (now - tonumber(ARGV[1])), '+inf')
local used = 0
if ARGV[2] == '1' then used = trim_tokens(KEYS[2], KEYS[3], now) end
return {count, used, now}
"""
)
