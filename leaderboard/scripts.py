"""Lua scripts, each one atomic round trip to Redis.

Entries are sorted-set members `TTTTTTTTTTTTTplayer`: a 13-digit tiebreak then the player id.
For descending boards the tiebreak is 9999999999999 minus the time in ms the score was
reached, for ascending boards the time itself, so that among equal scores whoever reached
the score first ranks first under Redis' byte order of members.
"""

# Shared by the scripts: rank order in both directions, and member comparison by bytes
# (Lua's `<` on strings follows the server's locale; sorted sets compare with memcmp).
_COMMON = """
local desc = ARGV[1] == 'desc'
local function rank(z, m)
  if desc then return redis.call('ZREVRANK', z, m) end
  return redis.call('ZRANK', z, m)
end
local function range(z, a, b)
  if desc then return redis.call('ZRANGE', z, a, b, 'REV', 'WITHSCORES') end
  return redis.call('ZRANGE', z, a, b, 'WITHSCORES')
end
-- {start rank, {member, score, ...}, {metadata or false, ...}} for ranks a..b
local function page(z, meta, a, b)
  local res = range(z, a, b)
  local metas = {}
  for i = 1, #res, 2 do
    metas[#metas + 1] = redis.call('HGET', meta, string.sub(res[i], 14))
  end
  return {a, res, metas}
end
local function bytes_lt(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
"""

# KEYS: meta, periods-set, then (zset, index) per period.
# ARGV: order, op, now_ms, nperiods, limit, then (period id, expire-at) per period, then
#       groups, each a count n followed by n (player, score, metadata-or-empty).
# Each group is one request, run after the one before it as if it were a call of its own:
# planned in full, then written, then ranked. Replies, one per group: {score, rank} per
# entry and period, or the string 'RANGE <player>' for a group that wrote nothing because
# a total would leave the score range.
# A period's keys get their expiry (and its id goes in the periods set) only when an entry
# new to that period is written, as only then can the keys have just been created: most
# submits update players already on the board and skip those calls.
SUBMIT = _COMMON + """
local op, now, np, limit = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local tb = now
if desc then tb = 9999999999999 - now end
local prefix = string.format('%013d', tb)
local fresh = {}  -- periods that got an entry new to them
-- Flat arrays rather than a table per entry: making tables is most of a small call's cost,
-- and one made with room for 8 does not grow for a single submit.
local function group(first, last)
  -- plan: z, idx, player, old, text, member, period of each write;
  -- res: member, score text of each (entry, period)
  local plan, n = {nil, nil, nil, nil, nil, nil, nil, nil}, 0
  local res, r = {nil, nil, nil, nil, nil, nil, nil, nil}, 0
  local changed_all = {}
  for e = first, last, 3 do
    local player, score = ARGV[e], tonumber(ARGV[e + 1])
    for p = 1, np do
      local z, idx = KEYS[1 + 2 * p], KEYS[2 + 2 * p]
      local old = redis.call('HGET', idx, player)
      local new, write, raw = score, true, nil
      if old then
        raw = redis.call('ZSCORE', z, old)
        if not raw then old = false end  -- an index entry without its member: write anew
      end
      if old then
        local prev = tonumber(raw)
        if op == 'incr' then
          new = prev + score
        elseif op == 'best' and ((desc and score <= prev) or (not desc and score >= prev)) then
          write = false
        end
        if new == prev then write = false end
      end
      if write and (new > limit or new < -limit) then return 'RANGE ' .. player end
      if write then
        local text, member = string.format('%.17g', new), prefix .. player
        plan[n + 1], plan[n + 2], plan[n + 3], plan[n + 4] = z, idx, player, old
        plan[n + 5], plan[n + 6], plan[n + 7] = text, member, p
        n = n + 7
        res[r + 1], res[r + 2] = member, text
        if p == 1 then changed_all[player] = true end
      else
        res[r + 1], res[r + 2] = old, raw
      end
      r = r + 2
    end
  end
  for i = 1, n, 7 do
    if plan[i + 3] then redis.call('ZREM', plan[i], plan[i + 3]) else fresh[plan[i + 6]] = true end
    redis.call('ZADD', plan[i], plan[i + 4], plan[i + 5])
    redis.call('HSET', plan[i + 1], plan[i + 2], plan[i + 5])
  end
  local out, k = {nil, nil, nil, nil, nil, nil, nil, nil}, 0
  for e = first, last, 3 do
    if ARGV[e + 2] ~= '' and changed_all[ARGV[e]] then
      redis.call('HSET', KEYS[1], ARGV[e], ARGV[e + 2])
    end
    for p = 1, np do
      out[k + 1], out[k + 2] = res[k + 2], rank(KEYS[1 + 2 * p], res[k + 1]) + 1
      k = k + 2
    end
  end
  return out
end
local replies = {}
local a = 6 + 2 * np
while a <= #ARGV do
  local last = a + 3 * tonumber(ARGV[a])
  replies[#replies + 1] = group(a + 1, last)
  a = last + 1
end
for p = 1, np do
  if fresh[p] then
    redis.call('SADD', KEYS[2], ARGV[4 + 2 * p])
    local at = tonumber(ARGV[5 + 2 * p])
    if at > 0 then
      redis.call('EXPIREAT', KEYS[1 + 2 * p], at)
      redis.call('EXPIREAT', KEYS[2 + 2 * p], at)
    end
  end
end
return replies
"""

