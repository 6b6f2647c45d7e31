-- room_move.lua — Queue.GetQueue and the sweeper: one move of a waiting-room sale's line, and
-- the line as it then stands (what every edge instance caches).
--
-- KEYS[1]  the sale's hash            ({sku:ID}:ev:EID: start end closed pool seq limit)
-- KEYS[2]  the room's hash            ({sku:ID}:room:EID: prequeue factor ttl, and the counters
--                                      admitted opened through opened_through began held_from
--                                      rate_at rate_n rate sold_out)
-- KEYS[3]  the line                   ({sku:ID}:room:EID:places: user → score)
-- KEYS[4]  the open admissions        ({sku:ID}:room:EID:pending: user → lapse time, ms)
-- KEYS[5]  units counted per user     ({sku:ID}:ev:EID:users, as buy_batch.lua keeps it)
-- KEYS[6]  the SKU's orders           ({sku:ID}:orderbook: order number → record)
-- ARGV[1]  event id   ARGV[2] now (unix ms)   ARGV[3] most places admitted, and most opened, by
--          this move (stock::room::MOVE_MAX_ADMITS)   ARGV[4] how long the room's keys outlive
--          the end (ms)   ARGV[5] the rate's window (admission::RATE_WINDOW_MS)
--
-- Two cursors over the line: the first `admitted` places are admitted, and of them the first
-- `opened` have been opened (may mint a link, until their lapse time in KEYS[4]); the places
-- between the two are on standby. Before the end, in this order: open admissions whose deadline
-- has come (lapse time <= now) lapse; open users the sale's per-user hash counts units for have
-- bought and are forgotten (the room never changes buy_batch.lua: it reads what the buy wrote,
-- in the same slot); then, from the start on, the next `admit_factor × remaining − (open +
-- standby)` places of the line (at most ARGV[3]) are admitted (the cursor moves; nothing is
-- written per place), and the first `⌈remaining / per-user limit⌉ − open` standby places
-- (admission::openings, at most ARGV[3]) open: pending until now + ttl. A standby place has no
-- deadline: it waits until a move finds a unit for it and every open admission before it. From
-- the start on (`began`) every new place is an arrival, at the end of the line, so both cursors
-- stay prefixes.
-- `held` is the units of the sale's orders still QUEUED or PENDING_PAYMENT, read from the
-- orderbook from `held_from`, the first order not known final (orders EID-1 … EID-seq: a room
-- sale has one pool); sold out is remaining 0 and held 0, from the start on. The rate is
-- admission::rate_step's over the opened cursor: per second over the last full window, in
-- thousandths. After the end nothing moves; the line is only answered.
--
-- Replies: {"OK", places, drawn, admitted, through, pending (open + standby), remaining, held,
-- sold_out (1|0), rate (thousandths per s), admitted by this move, lapsed by it, found bought by
-- it, opened, opened_through, opened by this move} | {"NOT_FOUND", what} |
-- {"FAILED_PRECONDITION", why}
-- Example: pool 1, factor 2, ttl 30000, line ann (score 5) bob (score 9) cy (2^52), move at the
-- start 1000 → {"OK","3","2","2","9","2","1","0","0","0","2","0","0","1","5","1"}: ann open
-- until 31000, bob on standby; ann buys (users ann 1, pool 0, order 7-1 QUEUED), move at 1500 →
-- {"OK","3","2","2","9","1","0","1","0","0","0","0","1","1","5","0"}: bob waits, cy too; the
-- order is cancelled (pool 1), move at 2000 → bob opens (until 32000) and cy is admitted.
assert(#KEYS == 6 and #ARGV == 5, 'room_move.lua: 6 KEYS, 5 ARGV')
local event, now, most = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local ev = redis.call('HMGET', KEYS[1], 'start', 'end', 'closed', 'pool', 'seq', 'limit')
if not ev[1] then
  return {'NOT_FOUND', 'event ' .. event}
end
local r = redis.call('HMGET', KEYS[2], 'prequeue', 'factor', 'ttl', 'admitted', 'through',
  'began', 'held_from', 'rate_at', 'rate_n', 'rate', 'opened', 'opened_through')
if not r[1] then
  return {'FAILED_PRECONDITION', 'event ' .. event .. ' has no waiting room'}
end
local start, stop = tonumber(ev[1]), tonumber(ev[2])
local pool, seq = tonumber(ev[4]), tonumber(ev[5] or '0')
local ended = ev[3] == '1' or now >= stop
local factor, ttl = tonumber(r[2]), tonumber(r[3])
local admitted, through = tonumber(r[4] or '0'), tonumber(r[5] or '0')
-- A room moved before openings were kept had every admitted place in KEYS[4]: all opened.
local opened = tonumber(r[11] or r[4] or '0')
local opened_through = tonumber(r[12] or r[5] or '0')
local began = r[6] == '1'
local held_from = tonumber(r[7] or '1')
local rate_at, rate_n, rate = tonumber(r[8] or '0'), tonumber(r[9] or '0'), tonumber(r[10] or '0')
local lapsed, bought, admits, opens = 0, 0, 0, 0

-- The units still held by the sale's orders; the cursor moves over the final ones.
local held, final = 0, true
local k = held_from
while k <= seq do
  local last = math.min(seq, k + 499)
  local nos = {}
  for j = k, last do
    nos[#nos + 1] = event .. '-' .. string.format('%d', j)
  end
  local records = redis.call('HMGET', KEYS[6], unpack(nos))
  for i = 1, #nos do
    local rec, holding = records[i], false
    if rec then
      local qty, status = string.match(rec, '^[^\31]*\31[^\31]*\31[^\31]*\31([^\31]*)\31([^\31]*)')
      if status == 'QUEUED' or status == 'PENDING_PAYMENT' then
        holding, held = true, held + tonumber(qty)
      end
    end
    if holding then
      final = false
    elseif final then
      held_from = k + i
    end
  end
  k = last + 1
end

if not ended then
  lapsed = redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  local users = redis.call('ZRANGE', KEYS[4], 0, -1)
  for i = 1, #users, 500 do
    local chunk = {}
    for j = i, math.min(#users, i + 499) do
      chunk[#chunk + 1] = users[j]
    end
    local counts = redis.call('HMGET', KEYS[5], unpack(chunk))
    for j = 1, #chunk do
      if counts[j] and tonumber(counts[j]) > 0 then
        redis.call('ZREM', KEYS[4], chunk[j])
        bought = bought + 1
      end
    end
  end
end
local sold_out = false
if not ended and now >= start then
  began = true
  sold_out = pool == 0 and held == 0
  local open = redis.call('ZCARD', KEYS[4])
  local free = factor * pool - open - (admitted - opened)
  if free > most then
    free = most
  end
  local places = redis.call('ZCARD', KEYS[3])
  if free > places - admitted then
    free = places - admitted
  end
  if free > 0 then
    local last = redis.call('ZRANGE', KEYS[3], admitted + free - 1, admitted + free - 1,
      'WITHSCORES')
    admits, admitted, through = free, admitted + free, tonumber(last[2])
  end
  -- admission::openings: the first standby places, while the open admissions number at most
  -- ⌈pool / per-user limit⌉ (each open buyer then finds a unit whatever the others take).
  local limit = math.max(tonumber(ev[6] or '1'), 1)
  local n = math.min(math.floor((pool + limit - 1) / limit) - open, admitted - opened, most)
  if n > 0 then
    local next = redis.call('ZRANGE', KEYS[3], opened, opened + n - 1, 'WITHSCORES')
    local lapse = string.format('%d', now + ttl)
    local w = {}
    for i = 1, #next, 2 do
      w[#w + 1] = lapse
      w[#w + 1] = next[i]
    end
    redis.call('ZADD', KEYS[4], unpack(w))
    opens = #next / 2
    opened, opened_through = opened + opens, tonumber(next[#next])
  end
  if rate_at == 0 then
    rate_at, rate_n = start, 0
  end
  if now - rate_at >= tonumber(ARGV[5]) then
    rate = math.max(0, math.floor((opened - rate_n) * 1000000 / (now - rate_at)))
    rate_at, rate_n = now, opened
  end
end
local function int(n)
  return string.format('%d', n)
end
redis.call('HSET', KEYS[2], 'admitted', int(admitted), 'through', int(through),
  'opened', int(opened), 'opened_through', int(opened_through), 'began', began and '1' or '0',
  'held_from', int(held_from), 'rate_at', int(rate_at), 'rate_n', int(rate_n), 'rate', int(rate),
  'sold_out', sold_out and '1' or '0')
local expire = stop + tonumber(ARGV[4])
for i = 2, 4 do
  redis.call('PEXPIREAT', KEYS[i], expire)
end
local places = redis.call('ZCARD', KEYS[3])
local drawn = redis.call('ZCOUNT', KEYS[3], '-inf', '(4503599627370496')
local pending = redis.call('ZCARD', KEYS[4]) + admitted - opened
return {'OK', int(places), int(drawn), int(admitted), int(through), int(pending), int(pool),
  int(held), sold_out and '1' or '0', int(rate), int(admits), int(lapsed), int(bought),
  int(opened), int(opened_through), int(opens)}
