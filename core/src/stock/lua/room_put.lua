-- room_put.lua — Admin.PutEvent of a sale with a waiting room (or without one any more): the
-- room's settings, beside the sale in its slot.
--
-- KEYS[1]  the room's hash            ({sku:ID}:room:EID: prequeue factor ttl, and the
--                                      counters room_move.lua keeps)
-- KEYS[2]  the line                   ({sku:ID}:room:EID:places)
-- KEYS[3]  the open admissions        ({sku:ID}:room:EID:pending)
-- ARGV[1]  pre-queue ms ("": the sale has no waiting room)   ARGV[2] admit factor (>= 1)
-- ARGV[3]  admission ttl ms   ARGV[4] when the room's keys expire (unix ms: the sale's end plus
--          stock::room::ROOM_RETAIN_MS)
--
-- The settings are the service's validated values (defaults applied). Without a room the
-- settings go and the line (if any) is left to expire: JoinQueue, GetQueue and ClaimAdmission
-- then answer FAILED_PRECONDITION (and a `standby` setting an older warehouse kept goes too). The
-- counters are never reset: a redefinition keeps the line.
--
-- Replies: {"OK"}
-- Example: ARGV "300000" "2" "30000" "1700003600000" → {"OK"}, HGET room factor → "2";
-- ARGV "" "0" "0" "1700003600000" → {"OK"}, HGET room factor → nil.
assert(#KEYS == 3 and #ARGV == 4, 'room_put.lua: 3 KEYS, 4 ARGV')
if ARGV[1] == '' then
  redis.call('HDEL', KEYS[1], 'prequeue', 'factor', 'ttl', 'standby')
  return {'OK'}
end
redis.call('HSET', KEYS[1], 'prequeue', ARGV[1], 'factor', ARGV[2], 'ttl', ARGV[3])
for i = 1, 3 do
  redis.call('PEXPIREAT', KEYS[i], ARGV[4])
end
return {'OK'}
