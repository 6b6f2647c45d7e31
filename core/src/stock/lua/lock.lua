-- lock.lua — Warehouse.SKuStockLock: lock every SKU of an order, or none; idempotent by order id.
--
-- KEYS[1]     the lock record        (:lock:ORDER_ID: skus status order_no consignee phone
--                                     address note)
-- KEYS[2..n]  stock hash of each SKU ({sku:ID}:stock), in ascending SKU order
-- ARGV[1]     order id
-- ARGV[2]     the SKU map, canonical "sku:num,sku:num" (ascending SKU)
-- ARGV[3..7]  order_no, consignee, phone, address, note
-- ARGV[8..]   pairs sku, num in the order of KEYS[2..]
--
-- Every SKU is checked before any is touched, so a refusal changes nothing. The same order id
-- with the same SKU map is a retry (OK, nothing changes); with another map it is a conflict.
-- On one Redis this is one script over several slots; a cluster takes per-SKU journaled steps.
--
-- Replies: {"OK", "LOCKED" | "DUPLICATE"} | {"ALREADY_EXISTS", why} | {"FAILED_PRECONDITION", why}
-- Example: sku 1 available 5, sku 2 available 0: lock {1:2, 2:1} → FAILED_PRECONDITION naming
-- sku 2, nothing changes; lock {1:2} → {"OK","LOCKED"}, sku 1 available 3 locked 2.
local existing = redis.call('HGET', KEYS[1], 'skus')
if existing then
  if existing == ARGV[2] then
    return {'OK', 'DUPLICATE'}
  end
  return {'ALREADY_EXISTS', 'order_id ' .. ARGV[1] .. ' is already locked with other sku_nums'}
end
for i = 2, #KEYS do
  local sku, num = ARGV[2 * i + 4], tonumber(ARGV[2 * i + 5])
  local available = tonumber(redis.call('HGET', KEYS[i], 'available') or '0')
  if available < num then
    return {'FAILED_PRECONDITION', 'sku ' .. sku .. ' has ' .. available .. ' units available, '
      .. num .. ' asked'}
  end
end
for i = 2, #KEYS do
  local num = tonumber(ARGV[2 * i + 5])
  redis.call('HINCRBY', KEYS[i], 'available', -num)
  redis.call('HINCRBY', KEYS[i], 'locked', num)
end
redis.call('HSET', KEYS[1], 'skus', ARGV[2], 'status', 'LOCKED', 'order_no', ARGV[3],
  'consignee', ARGV[4], 'phone', ARGV[5], 'address', ARGV[6], 'note', ARGV[7])
return {'OK', 'LOCKED'}
