-- create_order.lua — the order worker: turn a win into an order awaiting payment, once.
--
-- KEYS[1]  the SKU's orders        ({sku:ID}:orderbook: order number → record, see stock::record)
-- KEYS[2]  payment deadlines       ({sku:ID}:deadlines: order number → deadline ms)
-- KEYS[3]  the sale's hash         ({sku:ID}:ev:EID)
-- ARGV[1]  order number   ARGV[2] now (unix ms)
--
-- Only a QUEUED order changes; a second delivery of the same win (a reclaimed stream entry)
-- finds it created already and changes nothing, as does a win cancelled before the worker came.
--
-- Replies: {"CREATED", deadline} | {"ALREADY", status} | {"NOT_FOUND", order number}
-- Example: order 7-1 QUEUED, pay window 60000, now 1000 → {"CREATED","61000"}; again →
-- {"ALREADY","PENDING_PAYMENT"}.
assert(#KEYS == 3 and #ARGV == 2, 'create_order.lua: 3 KEYS, 2 ARGV')
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  return {'NOT_FOUND', ARGV[1]}
end
local event, sku, user, qty, status, deadline, created, amount, currency, payment, paid =
  string.match(raw, '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)$')
assert(event, 'order ' .. ARGV[1] .. ': not an order record')
if status ~= 'QUEUED' then
  return {'ALREADY', status}
end
deadline = tonumber(ARGV[2]) + tonumber(redis.call('HGET', KEYS[3], 'pay_window'))
status = 'PENDING_PAYMENT'
deadline = string.format('%d', deadline)
redis.call('HSET', KEYS[1], ARGV[1], table.concat({event, sku, user, qty, status, deadline, created, amount, currency, payment, paid}, '\31'))
redis.call('ZADD', KEYS[2], deadline, ARGV[1])
return {'CREATED', deadline}
