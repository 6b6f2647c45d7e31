-- pay.lua — Seckill.PayOrder: the payment side confirms an order; its units locked → sold.
--
-- KEYS[1]  the SKU's orders        ({sku:ID}:orderbook: order number → record, see stock::record)
-- KEYS[2]  payment deadlines       ({sku:ID}:deadlines)
-- KEYS[3]  stock hash of the SKU   ({sku:ID}:stock)
-- ARGV[1]  order number   ARGV[2] user id ("": any user's order)   ARGV[3] payment id
-- ARGV[4]  amount paid (minor units)   ARGV[5] now (unix ms)
-- KEYS[4]  the shard's change log ({sku:ID}:changes)   ARGV[6] "1": append to it, "0": do not
--
-- Order of checks: the user, then the amount (it must be the order's, or nothing changes), then
-- the status. A paid order paid again by the same payment is OK and changes nothing; by another
-- payment, ALREADY_EXISTS. Payment after the deadline is refused even before the sweeper has
-- expired the order, so a late payment and the sweeper never both win. The paid order records
-- the payment id (`payment`) and the time (`paid`).
--
-- The change log (KEYS[4], with ARGV[6] "1"): each order this call changes is also appended to
-- the shard's change log as {o = order number, r = its record after the change}, in the same
-- atomic step, for the order sink (flashgate-orders) to carry into PostgreSQL; "0" appends
-- nothing (the warehouse's --order-log off).
--
-- Replies: {"OK", record} | {"NOT_FOUND", …} | {"NOT_YOURS", …} | {"ALREADY_EXISTS", why}
--          | {"FAILED_PRECONDITION", why}
-- Example: 7-1 PENDING_PAYMENT, amount 1999, deadline 61000: pay(7-1, "", "p1", 1999, 5000) →
-- {"OK", "…\31PAID\31…\31p1\315000"}; again → the same reply, nothing
-- changes; pay(7-1, "", "p2", 1999, 6000) → {"ALREADY_EXISTS", …}; at 70000 instead of 5000 →
-- {"FAILED_PRECONDITION","order 7-1: the payment deadline has passed"}.
assert(#KEYS == 4 and #ARGV == 6, 'pay.lua: 4 KEYS, 6 ARGV')
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  return {'NOT_FOUND', 'order ' .. ARGV[1]}
end
local event, sku, user, qty, status, deadline, created, amount, currency, payment, paid =
  string.match(raw, '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)$')
assert(event, 'order ' .. ARGV[1] .. ': not an order record')
if ARGV[2] ~= '' and user ~= ARGV[2] then
  return {'NOT_YOURS', ARGV[1]}
end
if amount ~= ARGV[4] then
  return {'FAILED_PRECONDITION', 'order ' .. ARGV[1] .. ': its amount is ' .. amount .. ' '
    .. currency .. ', not ' .. ARGV[4]}
end
if status == 'PAID' then
  if payment == ARGV[3] then
    return {'OK', raw}
  end
  return {'ALREADY_EXISTS', 'order ' .. ARGV[1] .. ' is paid by another payment'}
end
if status == 'QUEUED' then
  return {'FAILED_PRECONDITION', 'order ' .. ARGV[1] .. ' is still being created; retry shortly'}
end
if status ~= 'PENDING_PAYMENT' then
  return {'FAILED_PRECONDITION', 'order ' .. ARGV[1] .. ' is ' .. status}
end
if tonumber(ARGV[5]) > tonumber(deadline) then
  return {'FAILED_PRECONDITION', 'order ' .. ARGV[1] .. ': the payment deadline has passed'}
end
status, payment, paid = 'PAID', ARGV[3], ARGV[5]
local record = table.concat({event, sku, user, qty, status, deadline, created, amount, currency, payment, paid}, '\31')
redis.call('HSET', KEYS[1], ARGV[1], record)
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'locked', -tonumber(qty))
redis.call('HINCRBY', KEYS[3], 'sold', tonumber(qty))
if ARGV[6] == '1' then
  redis.call('XADD', KEYS[4], '*', 'o', ARGV[1], 'r', record)
end
return {'OK', record}
