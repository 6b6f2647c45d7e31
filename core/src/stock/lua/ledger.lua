-- ledger.lua — read-only: a SKU's counters and the sum of its sales' pools, at one instant.
--
-- KEYS[1]  stock hash of the SKU   ({sku:ID}:stock)
-- KEYS[2]  set of the SKU's sales  ({sku:ID}:events)
-- ARGV[1]  key prefix of the SKU's sales ("PREFIX:{sku:ID}:ev:"); each sale key shares the
--          SKU's hash tag, so the read stays in one slot
--
-- Replies: {"OK", total, available, pools, locked, sold} | {"NOT_FOUND", ""}
-- Example: total 10, available 4, one sale with pool 3, locked 2, sold 1 → {"OK","10","4","3","2","1"}.
assert(#KEYS == 2 and #ARGV == 1, 'ledger.lua: 2 KEYS, 1 ARGV')
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'NOT_FOUND', ''}
end
local c = redis.call('HMGET', KEYS[1], 'total', 'available', 'locked', 'sold')
local pools = 0
for _, event in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  pools = pools + tonumber(redis.call('HGET', ARGV[1] .. event, 'pool') or '0')
end
return {'OK', c[1], c[2], string.format('%d', pools), c[3] or '0', c[4] or '0'}
