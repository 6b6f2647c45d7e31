-- 0001: the shop's order table, every status change, and the change-log entries set aside.
-- Times are unix ms as Redis records them (the `*_at` columns are the same instants as
-- timestamps, for people and reports).

CREATE TABLE orders (
    order_no     text PRIMARY KEY,          -- EVENT-N, as the Buy answered it
    event_id     bigint  NOT NULL,
    sku_id       bigint  NOT NULL,
    user_id      text    NOT NULL,
    qty          bigint  NOT NULL,
    amount       bigint  NOT NULL,          -- minor units of currency
    currency     text    NOT NULL,
    status       text    NOT NULL,          -- QUEUED | PENDING_PAYMENT | PAID | CANCELLED | EXPIRED
    created_ms   bigint  NOT NULL,          -- when the buy was decided
    deadline_ms  bigint  NOT NULL,          -- payment deadline (0 while queued)
    paid_ms      bigint,                    -- set once paid
    closed_ms    bigint,                    -- set once cancelled or expired (Redis's clock)
    payment_id   text,                      -- the payment provider's reference, once paid
    shard        text    NOT NULL,          -- the Redis shard whose change log carried it
    change_ms    bigint  NOT NULL,          -- the last applied change's stream id (ms-seq):
    change_seq   bigint  NOT NULL,          --   an older change never overwrites a newer one
    updated_at   timestamptz NOT NULL DEFAULT now(),
    created_at   timestamptz GENERATED ALWAYS AS (to_timestamp(created_ms / 1000.0)) STORED
);
CREATE INDEX orders_event ON orders (event_id, status);
CREATE INDEX orders_user ON orders (user_id);

CREATE TABLE order_events (
    shard       text   NOT NULL,
    change_ms   bigint NOT NULL,
    change_seq  bigint NOT NULL,
    order_no    text   NOT NULL,
    status      text   NOT NULL,
    record      text   NOT NULL,            -- the order record after the change (stock::record)
    PRIMARY KEY (shard, change_ms, change_seq)
);
CREATE INDEX order_events_order ON order_events (order_no);

CREATE TABLE dead_letters (
    shard       text   NOT NULL,
    change_ms   bigint NOT NULL,
    change_seq  bigint NOT NULL,
    fields      text   NOT NULL,            -- the entry as it was read
    error       text   NOT NULL,
    set_aside   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shard, change_ms, change_seq)
);
