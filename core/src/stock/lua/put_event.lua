-- put_event.lua — Admin.PutEvent: define (or redefine) a sale and pre-warm its pool.
--
-- KEYS[1]  stock hash of the SKU       ({sku:ID}:stock)
-- KEYS[2]  the sale's hash             ({sku:ID}:ev:EID: id sku put pool start end limit
--                                       pay_window price currency counts_held seq closed)
-- KEYS[3]  set of the SKU's sales      ({sku:ID}:events)
-- KEYS[4]  the SKU's order stream      ({sku:ID}:orders)
-- ARGV[1]  event id   ARGV[2] SKU id   ARGV[3] pool   ARGV[4] start ms   ARGV[5] end ms
-- ARGV[6]  per-user limit   ARGV[7] pay window ms   ARGV[8] consumer group name
-- ARGV[9]  sub-pools (1: one pool; with more, the caller then spreads the pool with move_*.lua)
-- ARGV[10] sub-pool number (always 0 here: the SKU's own shard; put_subpool.lua takes the same
--          list)
-- ARGV[11] price per unit (minor units)   ARGV[12] currency (three capitals)
-- ARGV[13] what the per-user limit counts: "1" units held now, "0" every unit won
--
-- `put` is the number of units put in the sale; redefining moves only the difference between
-- `available` and the pool. A closed sale cannot be redefined, nor can what its per-user limit
-- counts change (the per-user counts mean one or the other); its price may (orders keep theirs). Every key is in the SKU's slot:
-- the caller claims the event id in the directory event → SKU (another slot) beforehand, which
-- is where "a sale's SKU never changes" is enforced.
-- The order stream's consumer group is created here, so the worker can read from the first win.
--
-- Replies: {"OK", pool} | {"NOT_FOUND", what} | {"FAILED_PRECONDITION", why}
-- Example: available 10, PUT event 1 pool 4 → {"OK","4"}, available 6; PUT again pool 3 →
-- {"OK","3"}, available 7; PUT again with ARGV[13] "1" instead of "0" → FAILED_PRECONDITION.
assert(#KEYS == 4 and #ARGV == 13, 'put_event.lua: 4 KEYS, 13 ARGV')
local event, sku = ARGV[1], ARGV[2]
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'NOT_FOUND', 'sku ' .. sku}
end
if redis.call('HGET', KEYS[2], 'closed') == '1' then
  return {'FAILED_PRECONDITION', 'event ' .. event .. ' has ended and been closed'}
end
local counts_held = redis.call('HGET', KEYS[2], 'counts_held')
if counts_held and counts_held ~= ARGV[13] then
  return {'FAILED_PRECONDITION', 'event ' .. event
    .. ': what its per-user limit counts (limit_counts_held) cannot change'}
end
local put = tonumber(redis.call('HGET', KEYS[2], 'put') or '0')
local pool = tonumber(redis.call('HGET', KEYS[2], 'pool') or '0')
local available = tonumber(redis.call('HGET', KEYS[1], 'available'))
local delta = tonumber(ARGV[3]) - put
if delta > available then
  return {'FAILED_PRECONDITION', 'sku ' .. sku .. ' has ' .. available .. ' units available, the pool needs '
    .. delta .. ' more'}
end
if -delta > pool then
  return {'FAILED_PRECONDITION', 'event ' .. event .. ': only ' .. pool
    .. ' units are left in the pool, cannot take back ' .. (-delta)}
end
if delta ~= 0 then
  -- (Lua prints -0 as "-0", which HINCRBY refuses.)
  redis.call('HINCRBY', KEYS[1], 'available', -delta)
end
redis.call('HSET', KEYS[2], 'id', event, 'sku', sku, 'put', ARGV[3], 'pool', pool + delta,
  'start', ARGV[4], 'end', ARGV[5], 'limit', ARGV[6], 'pay_window', ARGV[7],
  'subpools', ARGV[9], 'sub', 0, 'price', ARGV[11], 'currency', ARGV[12], 'counts_held', ARGV[13])
redis.call('HSETNX', KEYS[2], 'seq', 0)
redis.call('HSETNX', KEYS[2], 'closed', 0)
redis.call('SADD', KEYS[3], event)
-- BUSYGROUP (the group exists already) is the expected answer on a redefinition.
redis.pcall('XGROUP', 'CREATE', KEYS[4], ARGV[8], '0', 'MKSTREAM')
return {'OK', tostring(pool + delta)}
