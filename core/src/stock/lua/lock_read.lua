-- lock_read.lua — a seed-contract lock's journal as it is now, and how long it has been so.
--
-- KEYS[1]  the journal             (:lock:ORDER_ID: skus status attempt seq since order_no …)
--
-- The age is measured by this node's clock against `since`, which only this node's scripts
-- write, so warehouses whose clocks disagree still agree on how old a step is.
--
-- Replies: {status, attempt, seq, skus, age_ms}; status "" (and "0", "0", "", "0") when there is
-- no journal.
-- Example: lock 9 began 1200 ms ago and took its first SKU → {"PENDING","1","1","1:2,5:1","1200"}.
assert(#KEYS == 1 and #ARGV == 0, 'lock_read.lua: 1 KEYS, 0 ARGV')
local f = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'seq', 'skus', 'since')
if not f[1] then
  return {'', '0', '0', '', '0'}
end
local age = 0
if f[5] then
  local t = redis.call('TIME')
  age = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(f[5])
end
return {f[1], f[2] or '0', f[3] or '0', f[4] or '', tostring(age)}
