//! PostgreSQL: the pool, the versioned migrations run at start, and the one write the sink
//! makes — a batch of changes applied in one transaction.
//!
//! A batch is at most five statements whatever its size (each a multi-row `INSERT … SELECT FROM
//! unnest(arrays)`): the orders upserted, each only when the change is newer than the row's last
//! applied change (`change_ms`, `change_seq`: the change log's stream id), so a redelivered or
//! reordered change changes nothing; the changes inserted into `order_events` keyed by
//! (shard, stream id) `ON CONFLICT DO NOTHING`; the seed-contract locks' rows (`stock_locks`,
//! one per lock and SKU) and steps (`stock_lock_events`) the same two ways; and poison entries
//! into `dead_letters`. Applying the same batch twice leaves the tables as once.
//!
//! Migrations are SQL files under `orders/migrations/`, numbered, applied in order in one
//! transaction each under an advisory lock (two sinks starting together apply each once), and
//! recorded in `schema_migrations`. Hand-rolled rather than refinery or sqlx: twenty lines over
//! the driver the sink uses anyway, no second driver or pinned driver version in the build.
//!
//! What it does not do: read Redis, acknowledge anything, or retry (the sink does).

use std::collections::HashMap;
use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use flashgate_core::stock::OrderStatus;

use crate::change::{Change, Entry, LockChange, Poison};

/// Every migration: version, name, SQL. Append only; never edit one that has shipped.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "orders", include_str!("../migrations/0001_orders.sql")),
    (
        2,
        "stock_locks",
        include_str!("../migrations/0002_stock_locks.sql"),
    ),
];

/// What the sink's database side fails with.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is not a PostgreSQL connection string.
    #[error("orders database URL: {0}")]
    Url(String),
    /// No connection could be had from the pool.
    #[error("orders database unreachable: {0}")]
    Pool(String),
    /// A statement or the commit failed.
    #[error("orders database: {0}")]
    Sql(#[from] tokio_postgres::Error),
}

/// A pool of at most `size` connections to `url` (`postgres://user@host:port/db`).
pub fn pool(url: &str, size: usize) -> Result<Pool, DbError> {
    let config = tokio_postgres::Config::from_str(url).map_err(|e| DbError::Url(e.to_string()))?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            // A connection closed under it (PostgreSQL restarted) is noticed and replaced.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|e| DbError::Pool(e.to_string()))
}

async fn client(pool: &Pool) -> Result<deadpool_postgres::Object, DbError> {
    pool.get().await.map_err(|e| DbError::Pool(e.to_string()))
}

/// Applies every migration not yet applied; answers the versions this call applied.
pub async fn migrate(pool: &Pool) -> Result<Vec<i32>, DbError> {
    let mut client = client(pool).await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version int PRIMARY KEY, name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS {
        let tx = client.transaction().await?;
        // One migrator at a time; the others find the version applied when they get the lock.
        tx.execute("SELECT pg_advisory_xact_lock(7016001)", &[])
            .await?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[&version],
            )
            .await?
            .is_some();
        if !done {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[&version, &name],
            )
            .await?;
            applied.push(version);
        }
        tx.commit().await?;
    }
    Ok(applied)
}

/// One read of change-log entries, sorted by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Order changes.
    pub changes: Vec<Change>,
    /// Seed-contract lock steps.
    pub locks: Vec<LockChange>,
    /// Entries that are neither.
    pub poison: Vec<Poison>,
}

impl Batch {
    /// `entries`, sorted by kind (each kind keeps the log's order).
    pub fn of(entries: &[Entry]) -> Self {
        let mut batch = Self::default();
        for entry in entries {
            match entry {
                Entry::Change(c) => batch.changes.push(c.clone()),
                Entry::Lock(l) => batch.locks.push(l.clone()),
                Entry::Poison(p) => batch.poison.push(p.clone()),
            }
        }
        batch
    }
}

/// What one applied batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Order rows inserted or moved forward.
    pub rows: u64,
    /// Changes recorded in `order_events` (a redelivered one is not counted again).
    pub events: u64,
    /// Lock rows (`stock_locks`) inserted or moved forward.
    pub lock_rows: u64,
    /// Lock steps recorded in `stock_lock_events`.
    pub lock_events: u64,
    /// Entries set aside in `dead_letters`.
    pub poison: u64,
}

