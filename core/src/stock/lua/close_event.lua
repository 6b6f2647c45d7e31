-- close_event.lua — the sweeper at a sale's end: what is left in the pool returns to available.
--
-- KEYS[1]  the sale's hash         ({sku:ID}:ev:EID)
-- KEYS[2]  stock hash of the SKU   ({sku:ID}:stock)
-- ARGV[1]  now (unix ms)
--
-- Replies: {"CLOSED", units returned} | {"OPEN", ""} (not ended yet) | {"ALREADY", ""}
-- Example: end 5000, pool 3: at 4000 → {"OPEN",""}; at 5000 → {"CLOSED","3"}; again → {"ALREADY",""}.
assert(#KEYS == 2 and #ARGV == 1, 'close_event.lua: 2 KEYS, 1 ARGV')
local sale = redis.call('HMGET', KEYS[1], 'end', 'closed', 'pool')
if not sale[1] or sale[2] == '1' then
  return {'ALREADY', ''}
end
if tonumber(ARGV[1]) < tonumber(sale[1]) then
  return {'OPEN', ''}
end
redis.call('HSET', KEYS[1], 'pool', 0, 'closed', 1)
redis.call('HINCRBY', KEYS[2], 'available', tonumber(sale[3]))
return {'CLOSED', sale[3]}
