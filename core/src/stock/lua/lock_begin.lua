-- lock_begin.lua — Warehouse.SKuStockLock, step 1: open a fresh attempt in the journal.
--
-- KEYS[1]     the journal          (:lock:ORDER_ID)
-- ARGV[1]     the seq the caller read (0 when there was no journal)
-- ARGV[2]     the SKU map, canonical "sku:num,sku:num" (ascending SKU)
-- ARGV[3..7]  order_no, consignee, phone, address, note
--
-- Compare-and-set: only a journal that is absent or ABORTED, and still at the seq the caller
-- read, becomes PENDING, with attempt + 1 (the fencing number of this attempt's per-SKU steps)
-- and seq + 1. Anything else is left alone and answered as it is, for the caller to decide.
-- `since` is this node's clock (ms), for repair's age test.
--
-- Replies: {"BEGUN" | "STAYED", status, attempt, seq, skus} — the journal after the call.
-- Example: lock 9 ABORTED at attempt 1, seq 3: begin(3, "1:2") → {"BEGUN","PENDING","2","4","1:2"};
-- the same call again → {"STAYED","PENDING","2","4","1:2"}.
assert(#KEYS == 1 and #ARGV == 7, 'lock_begin.lua: 1 KEYS, 7 ARGV')
local f = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'seq', 'skus')
local status, attempt, seq = f[1] or '', tonumber(f[2] or '0'), tonumber(f[3] or '0')
if seq ~= tonumber(ARGV[1]) or (status ~= '' and status ~= 'ABORTED') then
  return {'STAYED', status, tostring(attempt), tostring(seq), f[4] or ''}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'status', 'PENDING', 'attempt', attempt + 1, 'seq', seq + 1,
  'since', now, 'skus', ARGV[2], 'order_no', ARGV[3], 'consignee', ARGV[4], 'phone', ARGV[5],
  'address', ARGV[6], 'note', ARGV[7])
return {'BEGUN', 'PENDING', tostring(attempt + 1), tostring(seq + 1), ARGV[2]}
