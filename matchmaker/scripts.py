"""Lua scripts: each ticket state change is one atomic step on one queue's keys. Those that
take tickets out of waiting publish their ids on `mm:ticket-events` (keys.TICKET_EVENTS).
Every change to the waiting set is also logged in the queue's change stream (entries 0-1,
0-2, ...: `+` a ticket id that started waiting, `-` space-separated ids that stopped), so
the queue's matcher reads what changed instead of every waiting id."""

from matchmaker.keys import CHANGES_KEPT

# Appends one change to the stream KEYS[k]: log(k, '+' or '-', ids). Trimmed to about
# keys.CHANGES_KEPT entries; a matcher further behind reads the waiting set in full.
_LOG = f"""
local function log(k, op, ids)
  redis.call('XADD', KEYS[k], 'MAXLEN', '~', {CHANGES_KEPT}, '0-*', op, ids)
end
"""

# KEYS: ticket, waiting, changes[, idempotency record]. ARGV: ticket id, data JSON,
# created ms, ttl s, max waiting[, record life ms, request fingerprint]. 1 when created, 0
# when the queue is full, 2 when the ticket exists already (an earlier attempt of the same
# keyed request made it, or the call was sent twice): then nothing changes. The record says
# `made` once the ticket is, in the same step.
CREATE = _LOG + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 2 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'status', 'waiting')
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
log(3, '+', ARGV[1])
if KEYS[4] then
  redis.call('SET', KEYS[4], 'made ' .. ARGV[1] .. ' ' .. ARGV[7], 'PX', ARGV[6])
end
return 1
"""

# KEYS: ticket, waiting, changes. ARGV: ticket id, ttl s. Returns the status before the
# call (false when there is no such ticket); only a waiting ticket becomes cancelled.
CANCEL = _LOG + """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'waiting' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled')
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then log(3, '-', ARGV[1]) end
  redis.call('PUBLISH', 'mm:ticket-events', ARGV[1])
end
return status
"""

# KEYS: waiting, match, seating, changes, ticket 1..n. ARGV: match data JSON, match ttl,
# ticket ttl, match id, seat expiry ms ('' when seats are not tracked), then (ticket id,
# seats JSON) per ticket. All tickets still waiting: all become matched, the match is stored
# (and waits in seating until its seats expire), and {} is returned; otherwise nothing changes
# and the ids no longer waiting are returned.
MATCH = _LOG + """
local gone = {}
for i = 6, #ARGV, 2 do
  if not redis.call('ZSCORE', KEYS[1], ARGV[i]) then gone[#gone + 1] = ARGV[i] end
end
if #gone > 0 then return gone end
for i = 6, #ARGV, 2 do
  local t = KEYS[5 + (i - 6) / 2]
  redis.call('HSET', t, 'status', 'matched', 'seats', ARGV[i + 1])
  redis.call('EXPIRE', t, ARGV[3])
  redis.call('ZREM', KEYS[1], ARGV[i])
end
redis.call('HSET', KEYS[2], 'data', ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
if ARGV[5] ~= '' then redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4]) end
local ids = {}
for i = 6, #ARGV, 2 do ids[#ids + 1] = ARGV[i] end
ids = table.concat(ids, ' ')
log(4, '-', ids)
redis.call('PUBLISH', 'mm:ticket-events', ids)
return {}
"""

# KEYS: seating, match, ticket 1..n. ARGV: match id, seats JSON, then (status or '' to keep
# it, no-shows JSON) per ticket. Once per match: 0 when it was released already. Tickets
# are marked only while still `matched` and present (an expired one is not recreated).
RELEASE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HSET', KEYS[2], 'seats', ARGV[2]) end
for i = 3, #ARGV, 2 do
  local t = KEYS[3 + (i - 3) / 2]
  if redis.call('HGET', t, 'status') == 'matched' then
    redis.call('HSET', t, 'no_shows', ARGV[i + 1])
    if ARGV[i] ~= '' then redis.call('HSET', t, 'status', ARGV[i]) end
  end
end
return 1
"""