const UPSERT_ORDERS: &str = "
INSERT INTO orders (order_no, event_id, sku_id, user_id, qty, amount, currency, status,
                    created_ms, deadline_ms, paid_ms, closed_ms, payment_id, shard,
                    change_ms, change_seq)
SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[], $5::int8[], $6::int8[],
                     $7::text[], $8::text[], $9::int8[], $10::int8[], $11::int8[], $12::int8[],
                     $13::text[], $14::text[], $15::int8[], $16::int8[])
ON CONFLICT (order_no) DO UPDATE SET
    status = EXCLUDED.status, deadline_ms = EXCLUDED.deadline_ms, paid_ms = EXCLUDED.paid_ms,
    closed_ms = EXCLUDED.closed_ms, payment_id = EXCLUDED.payment_id,
    change_ms = EXCLUDED.change_ms, change_seq = EXCLUDED.change_seq, updated_at = now()
WHERE (orders.change_ms, orders.change_seq) < (EXCLUDED.change_ms, EXCLUDED.change_seq)";

const INSERT_EVENTS: &str = "
INSERT INTO order_events (shard, change_ms, change_seq, order_no, status, record)
SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[])
ON CONFLICT DO NOTHING";

const UPSERT_LOCKS: &str = "
INSERT INTO stock_locks (order_id, sku_id, attempt, qty, status, part, shard, change_ms,
                         change_seq)
SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::text[], $6::text[],
                     $7::text[], $8::int8[], $9::int8[])
ON CONFLICT (order_id, sku_id) DO UPDATE SET
    attempt = EXCLUDED.attempt, qty = EXCLUDED.qty, status = EXCLUDED.status,
    part = EXCLUDED.part, shard = EXCLUDED.shard, change_ms = EXCLUDED.change_ms,
    change_seq = EXCLUDED.change_seq, updated_at = now()
WHERE (stock_locks.change_ms, stock_locks.change_seq) < (EXCLUDED.change_ms, EXCLUDED.change_seq)";

const INSERT_LOCK_EVENTS: &str = "
INSERT INTO stock_lock_events (shard, change_ms, change_seq, order_id, sku_id, status, part)
SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::text[],
                     $7::text[])
ON CONFLICT DO NOTHING";

const INSERT_POISON: &str = "
INSERT INTO dead_letters (shard, change_ms, change_seq, fields, error)
SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[])
ON CONFLICT DO NOTHING";

