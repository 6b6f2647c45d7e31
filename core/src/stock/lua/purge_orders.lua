-- purge_orders.lua — the sweeper, a retention time after a sale retired: delete a range of its
-- orders from the shard's orderbook, keeping what they sold counted.
--
-- KEYS[1]  the shard's orders      ({sku:ID}:orderbook)
-- KEYS[2]  stock hash of the shard ({sku:ID}:stock)
-- ARGV[1]  event id   ARGV[2] sub-pools of the sale   ARGV[3] this shard's sub-pool number
-- ARGV[4]  first k   ARGV[5] last k (the orders EID-((k-1)*subpools+sub+1), k = first…last)
--
-- Every order of a retired sale is final, so none holds units. A PAID one's units stay in the
-- shard's `sold`; deleting its record moves them to `sold_purged`, which the audit counts with
-- the paid orders (sold = paid orders + finished locks + sold_purged). Deleting and counting
-- are one step per range, and an order already deleted is skipped: a range purged again
-- changes nothing.
--
-- Replies: {"OK", orders deleted}
-- Example: 7-1 PAID qty 2, 7-2 CANCELLED: purge(7, 1, 0, 1, 2) → {"OK","2"}, sold_purged +2;
-- again → {"OK","0"}.
assert(#KEYS == 2 and #ARGV == 5, 'purge_orders.lua: 2 KEYS, 5 ARGV')
local subpools, sub = tonumber(ARGV[2]), tonumber(ARGV[3])
local deleted, sold = 0, 0
for k = tonumber(ARGV[4]), tonumber(ARGV[5]) do
  local order_no = ARGV[1] .. '-' .. string.format('%d', (k - 1) * subpools + sub + 1)
  local raw = redis.call('HGET', KEYS[1], order_no)
  if raw then
    local event, sku, user, qty, status, deadline, created, amount, currency, payment, paid =
      string.match(raw, '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)$')
    assert(event, 'order ' .. order_no .. ': not an order record')
    if status == 'PAID' then
      sold = sold + tonumber(qty)
    end
    redis.call('HDEL', KEYS[1], order_no)
    deleted = deleted + 1
  end
end
if sold > 0 then
  redis.call('HINCRBY', KEYS[2], 'sold_purged', sold)
end
return {'OK', string.format('%d', deleted)}
