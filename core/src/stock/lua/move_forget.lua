-- move_forget.lua — last step of a transfer (see move_out.lua): once move_in.lua credited it at
-- the destination, replace the journal entry with a tombstone, so a retried move_out.lua of the
-- same id finds it done and takes nothing.
--
-- KEYS[1]  the source shard's journal ({sku:ID…}:moves)
-- KEYS[2]  the transfer's tombstone   ({sku:ID…}:moved:ID)
-- ARGV[1]  transfer id   ARGV[2] units moved   ARGV[3] tombstone TTL (ms)
--
-- Replies: {"OK", "FORGOTTEN" | "ALREADY"}
-- Example: moves["t1"] = {"n":"3",…}: forget(t1, 3, 86400000) → {"OK","FORGOTTEN"}, the entry
-- gone, moved:t1 = "3" for a day; again → {"OK","ALREADY"} (the TTL is not extended).
assert(#KEYS == 2 and #ARGV == 3, 'move_forget.lua: 2 KEYS, 3 ARGV')
local gone = redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3], 'NX') then
  return {'OK', 'FORGOTTEN'}
end
if gone == 1 then
  return {'OK', 'FORGOTTEN'}
end
return {'OK', 'ALREADY'}
