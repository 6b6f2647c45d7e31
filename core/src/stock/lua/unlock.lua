-- unlock.lua — Warehouse.SkuStockUnlock: commit (locked → sold) or release (locked → available).
--
-- KEYS[1]     the lock record        (:lock:ORDER_ID)
-- KEYS[2..n]  stock hash of each SKU of the lock, in ascending SKU order
-- ARGV[1]     "1" to finish (commit), "0" to release
-- ARGV[2]     the lock's SKU map as the caller read it ("sku:num,…")
-- ARGV[3..]   pairs sku, num in the order of KEYS[2..]
--
-- The caller reads the record's SKU map first to name the keys; a lock record never changes its
-- map, and the script checks it again. A repeat is OK; the opposite move after one is refused.
--
-- Replies: {"OK", "FINISHED" | "RELEASED" | "DUPLICATE"} | {"NOT_FOUND", …} | {"FAILED_PRECONDITION", why}
-- Example: lock {1:2} LOCKED: unlock finish → {"OK","FINISHED"}, sku 1 locked -2 sold +2;
-- unlock release afterwards → {"FAILED_PRECONDITION","order_id 9 is already FINISHED"}.
local skus = redis.call('HGET', KEYS[1], 'skus')
if not skus then
  return {'NOT_FOUND', 'lock'}
end
if skus ~= ARGV[2] then
  return {'FAILED_PRECONDITION', 'lock record changed while unlocking; retry'}
end
local target = (ARGV[1] == '1') and 'FINISHED' or 'RELEASED'
local status = redis.call('HGET', KEYS[1], 'status')
if status == target then
  return {'OK', 'DUPLICATE'}
end
if status ~= 'LOCKED' then
  return {'FAILED_PRECONDITION', 'is already ' .. status}
end
local to = (target == 'FINISHED') and 'sold' or 'available'
for i = 2, #KEYS do
  local num = tonumber(ARGV[2 * i])
  redis.call('HINCRBY', KEYS[i], 'locked', -num)
  redis.call('HINCRBY', KEYS[i], to, num)
end
redis.call('HSET', KEYS[1], 'status', target)
return {'OK', target}