/// Applies `batch`'s changes and lock steps and sets its poison aside, in one transaction.
pub async fn apply(pool: &Pool, batch: &Batch) -> Result<Applied, DbError> {
    let Batch {
        changes,
        locks,
        poison,
    } = batch;
    let mut client = client(pool).await?;
    let tx = client.transaction().await?;
    let mut applied = Applied::default();
    if !changes.is_empty() {
        // One row per order in a statement (ON CONFLICT cannot touch a row twice): its newest.
        let mut newest: HashMap<&str, &Change> = HashMap::new();
        for c in changes {
            let slot = newest.entry(c.order.order_no.as_str()).or_insert(c);
            if c.id > slot.id {
                *slot = c;
            }
        }
        let rows: Vec<&Change> = newest.into_values().collect();
        let col = |f: &dyn Fn(&Change) -> String| rows.iter().map(|c| f(c)).collect::<Vec<_>>();
        let num = |f: &dyn Fn(&Change) -> i64| rows.iter().map(|c| f(c)).collect::<Vec<_>>();
        let opt =
            |f: &dyn Fn(&Change) -> Option<i64>| rows.iter().map(|c| f(c)).collect::<Vec<_>>();
        let closed = |c: &Change| {
            matches!(
                c.order.status,
                OrderStatus::Cancelled | OrderStatus::Expired
            )
            .then_some(c.id.ms)
        };
        applied.rows = tx
            .execute(
                UPSERT_ORDERS,
                &[
                    &col(&|c| c.order.order_no.clone()),
                    &num(&|c| c.order.event_id),
                    &num(&|c| c.order.sku_id),
                    &col(&|c| c.order.user_id.clone()),
                    &num(&|c| c.order.qty),
                    &num(&|c| c.order.amount),
                    &col(&|c| c.order.currency.as_str().to_owned()),
                    &col(&|c| c.order.status.as_str().to_owned()),
                    &num(&|c| c.order.created_ms),
                    &num(&|c| c.order.deadline_ms),
                    &opt(&|c| c.order.payment.as_ref().map(|p| p.paid_ms)),
                    &opt(&closed),
                    &rows
                        .iter()
                        .map(|c| c.order.payment.as_ref().map(|p| p.id.clone()))
                        .collect::<Vec<_>>(),
                    &col(&|c| c.shard.clone()),
                    &num(&|c| c.id.ms),
                    &num(&|c| c.id.seq),
                ],
            )
            .await?;
        let all = |f: &dyn Fn(&Change) -> String| changes.iter().map(f).collect::<Vec<_>>();
        applied.events = tx
            .execute(
                INSERT_EVENTS,
                &[
                    &all(&|c| c.shard.clone()),
                    &changes.iter().map(|c| c.id.ms).collect::<Vec<_>>(),
                    &changes.iter().map(|c| c.id.seq).collect::<Vec<_>>(),
                    &all(&|c| c.order.order_no.clone()),
                    &all(&|c| c.order.status.as_str().to_owned()),
                    &all(&|c| c.record.clone()),
                ],
            )
            .await?;
    }
    if !locks.is_empty() {
        // One row per (lock, SKU) in a statement: its newest step.
        let mut newest: HashMap<(i64, i64), &LockChange> = HashMap::new();
        for l in locks {
            let slot = newest.entry((l.order_id, l.sku)).or_insert(l);
            if l.id > slot.id {
                *slot = l;
            }
        }
        let rows: Vec<&LockChange> = newest.into_values().collect();
        applied.lock_rows = tx
            .execute(
                UPSERT_LOCKS,
                &[
                    &rows.iter().map(|l| l.order_id).collect::<Vec<_>>(),
                    &rows.iter().map(|l| l.sku).collect::<Vec<_>>(),
                    &rows.iter().map(|l| l.part.attempt).collect::<Vec<_>>(),
                    &rows.iter().map(|l| l.part.num).collect::<Vec<_>>(),
                    &rows.iter().map(|l| l.status.as_str()).collect::<Vec<_>>(),
                    &rows.iter().map(|l| l.part.encode()).collect::<Vec<_>>(),
                    &rows.iter().map(|l| l.shard.as_str()).collect::<Vec<_>>(),
                    &rows.iter().map(|l| l.id.ms).collect::<Vec<_>>(),
                    &rows.iter().map(|l| l.id.seq).collect::<Vec<_>>(),
                ],
            )
            .await?;
        applied.lock_events = tx
            .execute(
                INSERT_LOCK_EVENTS,
                &[
                    &locks.iter().map(|l| l.shard.as_str()).collect::<Vec<_>>(),
                    &locks.iter().map(|l| l.id.ms).collect::<Vec<_>>(),
                    &locks.iter().map(|l| l.id.seq).collect::<Vec<_>>(),
                    &locks.iter().map(|l| l.order_id).collect::<Vec<_>>(),
                    &locks.iter().map(|l| l.sku).collect::<Vec<_>>(),
                    &locks.iter().map(|l| l.status.as_str()).collect::<Vec<_>>(),
                    &locks.iter().map(|l| l.part.encode()).collect::<Vec<_>>(),
                ],
            )
            .await?;
    }
    if !poison.is_empty() {
        applied.poison = tx
            .execute(
                INSERT_POISON,
                &[
                    &poison.iter().map(|p| p.shard.clone()).collect::<Vec<_>>(),
                    &poison.iter().map(|p| p.id.ms).collect::<Vec<_>>(),
                    &poison.iter().map(|p| p.id.seq).collect::<Vec<_>>(),
                    &poison.iter().map(|p| p.fields.clone()).collect::<Vec<_>>(),
                    &poison.iter().map(|p| p.error.clone()).collect::<Vec<_>>(),
                ],
            )
            .await?;
    }
    tx.commit().await?;
    Ok(applied)
}
