/**
 * Lua scripts of the Redis state store. Each runs atomically on the server and reads the server's
 * clock (`TIME`), so every process and machine counts windows and leases on one clock.
 *
 * Layouts: a window is a sorted set of `<reservation>|<amount>` members scored by time, plus a
 * `:sum` counter of their amounts; a slot set holds reservation ids scored by lease expiry.
 */

const NOW = `
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
`;

/** Drops a window's expired entries and returns its current total. */
const PRUNE = `
local function prune(wkey, skey, windowMs)
  local expired = redis.call('ZRANGEBYSCORE', wkey, '-inf', now - windowMs)
  if #expired > 0 then
    local freed = 0
    for _, member in ipairs(expired) do freed = freed + tonumber(string.match(member, '|(%d+)$')) end
    redis.call('ZREMRANGEBYSCORE', wkey, '-inf', now - windowMs)
    redis.call('DECRBY', skey, freed)
  end
  return tonumber(redis.call('GET', skey) or '0')
end
`;

/**
 * KEYS: the plan's keys. ARGV[1] reservation id, ARGV[2] tokens, ARGV[3] lease ms, ARGV[4] layout
 * (JSON: `[{slot, max}]` or `[{window, sum, unit, limit, windowMs}]` with 1-based KEYS indexes),
 * ARGV[5] the arrival margin: window entries count from now plus it.
 * Returns `{1, now}` when it took room everywhere, or `{0, retryAfterMs}` having taken nothing: for a
 * window, the earliest its room can free (an unanswered request's entry leaves no earlier than a window
 * from now); for a slot, a short poll (a release may come at any moment).
 */
export const RESERVE = `${NOW}${PRUNE}
local id = ARGV[1]
local tokens = tonumber(ARGV[2])
local leaseMs = tonumber(ARGV[3])
local layout = cjson.decode(ARGV[4])
local countFrom = now + tonumber(ARGV[5])
-- The amount each window part counts for this request.
for _, part in ipairs(layout) do
  if not part.slot then
    part.amount = 1
    if part.unit == 'tokens' then part.amount = math.min(tokens, part.limit) end
  end
end
-- Run before under this id: the client sent it again, its reply lost with a connection that
-- dropped (ioredis resends what was not answered). The script took room everywhere or nowhere,
-- so its entry in any part says it was admitted; counting it again would refuse the request by
-- its own entry, or count it twice.
for _, part in ipairs(layout) do
  if part.slot then
    if redis.call('ZSCORE', KEYS[part.slot], id) then return {1, now} end
  elseif redis.call('ZSCORE', KEYS[part.window], id .. '|' .. part.amount) then
    return {1, now}
  end
end
local refused = false
local retry = 0
for _, part in ipairs(layout) do
  if part.slot then
    local slots = KEYS[part.slot]
    redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
    if redis.call('ZCARD', slots) >= part.max then
      refused = true
      -- A release frees a slot at any moment; poll soon rather than wait for a lease to expire.
      retry = math.max(retry, 25)
    end
  else
    local wkey = KEYS[part.window]
    local skey = KEYS[part.sum]
    local total = prune(wkey, skey, part.windowMs)
    local amount = part.amount
    if total > 0 and total + amount > part.limit then
      refused = true
      local entries = redis.call('ZRANGE', wkey, 0, -1, 'WITHSCORES')
      local freed = 0
      local at = now + part.windowMs
      for k = 1, #entries, 2 do
        freed = freed + tonumber(string.match(entries[k], '|(%d+)$'))
        local left = total - freed
        if left == 0 or left + amount <= part.limit then
          -- An entry scored ahead of now is a request not yet answered (its score is the arrival or
          -- send margin): its first byte will count it from no earlier than now. Its score would put
          -- the retry up to that margin past the moment its room can free, with no other wake-up
          -- across processes.
          at = math.min(tonumber(entries[k + 1]), now) + part.windowMs
          break
        end
      end
      retry = math.max(retry, at - now, 1)
    end
  end
end
if refused then return {0, retry} end
for _, part in ipairs(layout) do
  if part.slot then
    redis.call('ZADD', KEYS[part.slot], now + leaseMs, id)
    redis.call('PEXPIRE', KEYS[part.slot], leaseMs * 2)
  else
    if redis.call('ZADD', KEYS[part.window], countFrom, id .. '|' .. part.amount) == 1 then
      redis.call('INCRBY', KEYS[part.sum], part.amount)
    end
    redis.call('PEXPIRE', KEYS[part.window], part.windowMs * 2)
    redis.call('PEXPIRE', KEYS[part.sum], part.windowMs * 2)
  end
end
return {1, now}
`;

