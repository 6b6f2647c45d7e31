-- lock_move.lua — one transition of a seed-contract lock's journal, compare-and-set.
--
-- KEYS[1]  the journal             (:lock:ORDER_ID)
-- ARGV[1]  the seq the caller read   ARGV[2] the status it read   ARGV[3] the status to move to
--
-- Moves only when the journal is still at that seq and status (every transition bumps seq, so
-- a seq names one state of one attempt) and the transition is one of the saga's:
--   PENDING → LOCKED | ABORTING,  ABORTING → ABORTED,
--   LOCKED → FINISHING | RELEASING,  FINISHING → FINISHED,  RELEASING → RELEASED.
-- Two callers racing for one state (a commit and a repair's roll-back) cannot both win.
--
-- Replies: {"MOVED" | "STAYED", status, attempt, seq, skus} — the journal after the call.
-- Example: lock 9 PENDING at seq 4: move(4, "PENDING", "LOCKED") → {"MOVED","LOCKED","2","5","1:2"};
-- a repair's move(4, "PENDING", "ABORTING") afterwards → {"STAYED","LOCKED","2","5","1:2"}.
assert(#KEYS == 1 and #ARGV == 3, 'lock_move.lua: 1 KEYS, 3 ARGV')
local next = {
  PENDING = {LOCKED = true, ABORTING = true},
  ABORTING = {ABORTED = true},
  LOCKED = {FINISHING = true, RELEASING = true},
  FINISHING = {FINISHED = true},
  RELEASING = {RELEASED = true},
}
local f = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'seq', 'skus')
local status, attempt, seq = f[1] or '', f[2] or '0', tonumber(f[3] or '0')
local allowed = next[status]
if status ~= ARGV[2] or seq ~= tonumber(ARGV[1]) or not allowed or not allowed[ARGV[3]] then
  return {'STAYED', status, attempt, tostring(seq), f[4] or ''}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'seq', seq + 1, 'since', now)
return {'MOVED', ARGV[3], attempt, tostring(seq + 1), f[4] or ''}
