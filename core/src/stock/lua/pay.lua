-- pay.lua — Seckill.PayOrder: an order awaiting payment is paid; its units locked → sold.
--
-- KEYS[1]  the SKU's orders        ({sku:ID}:orderbook)
-- KEYS[2]  payment deadlines       ({sku:ID}:deadlines)
-- KEYS[3]  stock hash of the SKU   ({sku:ID}:stock)
-- ARGV[1]  order number   ARGV[2] user id   ARGV[3] now (unix ms)
--
-- Paying again is OK and changes nothing. Payment after the deadline is refused even before
-- the sweeper has expired the order, so a late payment and the sweeper never both win.
--
-- Replies: {"OK", record JSON} | {"NOT_FOUND", …} | {"NOT_YOURS", …} | {"FAILED_PRECONDITION", why}
-- Example: 7-1 PENDING_PAYMENT, deadline 61000: pay at 5000 → {"OK", {…"status":"PAID"…}};
-- pay at 70000 instead → {"FAILED_PRECONDITION","order 7-1: the payment deadline has passed"}.
assert(#KEYS == 3 and #ARGV == 3, 'pay.lua: 3 KEYS, 3 ARGV')
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  return {'NOT_FOUND', 'order ' .. ARGV[1]}
end
local order = cjson.decode(raw)
if order.user ~= ARGV[2] then
  return {'NOT_YOURS', ARGV[1]}
end
if order.status == 'PAID' then
  return {'OK', raw}
end
if order.status == 'QUEUED' then
  return {'FAILED_PRECONDITION', 'order ' .. ARGV[1] .. ' is still being created; retry shortly'}
end
if order.status ~= 'PENDING_PAYMENT' then
  return {'FAILED_PRECONDITION', 'order ' .. ARGV[1] .. ' is ' .. order.status}
end
if tonumber(ARGV[3]) > tonumber(order.deadline) then
  return {'FAILED_PRECONDITION', 'order ' .. ARGV[1] .. ': the payment deadline has passed'}
end
order.status = 'PAID'
local record = cjson.encode(order)
redis.call('HSET', KEYS[1], ARGV[1], record)
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'locked', -tonumber(order.qty))
redis.call('HINCRBY', KEYS[3], 'sold', tonumber(order.qty))
return {'OK', record}
