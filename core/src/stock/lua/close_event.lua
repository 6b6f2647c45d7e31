-- close_event.lua — the sweeper at a sale's end, in one shard: what is left in the pool returns
-- to available; then, once every order of the sale in this shard is final, the shard marks the
-- sale `retired`.
--
-- KEYS[1]  the sale's hash         ({sku:ID}:ev:EID)
-- KEYS[2]  stock hash of the SKU   ({sku:ID}:stock)
-- KEYS[3]  the shard's orders      ({sku:ID}:orderbook)
-- ARGV[1]  now (unix ms)   ARGV[2] event id   ARGV[3] sub-pools of the sale   ARGV[4] this
-- shard's sub-pool number   ARGV[5] orders examined at most per call (bounds the script's time)
--
-- Retiring: a closed sale takes no buy and cannot be redefined, so its `seq` is final, and
-- PAID, CANCELLED and EXPIRED never change again. So a cursor (`final_upto` in the sale's hash)
-- walks the sale's order numbers on this shard's track (EID-((k-1)*subpools+sub+1), k = 1…seq)
-- past final orders only, at most ARGV[5] per call, stopping at the first order still QUEUED
-- or awaiting payment; once it reaches seq the sale is marked `retired` 1 here. The caller
-- retires it from the lists (each shard's set of sales, the live directory) once every shard
-- has marked it, all at once, so a split sale never has some shards listed and others not.
--
-- Replies: {"CLOSED", units returned} | {"OPEN", ""} (not ended yet) | {"ALREADY", ""} (closed,
--          an order still live) | {"RETIRED", seq, units returned by this call or ""}
-- Example: end 5000, pool 3, orders 7-1 PAID and 7-2 PENDING_PAYMENT: at 4000 → {"OPEN",""};
-- at 5000 → {"CLOSED","3"}; again → {"ALREADY",""} (final_upto 1); 7-2 expired → {"RETIRED","2",""}.
assert(#KEYS == 3 and #ARGV == 5, 'close_event.lua: 3 KEYS, 5 ARGV')
local sale = redis.call('HMGET', KEYS[1], 'end', 'closed', 'pool', 'seq', 'final_upto', 'retired')
if not sale[1] then
  return {'ALREADY', ''}
end
if sale[6] == '1' then
  return {'RETIRED', sale[4] or '0', ''}
end
local reply = {'ALREADY', ''}
if sale[2] ~= '1' then
  if tonumber(ARGV[1]) < tonumber(sale[1]) then
    return {'OPEN', ''}
  end
  redis.call('HSET', KEYS[1], 'pool', 0, 'closed', 1)
  redis.call('HINCRBY', KEYS[2], 'available', tonumber(sale[3]))
  reply = {'CLOSED', sale[3]}
end
local final = {PAID = true, CANCELLED = true, EXPIRED = true}
local seq, upto = tonumber(sale[4] or '0'), tonumber(sale[5] or '0')
local subpools, sub = tonumber(ARGV[3]), tonumber(ARGV[4])
local last = math.min(seq, upto + tonumber(ARGV[5]))
while upto < last do
  local order_no = ARGV[2] .. '-' .. string.format('%d', upto * subpools + sub + 1)
  local raw = redis.call('HGET', KEYS[3], order_no)
  if raw then
    local event, sku, user, qty, status, deadline, created, amount, currency, payment, paid =
      string.match(raw, '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)$')
    assert(event, 'order ' .. order_no .. ': not an order record')
    if not final[status] then
      break
    end
  end
  upto = upto + 1
end
if upto ~= tonumber(sale[5] or '0') then
  redis.call('HSET', KEYS[1], 'final_upto', upto)
end
if upto < seq then
  return reply
end
redis.call('HSET', KEYS[1], 'retired', 1)
return {'RETIRED', string.format('%d', seq), reply[1] == 'CLOSED' and reply[2] or ''}
