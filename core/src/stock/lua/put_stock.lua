-- put_stock.lua — Admin.PutSkuStock: set a SKU's on-hand total.
--
-- KEYS[1]  stock hash of the SKU      ({sku:ID}:stock: total available locked sold)
-- ARGV[1]  SKU id
-- ARGV[2]  the new total (>= 0)
--
-- The difference to the old total goes to (or comes from) `available`; pooled, locked and sold
-- units are never touched, so the total cannot drop below them. The caller lists the SKU in the
-- directory of SKUs (another slot) beforehand.
--
-- Replies: {"OK", available} | {"FAILED_PRECONDITION", why}
-- Example: total 10, available 4 (6 pooled/locked/sold); PUT 8 → {"OK","2"}; PUT 5 → refused.
assert(#KEYS == 1 and #ARGV == 2, 'put_stock.lua: 1 KEYS, 2 ARGV')
local total = tonumber(redis.call('HGET', KEYS[1], 'total') or '0')
local available = tonumber(redis.call('HGET', KEYS[1], 'available') or '0')
local new_total = tonumber(ARGV[2])
local next_available = available + (new_total - total)
if next_available < 0 then
  return {'FAILED_PRECONDITION', 'sku ' .. ARGV[1] .. ': total ' .. ARGV[2] .. ' is below the '
    .. (total - available) .. ' units pooled, locked or sold'}
end
redis.call('HSET', KEYS[1], 'total', new_total, 'available', next_available)
redis.call('HSETNX', KEYS[1], 'locked', 0)
redis.call('HSETNX', KEYS[1], 'sold', 0)
return {'OK', tostring(next_available)}
