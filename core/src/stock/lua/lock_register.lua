-- lock_register.lua — enter a lock in the directories before its journal moves into a state
-- that repair must be able to find (PENDING, FINISHING, RELEASING).
--
-- KEYS[1]  the open directory      ({locks:N}:open, sorted set order id → seq)
-- KEYS[2]  the full directory      ({locks:N}:all, set of every order id ever begun)
-- ARGV[1]  order id   ARGV[2] the seq the journal will have after the move (read seq + 1)
--
-- The score only grows (GT), and lock_settle.lua removes an entry only when the caller saw the
-- journal settled at a seq at least the score: a settle that was read before a new move
-- registered can never drop the entry that move needs. N is the order id mod 16, so the
-- directories spread over 16 slots and are listed without SCAN (which sees one cluster node).
--
-- Replies: {"OK"}
-- Example: lock 9 ABORTED at seq 3, about to begin: register(9, 4) → open {9: 4}, all ∋ 9.
assert(#KEYS == 2 and #ARGV == 2, 'lock_register.lua: 2 KEYS, 2 ARGV')
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
return {'OK'}
