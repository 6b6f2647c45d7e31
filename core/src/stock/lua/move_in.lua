-- move_in.lua — second step of a transfer (see move_out.lua): credit the units at the
-- destination, once per transfer id.
--
-- KEYS[1]  the destination hash       KEYS[2] the destination shard's received set
-- KEYS[3]  the destination shard's stock hash (the fallback)
-- ARGV[1]  transfer id   ARGV[2] destination field   ARGV[3] units
--
-- Pool units for a sale that has been closed go to the shard's `available` instead (the sweeper
-- drains a sub-pool shard's `available` back to the SKU's own shard).
--
-- Replies: {"OK", "CREDITED" | "DUPLICATE"}
-- Example: move t1 of 3 units to pool: {"OK","CREDITED"}, pool +3; again → {"OK","DUPLICATE"}.
assert(#KEYS == 3 and #ARGV == 3, 'move_in.lua: 3 KEYS, 3 ARGV')
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then
  return {'OK', 'DUPLICATE'}
end
local n = tonumber(ARGV[3])
if ARGV[2] == 'pool' and redis.call('HGET', KEYS[1], 'closed') == '1' then
  redis.call('HINCRBY', KEYS[3], 'available', n)
else
  redis.call('HINCRBY', KEYS[1], ARGV[2], n)
end
return {'OK', 'CREDITED'}