/**
 * Moves a reservation's window entries back to now (its first response byte) if that is earlier
 * than the margin assumed, and optionally resizes
 * its entries. KEYS: window, sum pairs. ARGV[1] id, ARGV[2] JSON `[{unit, amount, windowMs, resize?}]`
 * aligned with the pairs, ARGV[3] `1` to move the entries back, or `2` to set them (the send:
 * later too, and an entry pruned meanwhile counts again), ARGV[4] to now plus this many ms (the
 * send margin; 0 for a first response byte).
 */
export const ADJUST = `${NOW}
local id = ARGV[1]
local parts = cjson.decode(ARGV[2])
local touch = ARGV[3] == '1'
local retime = ARGV[3] == '2'
local touchTo = now + tonumber(ARGV[4] or '0')
for index, part in ipairs(parts) do
  local wkey = KEYS[index * 2 - 1]
  local skey = KEYS[index * 2]
  local member = id .. '|' .. part.amount
  local score = redis.call('ZSCORE', wkey, member)
  if retime then
    -- The send: the entry counts from it, later or earlier than the admission's guess; one pruned on the guess counts again.
    if not score then redis.call('INCRBY', skey, part.amount) end
    redis.call('ZADD', wkey, touchTo, member)
    -- The keys live until the entry has left its window.
    local ttl = touchTo - now + part.windowMs * 2
    if redis.call('PTTL', wkey) < ttl then redis.call('PEXPIRE', wkey, ttl) end
    if redis.call('PTTL', skey) < ttl then redis.call('PEXPIRE', skey, ttl) end
  elseif score then
    local amount = part.amount
    if part.resize then amount = part.resize end
    if amount ~= part.amount then
      redis.call('ZREM', wkey, member)
      redis.call('INCRBY', skey, amount - part.amount)
    end
    if touch then score = math.min(tonumber(score), touchTo) end
    redis.call('ZADD', wkey, score, id .. '|' .. amount)
  end
end
return 1
`;

/**
 * Extends the leases of held slots, and puts back those Redis lost (a restart, an outage longer
 * than the lease) or never had (slots taken while it was down): the requests are in flight, so
 * their slots must count. KEYS: slot sets. ARGV[1] lease ms, ARGV[2..] reservation ids per key.
 */
export const RENEW = `${NOW}
local leaseMs = tonumber(ARGV[1])
for index, slots in ipairs(KEYS) do
  redis.call('ZADD', slots, now + leaseMs, ARGV[index + 1])
  redis.call('PEXPIRE', slots, leaseMs * 2)
end
return 1
`;

/**
 * Counts in their windows a process's sends that Redis missed (admitted while it was down, or lost
 * with a restart), each from Redis's now less its age, unless it is there already (under any of
 * its names: a reconciled entry is renamed) or has left its window. KEYS: window, sum pairs.
 * ARGV[1] JSON `[{members, amount, windowMs, ageMs}]` aligned with the pairs; the last name is the current one.
 */
export const BACKFILL = `${NOW}
local parts = cjson.decode(ARGV[1])
for index, part in ipairs(parts) do
  local wkey = KEYS[index * 2 - 1]
  local skey = KEYS[index * 2]
  local at = now - part.ageMs
  local present = false
  for _, member in ipairs(part.members) do
    if redis.call('ZSCORE', wkey, member) then present = true end
  end
  if at + part.windowMs > now and not present then
    redis.call('ZADD', wkey, at, part.members[#part.members])
    redis.call('INCRBY', skey, part.amount)
    local ttl = at - now + part.windowMs * 2
    if redis.call('PTTL', wkey) < ttl then redis.call('PEXPIRE', wkey, ttl) end
    if redis.call('PTTL', skey) < ttl then redis.call('PEXPIRE', skey, ttl) end
  end
end
return 1
`;

/**
 * Starts a learned quota's window with what the server had counted at the 429 (the entries the
 * learning process starts its own with: its sends, and the rest of the count until the reset), each
 * from Redis's now less its age, the oldest first, as far as the window holds fewer: another
 * process's seed from the same burst, or the fleet's sends since, are in it already. Else the
 * window would open whole when the 429's park ends, where the server's frees one entry at a time.
 * KEYS: window, sum. ARGV[1] window ms, ARGV[2] JSON ages in ms (oldest first), ARGV[3] a name
 * prefix unique to this seed.
 */
export const SEED = `${NOW}${PRUNE}
local windowMs = tonumber(ARGV[1])
local ages = cjson.decode(ARGV[2])
local held = prune(KEYS[1], KEYS[2], windowMs)
for index = 1, #ages - held do
  local at = now - ages[index]
  if at + windowMs > now and redis.call('ZADD', KEYS[1], at, ARGV[3] .. '.' .. index .. '|1') == 1 then
    redis.call('INCRBY', KEYS[2], 1)
  end
end
redis.call('PEXPIRE', KEYS[1], windowMs * 2)
redis.call('PEXPIRE', KEYS[2], windowMs * 2)
return 1
`;
