-- 0002: the seed contract's stock locks (`SKuStockLock` / `SkuStockUnlock`), one row per lock
-- and SKU, every step for history, and a view of each lock as a whole.
--
-- A lock names several SKUs, each in its own Redis shard, so its steps reach PostgreSQL per
-- SKU, each SKU's in order. `status` is the lock status the SKU's last step carried the lock
-- towards: LOCKED (its units taken; the lock is LOCKED once every SKU of the attempt is),
-- ABORTED (a lock that failed — a short SKU, or a repair rolled it back — gave them back, or
-- never took them), RELEASED (unlocked without a sale: back to available) or FINISHED
-- (unlocked as sold). `part` is the SKU's part as Redis holds it (`attempt:num:STATE`).

CREATE TABLE stock_locks (
    order_id     bigint NOT NULL,           -- the lock's order id, as SKuStockLock named it
    sku_id       bigint NOT NULL,
    attempt      bigint NOT NULL,           -- the lock's attempt (a failed lock tried again: +1)
    qty          bigint NOT NULL,
    status       text   NOT NULL,           -- LOCKED | ABORTED | RELEASED | FINISHED
    part         text   NOT NULL,
    shard        text   NOT NULL,           -- the Redis shard whose change log carried it
    change_ms    bigint NOT NULL,           -- the last applied step's stream id (ms-seq):
    change_seq   bigint NOT NULL,           --   an older step never overwrites a newer one
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, sku_id)
);

CREATE TABLE stock_lock_events (
    shard       text   NOT NULL,
    change_ms   bigint NOT NULL,
    change_seq  bigint NOT NULL,
    order_id    bigint NOT NULL,
    sku_id      bigint NOT NULL,
    status      text   NOT NULL,
    part        text   NOT NULL,
    PRIMARY KEY (shard, change_ms, change_seq)
);
CREATE INDEX stock_lock_events_order ON stock_lock_events (order_id);

-- Each lock as a whole: its latest attempt, and one status when every SKU's last step is of
-- that attempt and they agree, else IN_PROGRESS (a step still on its way or not yet drained).
CREATE VIEW seed_locks AS
WITH latest AS (SELECT order_id, max(attempt) AS attempt FROM stock_locks GROUP BY order_id)
SELECT l.order_id, a.attempt,
       count(*)   AS skus,
       sum(l.qty)::bigint AS units,
       CASE WHEN bool_and(l.attempt = a.attempt) AND count(DISTINCT l.status) = 1
            THEN min(l.status) ELSE 'IN_PROGRESS' END AS status,
       max(l.updated_at) AS updated_at
FROM stock_locks l JOIN latest a USING (order_id)
GROUP BY l.order_id, a.attempt;
