-- move_read.lua — a shard's transfer journal with this node's clock, so the age of an entry
-- (its `at`, written by move_out.lua on this node) is measured by the clock that wrote it.
--
-- KEYS[1]  the shard's journal ({sku:ID…}:moves: transfer id → JSON of the move)
--
-- Replies: {now_ms, id, json, id, json, …}
-- Example: one entry t1 journaled 40 s ago → {"1700000040000","t1","{\"n\":\"3\",…,\"at\":\"1700000000000\"}"}.
assert(#KEYS == 1 and #ARGV == 0, 'move_read.lua: 1 KEYS, 0 ARGV')
local t = redis.call('TIME')
local reply = {string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do
  reply[#reply + 1] = v
end
return reply
