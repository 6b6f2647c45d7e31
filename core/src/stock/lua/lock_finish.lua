-- lock_finish.lua — Warehouse.SkuStockUnlock's commit step for one SKU: locked → sold.
--
-- KEYS[1]  stock hash of the SKU   ({sku:ID}:stock)
-- KEYS[2]  the SKU's lock parts    ({sku:ID}:locks)
-- KEYS[3]  the SKU's change log    ({sku:ID}:changes)
-- ARGV[1]  order id   ARGV[2] attempt   ARGV[3] units (the journal's; the part's own count moves)
-- ARGV[4]  "0": do not log; else the lock status this step carries the lock towards
--          (FINISHED), logged with the part it wrote (`l` order id, `p` part, `s` that status)
--          for the order sink, in the same atomic step
--
-- Only a part LOCKED at this attempt moves; a repeat is a duplicate. Attempt 0 with no part is a
-- lock made by the former one-script lock.lua (no parts): its units are locked as the journal
-- says. Anything else contradicts the journal (FINISHING at this attempt means every part was
-- LOCKED at it) and is answered CONFLICT without a change.
--
-- Replies: {"FINISHED"} | {"DUPLICATE"} | {"CONFLICT", part}
-- Example: part "2:3:LOCKED" of lock 9 on sku 5: finish(9, 2, 3) → {"FINISHED"}, locked -3,
-- sold +3, part "2:3:FINISHED"; again → {"DUPLICATE"}.
assert(#KEYS == 3 and #ARGV == 4, 'lock_finish.lua: 3 KEYS, 4 ARGV')
local part = redis.call('HGET', KEYS[2], ARGV[1])
local num = tonumber(ARGV[3])
if part then
  local a, n, s = string.match(part, '^(%d+):(%d+):(%u+)$')
  if a ~= ARGV[2] then
    return {'CONFLICT', part}
  end
  if s == 'FINISHED' then
    return {'DUPLICATE'}
  end
  if s ~= 'LOCKED' then
    return {'CONFLICT', part}
  end
  num = tonumber(n)
elseif ARGV[2] ~= '0' then
  return {'CONFLICT', ''}
end
redis.call('HINCRBY', KEYS[1], 'locked', -num)
redis.call('HINCRBY', KEYS[1], 'sold', num)
local written = ARGV[2] .. ':' .. num .. ':FINISHED'
redis.call('HSET', KEYS[2], ARGV[1], written)
if ARGV[4] ~= '0' then
  redis.call('XADD', KEYS[3], '*', 'l', ARGV[1], 'p', written, 's', ARGV[4])
end
return {'FINISHED'}
