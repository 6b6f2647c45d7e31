-- lock_release.lua — one SKU of a lock back to available: a roll-back's compensation (after a
-- short SKU or a repair) and Warehouse.SkuStockUnlock's release step.
--
-- KEYS[1]  stock hash of the SKU   ({sku:ID}:stock)
-- KEYS[2]  the SKU's lock parts    ({sku:ID}:locks)
-- KEYS[3]  the SKU's change log    ({sku:ID}:changes)
-- ARGV[1]  order id   ARGV[2] attempt   ARGV[3] units (the journal's; the part's own count moves)
-- ARGV[4]  "0": do not log; else the lock status this step carries the lock towards
--          (ABORTED for a roll-back, RELEASED for an unlock), logged with the part it wrote
--          (`l` order id, `p` part, `s` that status) for the order sink, in the same atomic step
--
-- LOCKED at this attempt: locked → available, the part becomes RELEASED. No part of this
-- attempt (never taken, or only older attempts' RELEASED parts): a RELEASED tombstone at this
-- attempt is written, so a take of this attempt still on its way is fenced. Attempt 0 is a lock
-- made by the former one-script lock.lua, which kept no parts: its units are locked as the
-- journal says. A newer attempt's part is not this call's to touch.
--
-- Replies: {"RELEASED"} | {"TOMBSTONE"} | {"DUPLICATE"} | {"NEWER", part} | {"CONFLICT", part}
-- Example: part "2:3:LOCKED" of lock 9 on sku 5: release(9, 2, 3) → {"RELEASED"}, available +3,
-- locked -3, part "2:3:RELEASED"; again → {"DUPLICATE"}; release(9, 3, 3) on sku 6 with no part
-- → {"TOMBSTONE"}, part "3:3:RELEASED".
assert(#KEYS == 3 and #ARGV == 4, 'lock_release.lua: 3 KEYS, 4 ARGV')
local part = redis.call('HGET', KEYS[2], ARGV[1])
local attempt = tonumber(ARGV[2])
local num = tonumber(ARGV[3])
local state = nil
if part then
  local a, n, s = string.match(part, '^(%d+):(%d+):(%u+)$')
  a = tonumber(a)
  if not a then
    return {'CONFLICT', part}
  end
  if a > attempt then
    return {'NEWER', part}
  end
  if a == attempt then
    if s == 'RELEASED' then
      return {'DUPLICATE'}
    end
    if s ~= 'LOCKED' then
      return {'CONFLICT', part}
    end
    state, num = 'LOCKED', tonumber(n)
  elseif s ~= 'RELEASED' then
    return {'CONFLICT', part}
  end
end
if state == 'LOCKED' or attempt == 0 then
  redis.call('HINCRBY', KEYS[1], 'locked', -num)
  redis.call('HINCRBY', KEYS[1], 'available', num)
  local written = ARGV[2] .. ':' .. num .. ':RELEASED'
  redis.call('HSET', KEYS[2], ARGV[1], written)
  if ARGV[4] ~= '0' then
    redis.call('XADD', KEYS[3], '*', 'l', ARGV[1], 'p', written, 's', ARGV[4])
  end
  return {'RELEASED'}
end
local written = ARGV[2] .. ':' .. ARGV[3] .. ':RELEASED'
redis.call('HSET', KEYS[2], ARGV[1], written)
if ARGV[4] ~= '0' then
  redis.call('XADD', KEYS[3], '*', 'l', ARGV[1], 'p', written, 's', ARGV[4])
end
return {'TOMBSTONE'}
