-- room_join.lua — Queue.JoinQueue: a place in a waiting-room sale's line, once per user and sale.
--
-- KEYS[1]  the sale's hash            ({sku:ID}:ev:EID: start end closed)
-- KEYS[2]  the room's hash            ({sku:ID}:room:EID: prequeue ttl arrivals opened began
--                                      sold_out; see room_move.lua)
-- KEYS[3]  the line                   ({sku:ID}:room:EID:places: user → score)
-- KEYS[4]  the open admissions        ({sku:ID}:room:EID:pending: user → lapse time, ms)
-- ARGV[1]  event id   ARGV[2] user id   ARGV[3] the user's drawn score in this sale
--          (admission::Ticket::draw under the warehouse's draw secret, .score(): the caller
--          computes it, the script never sees the secret)
-- ARGV[4]  now (unix ms)   ARGV[5] how long the room's keys outlive the sale's end (ms)
--
-- admission::join's rules: a user with a place keeps it (ZADD NX, whenever and however often
-- they join); otherwise after the end ENDED, before the pre-queue opens TOO_EARLY, in the
-- pre-queue the drawn score, from the start on the next arrival (2^52 + seq). One holder's
-- rule more: once a move found the sale sold out, a new join gets no place (SOLD_OUT). And once
-- a move at or after the start has run (`began`), every new place is an arrival whatever the
-- caller's clock says, so the admitted places stay a prefix of the line.
-- A place's state: ENDED after the end; among the first `opened` of the line ADMITTED while its
-- open admission lasts, else LAPSED (bought, or unused past its deadline); else SOLD_OUT if the
-- last move found the sale sold out; else WAITING (a standby admission among them: it waits at
-- the front until a move opens it).
--
-- Replies: {state, score, rank, detail, new, from}: state WAITING ADMITTED SOLD_OUT ENDED
-- TOO_EARLY LAPSED NO_PLACE; score and rank (0-based) "" without a place; detail the admission's
-- deadline (ADMITTED) or when the line opens (TOO_EARLY), else "0"; new "1" when this join made
-- the place; from when the admission opened (ADMITTED: deadline − ttl), else "0".
-- | {"NOT_FOUND", what} | {"FAILED_PRECONDITION", why}
-- Example: start 1000, prequeue 500, now 600, ARGV[3] "77" → {"WAITING","77","0","0","1","0"};
-- the same again → {"WAITING","77","0","0","0","0"}; another user at now 1000 (after a move) →
-- {"WAITING","4503599627370496","1","0","1","0"}; at now 400 → {"TOO_EARLY","","","500","0","0"}.
assert(#KEYS == 4 and #ARGV == 5, 'room_join.lua: 4 KEYS, 5 ARGV')
local event, user, now = ARGV[1], ARGV[2], tonumber(ARGV[4])
local ev = redis.call('HMGET', KEYS[1], 'start', 'end', 'closed')
if not ev[1] then
  return {'NOT_FOUND', 'event ' .. event}
end
local room = redis.call('HMGET', KEYS[2], 'prequeue', 'opened', 'began', 'sold_out', 'ttl',
  'admitted')
if not room[1] then
  return {'FAILED_PRECONDITION', 'event ' .. event .. ' has no waiting room'}
end
local start, stop = tonumber(ev[1]), tonumber(ev[2])
local ended = ev[3] == '1' or now >= stop
-- A room moved before openings were kept: every admitted place was open.
local opened = tonumber(room[2] or room[6] or '0')
local began, sold_out = room[3] == '1', room[4] == '1'
local score = redis.call('ZSCORE', KEYS[3], user)
local new = '0'
if not score then
  if ended then
    return {'ENDED', '', '', '0', '0', '0'}
  end
  local opens = start - tonumber(room[1])
  if not began and now < opens then
    return {'TOO_EARLY', '', '', string.format('%d', opens), '0', '0'}
  end
  if sold_out then
    return {'SOLD_OUT', '', '', '0', '0', '0'}
  end
  if not began and now < start then
    score = ARGV[3]
  else
    local seq = redis.call('HINCRBY', KEYS[2], 'arrivals', 1) - 1
    score = string.format('%d', 4503599627370496 + seq)
  end
  redis.call('ZADD', KEYS[3], 'NX', score, user)
  redis.call('PEXPIREAT', KEYS[3], stop + tonumber(ARGV[5]))
  new = '1'
end
local rank = redis.call('ZRANK', KEYS[3], user)
local state, detail, from = 'WAITING', '0', '0'
if ended then
  state = 'ENDED'
elseif rank < opened then
  local lapse = redis.call('ZSCORE', KEYS[4], user)
  if lapse and tonumber(lapse) > now then
    state, detail = 'ADMITTED', string.format('%d', tonumber(lapse))
    from = string.format('%d', tonumber(lapse) - tonumber(room[5]))
  else
    state = 'LAPSED'
  end
elseif sold_out then
  state = 'SOLD_OUT'
end
return {state, string.format('%d', tonumber(score)), string.format('%d', rank), detail, new,
  from}
