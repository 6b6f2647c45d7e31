-- stream_ack.lua — acknowledge entries of a stream read by one consumer group, and delete them.
-- The order worker runs it after create_order.lua (whose XACK already came, atomically with the
-- creation; here it is a no-op), the order sink after its commit.
--
-- KEYS[1]  the stream (a shard's order stream or change log)
-- ARGV[1]  the consumer group   ARGV[2] the first entry id to acknowledge (a delivered one),
--          then one more ARGV per id
--
-- Deleting: with nothing pending, every entry up to the group's last delivered one has been
-- acknowledged, so one `XTRIM MINID` removes them all (about 0.1 µs an entry where XDEL of
-- each costs about 2, and no id here is even parsed: the common case, one consumer at a time).
-- With something pending, the trim stops below the oldest pending entry and the ids here
-- newer than it are deleted by XDEL. A head trim also takes what an acknowledgement cut short
-- by a crash left.
-- Only for a stream with ONE consumer group: another group's unread entries would be trimmed.
--
-- Reply: how many entries this call acknowledged (XACK's count).
-- Example: entries 5-0 5-1 5-2 delivered, 5-0 pending elsewhere, ids {5-1, 5-2} → 2; 5-0 stays,
-- 5-1 and 5-2 deleted by XDEL; then ids {5-0} → 1, nothing pending, trimmed up to the last
-- delivered (5-2): the stream is empty.
assert(#KEYS == 1 and #ARGV >= 2 and (#ARGV - 1) % 1 == 0, 'stream_ack.lua: 1 KEYS, 1 + 1n ARGV')
local acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1])
if pending[1] == 0 then
  -- Nothing pending: every entry up to the group's last delivered one is acknowledged.
  local last
  for _, info in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local fields = {}
    for i = 1, #info, 2 do
      fields[info[i]] = info[i + 1]
    end
    if fields['name'] == ARGV[1] then
      last = fields['last-delivered-id']
    end
  end
  local ms, seq = parse(last)
  redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-%d', ms, seq + 1))
  return acked
end
-- Something is pending (another consumer's, or a win left unacknowledged): trim below the
-- oldest pending entry, and delete what is acknowledged here above it one by one.
local floor = pending[2]
redis.call('XTRIM', KEYS[1], 'MINID', floor)
local floor_ms, floor_seq = parse(floor)
local above = {}
for i = 2, #ARGV do
  local ms, seq = parse(ARGV[i])
  if ms > floor_ms or (ms == floor_ms and seq > floor_seq) then
    above[#above + 1] = ARGV[i]
  end
end
if #above > 0 then
  redis.call('XDEL', KEYS[1], unpack(above))
end
return acked
