-- lock_take.lua — Warehouse.SKuStockLock, step 2 (once per SKU): take one SKU's units for one
-- attempt of a lock.
--
-- KEYS[1]  stock hash of the SKU   ({sku:ID}:stock)
-- KEYS[2]  the SKU's lock parts    ({sku:ID}:locks: order id → "attempt:num:STATE")
-- KEYS[3]  the SKU's change log    ({sku:ID}:changes)
-- ARGV[1]  order id   ARGV[2] attempt   ARGV[3] units
-- ARGV[4]  "0": do not log; else the lock status this step carries the lock towards
--          (LOCKED), logged with the part it wrote (`l` order id, `p` part, `s` that status)
--          for the order sink, in the same atomic step
--
-- Idempotent per (order, attempt), and fenced: a part of this order at this attempt or a newer
-- one that is not LOCKED here (a repair released it, or left a RELEASED tombstone before this
-- take arrived) refuses the take, so a take delayed past its attempt's roll-back never holds
-- units again. A RELEASED part of an older attempt is overwritten. Short stock writes nothing.
--
-- Replies: {"TAKEN"} | {"ALREADY"} | {"SHORT", available} | {"FENCED", part} | {"CONFLICT", part}
-- Example: sku 5 available 4, no part of lock 9: take(9, 2, 3) → {"TAKEN"}, available 1,
-- locked +3, part "2:3:LOCKED"; again → {"ALREADY"}; take(9, 1, 3) → {"FENCED","2:3:LOCKED"};
-- take(8, 1, 2) → {"SHORT","1"}.
assert(#KEYS == 3 and #ARGV == 4, 'lock_take.lua: 3 KEYS, 4 ARGV')
local part = redis.call('HGET', KEYS[2], ARGV[1])
local attempt = tonumber(ARGV[2])
if part then
  local a, state = string.match(part, '^(%d+):%d+:(%u+)$')
  a = tonumber(a)
  if not a then
    return {'CONFLICT', part}
  end
  if a == attempt and state == 'LOCKED' then
    return {'ALREADY'}
  end
  if a >= attempt then
    return {'FENCED', part}
  end
  if state ~= 'RELEASED' then
    -- An older attempt still holding units: its roll-back did not finish, which the journal
    -- forbids before a new attempt begins.
    return {'CONFLICT', part}
  end
end
local num = tonumber(ARGV[3])
local available = tonumber(redis.call('HGET', KEYS[1], 'available') or '0')
if available < num then
  return {'SHORT', tostring(available)}
end
redis.call('HINCRBY', KEYS[1], 'available', -num)
redis.call('HINCRBY', KEYS[1], 'locked', num)
local written = ARGV[2] .. ':' .. ARGV[3] .. ':LOCKED'
redis.call('HSET', KEYS[2], ARGV[1], written)
if ARGV[4] ~= '0' then
  redis.call('XADD', KEYS[3], '*', 'l', ARGV[1], 'p', written, 's', ARGV[4])
end
return {'TAKEN'}
