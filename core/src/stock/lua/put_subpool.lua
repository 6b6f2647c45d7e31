-- put_subpool.lua — Admin.PutEvent of a sale split in sub-pools: define the sale in one
-- sub-pool's shard ({sku:ID:SUB}), with an empty pool; units arrive by transfers (move_*.lua).
--
-- KEYS[1]  the shard's stock hash      ({sku:ID:SUB}:stock: available locked sold, total 0)
-- KEYS[2]  the sale's hash there       ({sku:ID:SUB}:ev:EID)
-- KEYS[3]  set of the shard's sales    ({sku:ID:SUB}:events)
-- KEYS[4]  the shard's order stream    ({sku:ID:SUB}:orders)
-- ARGV[1..13] the arguments of put_event.lua (one list serves both): event id, SKU id, pool
--          (unused here: units arrive by transfers), start ms, end ms, per-user limit, pay window
--          ms, consumer group name, sub-pools, ARGV[10] this sub-pool's number, price, currency,
--          what the per-user limit counts (checked against the sale by put_event.lua first)
--
-- Idempotent: a redefinition refreshes the definition and keeps pool, seq and closed. The
-- order stream's consumer group is created here, so the worker can read from the first win.
--
-- Replies: {"OK", pool} | {"FAILED_PRECONDITION", why}
-- Example: event 7 of SKU 5 split in 4, sub-pool 2 → {"OK","0"}; {sku:5:2}:ev:7 holds the
-- definition with pool 0, sub 2, subpools 4.
assert(#KEYS == 4 and #ARGV == 13, 'put_subpool.lua: 4 KEYS, 13 ARGV')
if redis.call('HGET', KEYS[2], 'closed') == '1' then
  return {'FAILED_PRECONDITION', 'event ' .. ARGV[1] .. ' has ended and been closed'}
end
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'sku', ARGV[2], 'start', ARGV[4], 'end', ARGV[5],
  'limit', ARGV[6], 'pay_window', ARGV[7], 'subpools', ARGV[9], 'sub', ARGV[10],
  'price', ARGV[11], 'currency', ARGV[12], 'counts_held', ARGV[13])
for _, field in ipairs({'put', 'pool', 'seq', 'closed'}) do
  redis.call('HSETNX', KEYS[2], field, 0)
end
for _, field in ipairs({'total', 'available', 'locked', 'sold'}) do
  redis.call('HSETNX', KEYS[1], field, 0)
end
redis.call('SADD', KEYS[3], ARGV[1])
-- BUSYGROUP (the group exists already) is the expected answer on a redefinition.
redis.pcall('XGROUP', 'CREATE', KEYS[4], ARGV[8], '0', 'MKSTREAM')
return {'OK', redis.call('HGET', KEYS[2], 'pool')}
