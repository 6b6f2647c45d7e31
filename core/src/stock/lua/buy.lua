-- buy.lua — Seckill.Buy: the whole flash-sale decision in one atomic step.
--
-- KEYS[1]  the sale's hash            ({sku:ID}:ev:EID)
-- KEYS[2]  units counted per user     ({sku:ID}:ev:EID:users: won, or held now; see put_event)
-- KEYS[3]  request id → order number  ({sku:ID}:ev:EID:req)
-- KEYS[4]  stock hash of the SKU      ({sku:ID}:stock)
-- KEYS[5]  the SKU's orders           ({sku:ID}:orderbook: order number → JSON record)
-- KEYS[6]  the SKU's order stream     ({sku:ID}:orders)
-- ARGV[1]  event id   ARGV[2] user id   ARGV[3] qty   ARGV[4] request id   ARGV[5] now (unix ms)
-- ARGV[6]  sub-pools of the sale (1: one pool)   ARGV[7] this shard's sub-pool number (0…)
--
-- On a sale split in sub-pools every key is the buyer's home sub-pool's ({sku:ID:SUB}); the
-- order number is then on the sub-pool's track: EID-((seq-1)*subpools + sub + 1).
--
-- Order of checks: a retried request first (it must answer the same order and take nothing),
-- then the window, then the per-user limit, then the pool; only then does anything change. (That
-- a request id names one sale and quantity is the request registry's check, made before.)
-- The order records its amount, qty × the sale's price now, and so does the win on the stream.
--
-- Replies: {outcome, order number or "", remaining}; outcome is QUEUED, DUPLICATE (a retry:
-- same order number), SOLD_OUT, LIMIT_REACHED, NOT_STARTED, ENDED or UNKNOWN_EVENT.
-- Example: pool 2, limit 1: buy(u1, r1) → {"QUEUED","7-1","1"}; buy(u1, r1) again →
-- {"DUPLICATE","7-1","1"}; buy(u1, r2) → {"LIMIT_REACHED","","1"}; buy(u2, r3) →
-- {"QUEUED","7-2","0"}; buy(u3, r4) → {"SOLD_OUT","","0"}. With price 1999 EUR and qty 1,
-- order 7-1's record has amount "1999", currency "EUR".
assert(#KEYS == 6 and #ARGV == 7, 'buy.lua: 6 KEYS, 7 ARGV')
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'UNKNOWN_EVENT', '', '0'}
end
local ev = redis.call('HMGET', KEYS[1], 'pool', 'start', 'end', 'limit', 'closed', 'sku', 'price',
  'currency')
local pool = tonumber(ev[1])
local request = ARGV[2] .. '\31' .. ARGV[4]
local prior = redis.call('HGET', KEYS[3], request)
if prior then
  return {'DUPLICATE', prior, tostring(pool)}
end
local now = tonumber(ARGV[5])
if now < tonumber(ev[2]) then
  return {'NOT_STARTED', '', tostring(pool)}
end
if ev[5] == '1' or now >= tonumber(ev[3]) then
  return {'ENDED', '', tostring(pool)}
end
local qty = tonumber(ARGV[3])
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
if held + qty > tonumber(ev[4]) then
  return {'LIMIT_REACHED', '', tostring(pool)}
end
if pool < qty then
  return {'SOLD_OUT', '', tostring(pool)}
end
redis.call('HINCRBY', KEYS[1], 'pool', -qty)
redis.call('HINCRBY', KEYS[4], 'locked', qty)
redis.call('HINCRBY', KEYS[2], ARGV[2], qty)
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local subpools, sub = tonumber(ARGV[6]), tonumber(ARGV[7])
local order_no = ARGV[1] .. '-' .. string.format('%d', (seq - 1) * subpools + sub + 1)
redis.call('HSET', KEYS[3], request, order_no)
local amount = string.format('%d', qty * tonumber(ev[7]))
redis.call('HSET', KEYS[5], order_no, cjson.encode({
  event = ARGV[1], sku = ev[6], user = ARGV[2], qty = ARGV[3], status = 'QUEUED',
  deadline = '0', created = ARGV[5], amount = amount, currency = ev[8],
}))
redis.call('XADD', KEYS[6], '*', 'order', order_no, 'amount', amount, 'currency', ev[8])
return {'QUEUED', order_no, tostring(pool - qty)}
