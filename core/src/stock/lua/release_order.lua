-- release_order.lua — Seckill.CancelOrder and the sweeper's expiry: give an order's units back.
--
-- KEYS[1]  the SKU's orders        ({sku:ID}:orderbook: order number → record, see stock::record)
-- KEYS[2]  payment deadlines       ({sku:ID}:deadlines)
-- KEYS[3]  stock hash of the SKU   ({sku:ID}:stock)
-- KEYS[4]  the sale's hash         ({sku:ID}:ev:EID)
-- KEYS[5]  units counted per user  ({sku:ID}:ev:EID:users)
-- ARGV[1]  order number   ARGV[2] user id ("" for the sweeper)   ARGV[3] now (unix ms)
-- ARGV[4]  CANCELLED (the user's cancel) or EXPIRED (the sweeper)
-- KEYS[6]  the shard's change log ({sku:ID}:changes)   ARGV[5] "1": append to it, "0": do not
--
-- Units go back to the sale's pool while the sale runs, to `available` once it has ended. The
-- user's per-sale count drops by the same amount only when the sale's limit counts units held
-- (counts_held "1"); by default it counts every unit won, so a release gives no right to buy
-- again. A repeat changes nothing and answers ALREADY (so of two sweepers that listed the same
-- due order, only one counts it expired).
-- EXPIRED applies only to an order awaiting payment past its deadline; anything else is
-- SKIPPED (a payment won the race, or the deadline moved).
--
-- The change log (KEYS[6], with ARGV[5] "1"): each order this call changes is also appended to
-- the shard's change log as {o = order number, r = its record after the change}, in the same
-- atomic step, for the order sink (flashgate-orders) to carry into PostgreSQL; "0" appends
-- nothing (the warehouse's --order-log off).
--
-- Replies: {"OK", record} | {"ALREADY", record} | {"SKIPPED", record}
--          | {"NOT_FOUND", …} | {"NOT_YOURS", …} | {"FAILED_PRECONDITION", why}
-- Example: 7-1 PENDING_PAYMENT qty 1, sale running: cancel → {"OK", "…\31CANCELLED\31…"}, pool +1;
-- the user's count stays 1 (counts_held "0") or drops to 0 (counts_held "1").
assert(#KEYS == 6 and #ARGV == 5, 'release_order.lua: 6 KEYS, 5 ARGV')
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
local now = tonumber(ARGV[3])
if status == ARGV[4] then
  return {'ALREADY', raw}
end
if ARGV[4] == 'EXPIRED' then
  if status ~= 'PENDING_PAYMENT' or now <= tonumber(deadline) then
    if status ~= 'PENDING_PAYMENT' then
      redis.call('ZREM', KEYS[2], ARGV[1])
    end
    return {'SKIPPED', raw}
  end
elseif status ~= 'QUEUED' and status ~= 'PENDING_PAYMENT' then
  return {'FAILED_PRECONDITION', 'order ' .. ARGV[1] .. ' is ' .. status .. ' and cannot be cancelled'}
end
local units = tonumber(qty)
local sale = redis.call('HMGET', KEYS[4], 'end', 'closed', 'counts_held')
redis.call('HINCRBY', KEYS[3], 'locked', -units)
if sale[2] ~= '1' and now < tonumber(sale[1]) then
  redis.call('HINCRBY', KEYS[4], 'pool', units)
else
  redis.call('HINCRBY', KEYS[3], 'available', units)
end
if sale[3] == '1' then
  redis.call('HINCRBY', KEYS[5], user, -units)
end
status = ARGV[4]
local record = table.concat({event, sku, user, qty, status, deadline, created, amount, currency, payment, paid}, '\31')
redis.call('HSET', KEYS[1], ARGV[1], record)
redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[5] == '1' then
  redis.call('XADD', KEYS[6], '*', 'o', ARGV[1], 'r', record)
end
return {'OK', record}
