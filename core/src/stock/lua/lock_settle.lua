-- lock_settle.lua — drop a lock from the open directory once its journal has settled.
--
-- KEYS[1]  the open directory      ({locks:N}:open)
-- ARGV[1]  order id   ARGV[2] the seq at which the caller saw the journal settled (LOCKED,
--          ABORTED, FINISHED or RELEASED)
--
-- Removes the entry only if its score is at most that seq: a higher score was registered by a
-- move that came after the caller's read, whose journal repair must still find.
--
-- Replies: {"SETTLED"} | {"KEPT"}
-- Example: open {9: 4}: settle(9, 5) → {"SETTLED"}; open {9: 6}: settle(9, 5) → {"KEPT"}.
assert(#KEYS == 1 and #ARGV == 2, 'lock_settle.lua: 1 KEYS, 2 ARGV')
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return {'SETTLED'}
end
return {'KEPT'}
