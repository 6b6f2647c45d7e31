-- stream_ack.lua — acknowledge entries of a stream read by one consumer group, and delete them.
-- The order worker runs it after create_order.lua (whose XACK already came, atomically with the
-- creation; here it is a no-op), the order sink after its commit.
--
-- KEYS[1]  the stream (a shard's order stream or change log)
-- ARGV[1]  the consumer group   ARGV[2..] the entry ids to acknowledge (delivered ones only)
--
-- Deleting: every entry older than the group's oldest pending entry — or, with none pending,
-- up to the newest id acknowledged here — has been delivered and acknowledged, so one
-- `XTRIM MINID` removes them all (about 0.1 µs an entry where XDEL of each costs about 2); an
-- id here that is newer than a pending entry (another consumer's, or a win left unacknowledged)
-- is deleted by XDEL. A head trim also takes what an acknowledgement cut short by a crash left.
-- Only for a stream with ONE consumer group: another group's unread entries would be trimmed.
--
-- Reply: how many entries this call acknowledged (XACK's count).
-- Example: entries 5-0 5-1 5-2 delivered, 5-0 pending elsewhere, ids {5-1, 5-2} → 2; 5-0 stays,
-- 5-1 and 5-2 deleted by XDEL; then ids {5-0} → 1, trimmed below 5-1: the stream is empty.
assert(#KEYS == 1 and #ARGV >= 2, 'stream_ack.lua: 1 KEYS, 1 + n ARGV')
local ids = { unpack(ARGV, 2) }
local acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function older(a_ms, a_seq, b_ms, b_seq)
  return a_ms < b_ms or (a_ms == b_ms and a_seq < b_seq)
end
local floor_ms, floor_seq
local oldest = redis.call('XPENDING', KEYS[1], ARGV[1])[2]
if oldest then
  floor_ms, floor_seq = parse(oldest)
else
  floor_ms, floor_seq = parse(ids[1])
  for i = 2, #ids do
    local ms, seq = parse(ids[i])
    if older(floor_ms, floor_seq, ms, seq) then
      floor_ms, floor_seq = ms, seq
    end
  end
  floor_seq = floor_seq + 1
end
redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-%d', floor_ms, floor_seq))
local above = {}
for _, id in ipairs(ids) do
  local ms, seq = parse(id)
  if not older(ms, seq, floor_ms, floor_seq) then
    above[#above + 1] = id
  end
end
if #above > 0 then
  redis.call('XDEL', KEYS[1], unpack(above))
end
return acked
