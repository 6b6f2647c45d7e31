-- create_order.lua — the order worker: turn wins of one shard (up to call::CREATE_BATCH) into
-- orders awaiting payment, each once, and acknowledge their stream entries in the same atomic step.
--
-- KEYS[1]  the shard's orders      ({sku:ID}:orderbook: order number → record, see stock::record)
-- KEYS[2]  payment deadlines       ({sku:ID}:deadlines: order number → deadline ms)
-- KEYS[3]  the shard's order stream ({sku:ID}:orders)
-- ARGV[1]  now (unix ms)
-- ARGV[2]  key prefix of the shard's sales ("PREFIX:{sku:ID}:ev:"; a sale's hash is this
--          followed by its id, in the same slot): each order's pay window is its sale's
-- ARGV[3]  consumer group to acknowledge in ("": acknowledge nothing, create only)
-- ARGV[4]  the wins' order numbers, separated by single spaces
-- ARGV[5]  their stream entry ids, in the same order, separated by single spaces ("" with no group)
-- KEYS[4]  the shard's change log ({sku:ID}:changes)   ARGV[6] "1": append to it, "0": do not
--
-- Only a QUEUED order changes; a second delivery of the same win (a reclaimed stream entry)
-- finds it created already and changes nothing, as does a win cancelled before the worker came.
-- Every win whose order exists is acknowledged (XACK) here, with its creation: a crash before
-- this script leaves the whole batch pending for a reclaim, a crash after it leaves none, so an
-- order is created exactly once however often its entry is delivered. A win whose order does not
-- exist is answered NOT_FOUND and left unacknowledged. Deleting the acknowledged entries is
-- stream_ack.lua's, which the worker runs next (a crash between leaves them for its next trim).
--
-- Per win: one field of one HMGET, one of one HSET and one of one ZADD, and its change-log XADD;
-- only the record's status and deadline are rewritten (the rest is copied as it stands). A win
-- named twice in one call is created once (the second is ALREADY), as in two calls.
--
-- The change log (KEYS[4], with ARGV[6] "1"): each order this call changes is also appended to
-- the shard's change log as {o = order number, r = its record after the change}, in the same
-- atomic step, for the order sink (flashgate-orders) to carry into PostgreSQL; "0" appends
-- nothing (the warehouse's --order-log off).
--
-- Replies: one per win, in order: "CREATED" | "ALREADY" | "NOT_FOUND".
-- Example: orders 7-1 (QUEUED) and 7-2 (CANCELLED), pay window 60000, now 1000, group
-- "order-workers", entries "5-0 5-1" → {"CREATED","ALREADY"}: 7-1 PENDING_PAYMENT with
-- deadline 61000, both entries acknowledged, and with ARGV[6] "1" one change
-- {o "7-1", r "7\31…\31PENDING_PAYMENT\3161000\31…"} appended to the change log; again → {"ALREADY","ALREADY"}.
assert(#KEYS == 4 and #ARGV == 6, 'create_order.lua: 4 KEYS, 6 ARGV')
local log = ARGV[6] == '1'
local now = tonumber(ARGV[1])
local orders, entries = {}, {}
for order_no in string.gmatch(ARGV[4], '%S+') do
  orders[#orders + 1] = order_no
end
for id in string.gmatch(ARGV[5], '%S+') do
  entries[#entries + 1] = id
end
local raws = redis.call('HMGET', KEYS[1], unpack(orders))
local windows, replies, acked, records, due, seen = {}, {}, {}, {}, {}, {}
for i, order_no in ipairs(orders) do
  local raw = raws[i]
  if not raw then
    replies[i] = 'NOT_FOUND'
  else
    local event, kept, status, rest =
      string.match(raw, '^([^\31]*)(\31[^\31]*\31[^\31]*\31[^\31]*\31)([^\31]*)\31[^\31]*(\31[^\31]*\31[^\31]*\31[^\31]*\31[^\31]*\31[^\31]*)$')
    assert(event, 'order ' .. order_no .. ': not an order record')
    if status ~= 'QUEUED' or seen[order_no] then
      replies[i] = 'ALREADY'
    else
      local window = windows[event]
      if not window then
        window = tonumber(redis.call('HGET', ARGV[2] .. event, 'pay_window'))
        windows[event] = window
      end
      local deadline = string.format('%d', now + window)
      status = 'PENDING_PAYMENT'
      local record = event .. kept .. status .. '\31' .. deadline .. rest
      records[#records + 1] = order_no
      records[#records + 1] = record
      due[#due + 1] = deadline
      due[#due + 1] = order_no
      if log then
        redis.call('XADD', KEYS[4], '*', 'o', order_no, 'r', record)
      end
      seen[order_no] = true
      replies[i] = 'CREATED'
    end
    if entries[i] then
      acked[#acked + 1] = entries[i]
    end
  end
end
if #records > 0 then
  redis.call('HSET', KEYS[1], unpack(records))
  redis.call('ZADD', KEYS[2], unpack(due))
end
if ARGV[3] ~= '' and #acked > 0 then
  redis.call('XACK', KEYS[3], ARGV[3], unpack(acked))
end
return replies