# KEYS: zset, meta. ARGV: order, limit, cursor score ('' for the first page), cursor member.
# Returns the page after the cursor's position, wherever the cursor's own entry has moved
# since, as `page` gives it.
PAGE = _COMMON + """
local z, limit = KEYS[1], tonumber(ARGV[2])
local start = 0
if ARGV[3] ~= '' then
  local s, m = ARGV[3], ARGV[4]
  local lo
  if desc then lo = redis.call('ZCOUNT', z, '(' .. s, '+inf')
  else lo = redis.call('ZCOUNT', z, '-inf', '(' .. s) end
  local hi = lo + redis.call('ZCOUNT', z, s, s)
  -- Binary search the tied entries for the first one ranked after the cursor member.
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local mm = range(z, mid, mid)[1]
    local after
    if desc then after = bytes_lt(mm, m) else after = bytes_lt(m, mm) end
    if after then hi = mid else lo = mid + 1 end
  end
  start = lo
end
return page(z, KEYS[2], start, start + limit - 1)
"""

# KEYS: zset, index, meta. ARGV: order, player, n. Returns the player's entry and n either
# side as `page` gives it, or an empty list when the player has no entry.
AROUND = _COMMON + """
local m = redis.call('HGET', KEYS[2], ARGV[2])
if not m then return {} end
local r = rank(KEYS[1], m)
if not r then return {} end
local n = tonumber(ARGV[3])
return page(KEYS[1], KEYS[3], math.max(0, r - n), r + n)
"""

# KEYS: zset, index. ARGV: order, players... Returns {score or false, rank or false, ...}.
RANKS = _COMMON + """
local out = {}
for i = 2, #ARGV do
  local m = redis.call('HGET', KEYS[2], ARGV[i])
  local r = m and rank(KEYS[1], m)
  if r then
    out[#out + 1] = redis.call('ZSCORE', KEYS[1], m)
    out[#out + 1] = r + 1
  else
    out[#out + 1] = false
    out[#out + 1] = false
  end
end
return out
"""

# KEYS: meta, then (zset, index) per period. ARGV: order, player. Returns how many periods held it.
REMOVE = _COMMON + """
local player, removed = ARGV[2], 0
redis.call('HDEL', KEYS[1], player)
for k = 2, #KEYS, 2 do
  local m = redis.call('HGET', KEYS[k + 1], player)
  if m then
    redis.call('ZREM', KEYS[k], m)
    redis.call('HDEL', KEYS[k + 1], player)
    removed = removed + 1
  end
end
return removed
"""

# KEYS: config, all-time zset. ARGV: the settings (JSON). Sets them, unless order or operator
# would change on a board with entries: then writes nothing and answers 'ENTRIES'. Answers 1
# when the board is new, else 0.
PUT_BOARD = """
local old = redis.call('GET', KEYS[1])
if old then
  local was, new = cjson.decode(old), cjson.decode(ARGV[1])
  if (was.order ~= new.order or was.operator ~= new.operator)
      and redis.call('EXISTS', KEYS[2]) == 1 then
    return 'ENTRIES'
  end
end
redis.call('SET', KEYS[1], ARGV[1])
if old then return 0 end
return 1
"""


def once(body: str) -> str:
    """The script `body` run once per Idempotency-Key. KEYS: the key's record, then the
    body's keys. ARGV: the record's life (ms), the request's fingerprint, then the body's
    arguments. A key seen before answers {'SEEN', msgpack [fingerprint, reply]} and writes
    nothing; else the body runs and its reply is kept under the key, in the same script, so
    a write that lands is always recorded with it (also when the caller timed out and never
    saw the reply)."""
    return """
local record = table.remove(KEYS, 1)
local life = table.remove(ARGV, 1)
local fingerprint = table.remove(ARGV, 1)
local seen = redis.call('GET', record)
if seen then return {'SEEN', seen} end
local function body()
""" + body + """
end
local reply = body()
redis.call('SET', record, cmsgpack.pack({fingerprint, reply}), 'PX', life)
return reply
"""


SUBMIT_ONCE = once(SUBMIT)
PUT_BOARD_ONCE = once(PUT_BOARD)
REMOVE_ONCE = once(REMOVE)
