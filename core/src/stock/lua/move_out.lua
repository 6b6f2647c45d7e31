-- move_out.lua — first step of a transfer of units between two shards (two cluster slots):
-- take up to N units out of a field of this shard and journal them under a transfer id.
--
-- KEYS[1]  the source hash        (a sale's hash in a shard, field `pool`; or a shard's stock
--                                  hash, field `available`)
-- KEYS[2]  the shard's journal    ({sku:ID…}:moves: transfer id → JSON of the move)
-- ARGV[1]  transfer id (unique)   ARGV[2] source field   ARGV[3] units wanted (> 0)
-- ARGV[4]  destination hash   ARGV[5] destination field   ARGV[6] destination's received set
-- ARGV[7]  destination's stock hash (where pool units go when the destination sale is closed)
--
-- Takes min(wanted, present). The journal entry is the transfer's promise: move_in.lua at the
-- destination credits it exactly once (its received set remembers the id), then the caller
-- deletes the entry. Whoever finds an entry left behind (a crash between the steps) completes it
-- the same way: units in a journal are counted where they are going, never lost or doubled.
--
-- Replies: {"OK", units moved}
-- Example: pool 3, want 5 → {"OK","3"}, pool 0, moves["t1"] = {"n":"3","field":"pool",…}; the
-- same call again → {"OK","3"}, nothing changes. (Once the entry is landed and forgotten, the
-- id is not reused: ids are unique per process and call.)
-- A repeat of the same transfer id is a retry (a client re-sends a script whose answer it lost):
-- answer what the first run moved, take nothing again.
assert(#KEYS == 2 and #ARGV == 7, 'move_out.lua: 2 KEYS, 7 ARGV')
local done = redis.call('HGET', KEYS[2], ARGV[1])
if done then
  return {'OK', cjson.decode(done).n}
end
local have = tonumber(redis.call('HGET', KEYS[1], ARGV[2]) or '0')
local n = math.min(tonumber(ARGV[3]), have)
if n <= 0 then
  return {'OK', '0'}
end
redis.call('HINCRBY', KEYS[1], ARGV[2], -n)
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode({
  n = string.format('%d', n), from = ARGV[2], to = ARGV[4], field = ARGV[5], received = ARGV[6],
  fallback = ARGV[7],
}))
return {'OK', string.format('%d', n)}
