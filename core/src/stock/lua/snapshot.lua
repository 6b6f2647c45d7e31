-- snapshot.lua — read-only: everything the audit needs about one SKU, read at one instant.
--
-- KEYS[1]  stock hash of the SKU    ({sku:ID}:stock)
-- KEYS[2]  set of the SKU's sales   ({sku:ID}:events)
-- KEYS[3]  the SKU's orders         ({sku:ID}:orderbook)
-- ARGV[1]  key prefix of the SKU's sales ("PREFIX:{sku:ID}:ev:"); the sale keys share the SKU's
--          hash tag, so the read stays in one slot
--
-- Replies: "" for an unknown SKU, else one JSON document of string maps:
--   {"stock":{…},"sales":{"7":{"sale":{…},"users":{…},"req":{…}}},"orders":{"7-1":"7\u001f…"}}
--   (order records and request entries as stored, see stock::record)
-- Example: a SKU with one sale and no orders →
--   {"stock":{"total":"10","available":"6","locked":"0","sold":"0"},
--    "sales":{"7":{"sale":{"id":"7",…,"pool":"4"},"users":{},"req":{}}},"orders":{}}
assert(#KEYS == 3 and #ARGV == 1, 'snapshot.lua: 3 KEYS, 1 ARGV')
local function hash(key)
  local flat = redis.call('HGETALL', key)
  local map = {}
  for i = 1, #flat, 2 do
    map[flat[i]] = flat[i + 1]
  end
  return map
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return ''
end
local sales = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local key = ARGV[1] .. id
  sales[id] = {sale = hash(key), users = hash(key .. ':users'), req = hash(key .. ':req')}
end
return cjson.encode({stock = hash(KEYS[1]), sales = sales, orders = hash(KEYS[3])})
