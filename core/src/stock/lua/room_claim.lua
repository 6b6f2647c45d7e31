-- room_claim.lua — Queue.ClaimAdmission: whether a user's place is admitted now (read-only, so
-- asking again answers the same while it lasts).
--
-- KEYS[1]  the sale's hash            ({sku:ID}:ev:EID: start end closed)
-- KEYS[2]  the room's hash            ({sku:ID}:room:EID: prequeue ttl opened sold_out)
-- KEYS[3]  the line                   ({sku:ID}:room:EID:places: user → score)
-- KEYS[4]  the open admissions        ({sku:ID}:room:EID:pending: user → lapse time, ms)
-- ARGV[1]  event id   ARGV[2] user id   ARGV[3] now (unix ms)
--
-- A place's state as room_join.lua answers it: ENDED after the end; NO_PLACE without a place;
-- among the first `opened` of the line ADMITTED while its open admission lasts (its deadline and
-- opening in the reply), else LAPSED (bought, or unused past its deadline, even if no move has
-- swept it yet); else SOLD_OUT if the last move found the sale sold out; else WAITING (a
-- standby admission too: no link until a move opens it).
--
-- Replies: {state, score, rank, detail, "0", from} as room_join.lua's | {"NOT_FOUND", what} |
-- {"FAILED_PRECONDITION", why}
-- Example: the first place opened at 1000 with ttl 30000, ARGV "7" "ann" "2000" →
-- {"ADMITTED","77","0","31000","0","1000"}; at "31000" → {"LAPSED","77","0","0","0","0"}; a user
-- who never joined → {"NO_PLACE","","","0","0","0"}.
assert(#KEYS == 4 and #ARGV == 3, 'room_claim.lua: 4 KEYS, 3 ARGV')
local event, user, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ev = redis.call('HMGET', KEYS[1], 'start', 'end', 'closed')
if not ev[1] then
  return {'NOT_FOUND', 'event ' .. event}
end
local room = redis.call('HMGET', KEYS[2], 'prequeue', 'opened', 'sold_out', 'ttl', 'admitted')
if not room[1] then
  return {'FAILED_PRECONDITION', 'event ' .. event .. ' has no waiting room'}
end
local ended = ev[3] == '1' or now >= tonumber(ev[2])
-- A room moved before openings were kept: every admitted place was open.
local opened, sold_out = tonumber(room[2] or room[5] or '0'), room[3] == '1'
local score = redis.call('ZSCORE', KEYS[3], user)
if not score then
  return {ended and 'ENDED' or 'NO_PLACE', '', '', '0', '0', '0'}
end
local rank = redis.call('ZRANK', KEYS[3], user)
local state, detail, from = 'WAITING', '0', '0'
if ended then
  state = 'ENDED'
elseif rank < opened then
  local lapse = redis.call('ZSCORE', KEYS[4], user)
  if lapse and tonumber(lapse) > now then
    state, detail = 'ADMITTED', string.format('%d', tonumber(lapse))
    from = string.format('%d', tonumber(lapse) - tonumber(room[4]))
  else
    state = 'LAPSED'
  end
elseif sold_out then
  state = 'SOLD_OUT'
end
return {state, string.format('%d', tonumber(score)), string.format('%d', rank), detail, '0',
  from}
