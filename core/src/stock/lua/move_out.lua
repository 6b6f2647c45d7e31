-- move_out.lua — first step of a transfer of units between two shards (two cluster slots):
-- take up to N units out of a field of this shard and journal them under a transfer id.
--
-- KEYS[1]  the source hash        (a sale's hash in a shard, field `pool`; or a shard's stock
--                                  hash, field `available`)
-- KEYS[2]  the shard's journal    ({sku:ID…}:moves: transfer id → JSON of the move)
-- KEYS[3]  the transfer's tombstone ({sku:ID…}:moved:ID, written by move_forget.lua once it
--                                  landed: its units, expiring after a day)
-- ARGV[1]  transfer id (unique)   ARGV[2] source field   ARGV[3] units wanted (> 0)
-- ARGV[4]  destination hash   ARGV[5] destination field   ARGV[6] destination's received set
-- ARGV[7]  destination's stock hash (where pool units go when the destination sale is closed)
--
-- Takes min(wanted, present). The journal entry is the transfer's promise: move_in.lua at the
-- destination credits it exactly once (its received set remembers the id), then move_forget.lua
-- replaces the entry with a tombstone. Whoever finds an entry left behind (a crash between the
-- steps) completes it the same way, once the entry is older than the lease (`at`, this node's
-- clock in ms): units in a journal are counted where they are going, never lost or doubled.
--
-- Replies: {"OK", units moved}
-- Example: pool 3, want 5 → {"OK","3"}, pool 0, moves["t1"] = {"n":"3","field":"pool",…,
-- "at":"1700000000000"}; the same call again → {"OK","3"}, nothing changes; again after the
-- transfer landed (moved:t1 = "3") → {"OK","3"}, nothing changes.
-- A repeat of the same transfer id is a retry (a cluster client re-sends a script whose answer it
-- lost, maybe after a sweeper landed the entry): answer what the first run moved, take nothing
-- again. The tombstone outlives any such retry (ids are unique per process and call).
assert(#KEYS == 3 and #ARGV == 7, 'move_out.lua: 3 KEYS, 7 ARGV')
local done = redis.call('HGET', KEYS[2], ARGV[1])
if done then
  return {'OK', cjson.decode(done).n}
end
local landed = redis.call('GET', KEYS[3])
if landed then
  return {'OK', landed}
end
local have = tonumber(redis.call('HGET', KEYS[1], ARGV[2]) or '0')
local n = math.min(tonumber(ARGV[3]), have)
if n <= 0 then
  return {'OK', '0'}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HINCRBY', KEYS[1], ARGV[2], -n)
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode({
  n = string.format('%d', n), from = ARGV[2], to = ARGV[4], field = ARGV[5], received = ARGV[6],
  fallback = ARGV[7], at = string.format('%d', now),
}))
return {'OK', string.format('%d', n)}
