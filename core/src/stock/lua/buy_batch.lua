-- buy_batch.lua — Seckill.Buy: N buy decisions of one sale in one shard, in one atomic step,
-- exactly as N single buys one after the other in the order given (a batch of one is the
-- single buy: the warehouse sends that when batching is off).
--
-- KEYS[1]  the sale's hash            ({sku:ID}:ev:EID)
-- KEYS[2]  units counted per user     ({sku:ID}:ev:EID:users: won, or held now; see put_event)
-- KEYS[3]  the sale's request ids     ({sku:ID}:ev:EID:req: "user\31request" → QTY or QTY:ORDER)
-- KEYS[4]  stock hash of the SKU      ({sku:ID}:stock)
-- KEYS[5]  the SKU's orders           ({sku:ID}:orderbook: order number → record, see below)
-- KEYS[6]  the SKU's order stream     ({sku:ID}:orders)
-- ARGV[1]  event id   ARGV[2] sub-pools of the sale (1: one pool)   ARGV[3] this shard's sub-pool
-- ARGV[4..7] the first buy: user id, qty, request id, now (unix ms); then 4 more per buy, in
--          arrival order (at most stock::call::BUY_BATCH_MAX buys)
--
-- On a sale split in sub-pools every key is the buyer's home sub-pool's ({sku:ID:SUB}); the
-- order number is then on the sub-pool's track: EID-((seq-1)*subpools + sub + 1).
--
-- Per buy, the order of checks: the request id (asked before for another quantity in this sale:
-- REUSED; already won: DUPLICATE, the same order, nothing taken), then the window, then the
-- per-user limit, then the pool; only then does anything change. A request id's scope is the
-- sale: its entry records the quantity it first asked for (even when it won nothing, so the same
-- buy is decided again and another quantity is refused) and the order it won. A user or a request
-- id twice in one batch sees what the earlier buy of the batch did.
-- The batch reads the sale, the users' counts and the request entries once (HMGET each) and
-- writes each hash once; each win is one XADD. The order record is the fields of stock::record
-- joined by \31 (no JSON): event sku user qty status deadline created amount currency payment
-- paid; the win on the stream carries the order number, its amount and currency.
--
-- Replies: 3 per buy, in order: {outcome, detail, remaining}; outcome is QUEUED or DUPLICATE
-- (detail: the order number), REUSED (detail: the quantity the request id first asked for),
-- SOLD_OUT, LIMIT_REACHED, NOT_STARTED, ENDED or UNKNOWN_EVENT (detail "").
-- Example: pool 2, limit 1, one batch [u1 r1 qty 1, u1 r1 qty 1, u1 r2 qty 1, u2 r3 qty 1,
-- u3 r4 qty 1, u2 r3 qty 2] → {"QUEUED","7-1","1", "DUPLICATE","7-1","1", "LIMIT_REACHED","","1",
-- "QUEUED","7-2","0", "SOLD_OUT","","0", "REUSED","1","0"}; req then holds u1 r1 → "1:7-1",
-- u1 r2 → "1", u2 r3 → "1:7-2", u3 r4 → "1". With price 1999 EUR, order 7-1's record is
-- "7\31SKU\31u1\311\31QUEUED\310\31NOW\311999\31EUR\31\31".
assert(#KEYS == 6 and #ARGV >= 7 and (#ARGV - 3) % 4 == 0, 'buy_batch.lua: 6 KEYS, 3 + 4n ARGV')
local n = (#ARGV - 3) / 4
local out = {}
local ev = redis.call('HMGET', KEYS[1], 'pool', 'start', 'end', 'limit', 'closed', 'sku', 'price',
  'currency', 'seq')
if not ev[6] then
  for i = 1, n do
    out[3 * i - 2], out[3 * i - 1], out[3 * i] = 'UNKNOWN_EVENT', '', '0'
  end
  return out
end
local pool, start, stop, limit = tonumber(ev[1]), tonumber(ev[2]), tonumber(ev[3]), tonumber(ev[4])
local closed, price, seq = ev[5] == '1', tonumber(ev[7]), tonumber(ev[9] or '0')
local subpools, sub = tonumber(ARGV[2]), tonumber(ARGV[3])
local fields, users = {}, {}
for i = 1, n do
  local b = 4 * i
  users[i] = ARGV[b]
  fields[i] = ARGV[b] .. '\31' .. ARGV[b + 2]
end
local entries = redis.call('HMGET', KEYS[3], unpack(fields))
local counts = redis.call('HMGET', KEYS[2], unpack(users))
-- What the batch has seen and done so far, by request field and by user.
local req, held, req_dirty, held_dirty = {}, {}, {}, {}
for i = 1, n do
  if req[fields[i]] == nil then req[fields[i]] = entries[i] or false end
  if held[users[i]] == nil then held[users[i]] = tonumber(counts[i] or '0') end
end
local records, taken = {}, 0
for i = 1, n do
  local b = 4 * i
  local who, asked, field, at = users[i], ARGV[b + 1], fields[i], tonumber(ARGV[b + 3])
  local want = tonumber(asked)
  local entry = req[field]
  local outcome, detail = nil, ''
  if entry then
    local named, won = string.match(entry, '^(%d+):?(.*)$')
    if named ~= asked then
      outcome, detail = 'REUSED', named
    elseif won ~= '' then
      outcome, detail = 'DUPLICATE', won
    end
  end
  if not outcome then
    if at < start then
      outcome = 'NOT_STARTED'
    elseif closed or at >= stop then
      outcome = 'ENDED'
    elseif held[who] + want > limit then
      outcome = 'LIMIT_REACHED'
    elseif pool < want then
      outcome = 'SOLD_OUT'
    else
      outcome = 'QUEUED'
      pool, taken, seq = pool - want, taken + want, seq + 1
      held[who] = held[who] + want
      held_dirty[#held_dirty + 1] = who
      detail = ARGV[1] .. '-' .. string.format('%d', (seq - 1) * subpools + sub + 1)
      local event, sku, user, qty, status, deadline, created = ARGV[1], ev[6], who, asked,
        'QUEUED', '0', ARGV[b + 3]
      local amount, currency, payment, paid = string.format('%d', want * price), ev[8], '', ''
      records[#records + 1] = detail
      records[#records + 1] = table.concat({event, sku, user, qty, status, deadline, created, amount, currency, payment, paid}, '\31')
      redis.call('XADD', KEYS[6], '*', 'order', detail, 'amount', amount, 'currency', currency)
    end
    if outcome == 'QUEUED' then
      req[field] = asked .. ':' .. detail
      req_dirty[#req_dirty + 1] = field
    elseif not entry then
      req[field] = asked
      req_dirty[#req_dirty + 1] = field
    end
  end
  out[3 * i - 2], out[3 * i - 1], out[3 * i] = outcome, detail, string.format('%d', pool)
end
-- One write per hash touched (a field named twice is written twice with its last value).
if taken > 0 then
  redis.call('HSET', KEYS[1], 'pool', string.format('%d', pool), 'seq', string.format('%d', seq))
  redis.call('HINCRBY', KEYS[4], 'locked', taken)
  redis.call('HSET', KEYS[5], unpack(records))
  local w = {}
  for _, who in ipairs(held_dirty) do
    w[#w + 1] = who
    w[#w + 1] = string.format('%d', held[who])
  end
  redis.call('HSET', KEYS[2], unpack(w))
end
if #req_dirty > 0 then
  local w = {}
  for _, field in ipairs(req_dirty) do
    w[#w + 1] = field
    w[#w + 1] = req[field]
  end
  redis.call('HSET', KEYS[3], unpack(w))
end
return out