# KEYS: waiting, changes, ticket 1..n. ARGV: reason, ticket ttl, ticket ids. Waiting
# tickets fail.
FAIL = _LOG + """
local failed = {}
for i = 3, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    if redis.call('EXISTS', KEYS[i]) == 1 then  -- not a record of a status alone
      redis.call('HSET', KEYS[i], 'status', 'failed', 'reason', ARGV[1])
      redis.call('EXPIRE', KEYS[i], ARGV[2])
    end
    failed[#failed + 1] = ARGV[i]
  end
end
if #failed > 0 then
  local ids = table.concat(failed, ' ')
  log(2, '-', ids)
  redis.call('PUBLISH', 'mm:ticket-events', ids)
end
return #failed
"""

# KEYS: changes, waiting. ARGV: after (a change number N of entry 0-N), limit. Returns
# {the latest change's entry id or false, tickets waiting now, up to `limit` entries after
# 0-after as XRANGE gives them}: read together, so the count is that after those changes.
CHANGES = """
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
return {top[1] and top[1][1] or false, redis.call('ZCARD', KEYS[2]),
        redis.call('XRANGE', KEYS[1], '(0-' .. ARGV[1], '+', 'COUNT', ARGV[2])}
"""

# KEYS: tickets. The `data` of each (false for a ticket that is gone).
READ = """
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HGET', KEYS[i], 'data') end
return out
"""

# KEYS: lease. ARGV: owner, ttl ms. 1 when the caller holds the lease (now or already).
LEASE = """
local owner = redis.call('GET', KEYS[1])
if owner == false or owner == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

# KEYS: player. ARGV: expected ticket id ('' for none), new value ('' to delete): a ticket
# id, then a space and the unix ms it was set at (values of older versions: the id alone).
# Compare-and-set of the player's waiting ticket, by its id.
SWAP = """
local now = redis.call('GET', KEYS[1]) or ''
if string.match(now, '^[^ ]*') ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2]) end
return 1
"""

# KEYS: match. ARGV: result JSON, the request's mark (its Idempotency-Key's digest, or a
# random one). Records the result and the mark unless the match has a result, and notes
# that its ratings are to be made (`rating`: results of older versions, without it, were
# rated then). Returns {match data, false} when it recorded it, {match data, the result
# before, its mark, its `rating` note} when there was one; false for no match.
RESULT = """
local data = redis.call('HGET', KEYS[1], 'data')
if not data then return false end
if redis.call('HSETNX', KEYS[1], 'result', ARGV[1]) == 0 then
  local before = redis.call('HMGET', KEYS[1], 'result', 'result_key', 'rating')
  return {data, before[1], before[2] or '', before[3] or ''}
end
redis.call('HSET', KEYS[1], 'result_key', ARGV[2], 'rating', 'once')
return {data, false}
"""

# KEYS: ratings, the match's rated record. ARGV: answer JSON, record life s, n, then n
# players, n expected values ('' for none), n new values. Once per match: when the record
# exists, its answer and nothing written; else writes only when no rating changed since it
# was read, records the answer with them and returns it; 0 when a rating had changed.
RATE = """
local done = redis.call('GET', KEYS[2])
if done then return done end
local n = tonumber(ARGV[3])
for i = 1, n do
  local now = redis.call('HGET', KEYS[1], ARGV[3 + i]) or ''
  if now ~= ARGV[3 + n + i] then return 0 end
end
for i = 1, n do redis.call('HSET', KEYS[1], ARGV[3 + i], ARGV[3 + 2 * n + i]) end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return ARGV[1]
"""

# KEYS: a counter. ARGV: window ms. One more request in a fixed window that starts with the
# first request after the last window ended: {requests in this window, ms until it ends}.
COUNT_IN_WINDOW = """
local n = redis.call('INCR', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {n, left}
"""
