//! Reconciliation: every order in Redis against its row in PostgreSQL.
//!
//! An order matches when its row has the same user, quantity, amount, currency, status, deadline
//! and payment. What is merely in flight is reported apart from what is wrong: an order with a
//! change still in its shard's change log (the sink has not committed it yet), or still QUEUED
//! (the order worker has not created it yet, and creation is what logs it). Wrong: a win without
//! a row, a row that differs with nothing in flight, a row without a win (unless its sale has
//! retired and its orders were purged from Redis: those rows are the shop's archive). Each order
//! has at most one row by the primary key, so "exactly one row" is "a row".
//!
//! The seed contract's locks the same way, per lock and SKU: the part Redis holds
//! (`{sku:ID}:locks`) against its `stock_locks` row — in flight while a step of it is still in
//! the SKU's change log, wrong when they differ otherwise, a part without a row, or a row
//! without a part (Redis keeps every part, RELEASED tombstones included).
//!
//! One Redis or a Redis Cluster alike: every read names one key (an orderbook, a change log).
//!
//! What it does not do: repair anything.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::Pool;
use redis::{AsyncCommands, FromRedisValue};

use flashgate_core::stock::{event_of_order, record, Keys, Order};
use flashgate_core::warehouse::store::RedisConnection;

use crate::sink::{self, SinkError};

/// What the audit found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Orders in Redis.
    pub orders: usize,
    /// Rows in PostgreSQL.
    pub rows: usize,
    /// Orders whose row matches.
    pub matched: usize,
    /// Orders not yet carried (a change in the log, or not yet created): order → why.
    pub in_flight: Vec<(String, String)>,
    /// Rows of retired sales whose orders were purged from Redis.
    pub archived: usize,
    /// Seed-contract lock parts in Redis (one per lock and SKU).
    pub lock_parts: usize,
    /// Rows in `stock_locks`.
    pub lock_rows: usize,
    /// Lock parts whose row matches.
    pub locks_matched: usize,
    /// What is wrong: order → what.
    pub wrong: Vec<(String, String)>,
}

impl Report {
    /// Nothing wrong (in-flight orders may remain).
    pub fn is_consistent(&self) -> bool {
        self.wrong.is_empty()
    }

    /// Nothing wrong and nothing in flight: Redis and PostgreSQL agree.
    pub fn is_clean(&self) -> bool {
        self.wrong.is_empty() && self.in_flight.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "orders in Redis {}, rows in PostgreSQL {}, matched {}, in flight {}, archived {}, wrong {}",
            self.orders,
            self.rows,
            self.matched,
            self.in_flight.len(),
            self.archived,
            self.wrong.len()
        )?;
        writeln!(
            f,
            "lock parts in Redis {}, rows in PostgreSQL {}, matched {}",
            self.lock_parts, self.lock_rows, self.locks_matched
        )?;
        for (order, why) in self.in_flight.iter().take(20) {
            writeln!(f, "  in flight {order}: {why}")?;
        }
        for (order, why) in self.wrong.iter().take(50) {
            writeln!(f, "  WRONG {order}: {why}")?;
        }
        Ok(())
    }
}

/// A row as the audit compares it (the fields Redis also holds).
fn row_of(order: &Order) -> String {
    format!(
        "{} {} {} {} {} {} {}",
        order.user_id,
        order.qty,
        order.amount,
        order.currency.as_str(),
        order.status.as_str(),
        order.deadline_ms,
        order
            .payment
            .as_ref()
            .map(|p| format!("{}@{}", p.id, p.paid_ms))
            .unwrap_or_default()
    )
}

/// Every field of hash `key` with its value, `HSCAN` a thousand at a time (a field seen twice
/// while the hash rehashes comes twice).
async fn hash_scan<K: FromRedisValue, V: FromRedisValue>(
    redis: &mut RedisConnection,
    key: &str,
) -> redis::RedisResult<Vec<(K, V)>> {
    let mut all = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, page): (u64, Vec<(K, V)>) = redis::cmd("HSCAN")
            .arg(key)
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(redis)
            .await?;
        all.extend(page);
        if next == 0 {
            return Ok(all);
        }
        cursor = next;
    }
}

/// Compares Redis (prefix `keys`) with the `orders` table.
///
/// Read in this order: the orderbooks, then the change logs, then PostgreSQL. A change that made
/// an order what its orderbook shows was logged before the orderbook was read; if the sink had
/// not committed it when the logs are read, it is in flight; if it had, the rows read afterwards
/// show it. So an order the sink is carrying right now is never reported wrong, unless it
/// changes again during the audit (a payment right after creation): on a live system, audit a
/// second time before acting on a single mismatch.
pub async fn audit(
    redis: &mut RedisConnection,
    keys: &Keys,
    pool: &Pool,
) -> Result<Report, SinkError> {
    let mut report = Report::default();
    let logs = sink::logs(redis, keys).await?;
    let mut book: Vec<(String, String)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for log in &logs {
        let page: Vec<(String, String)> = hash_scan(redis, &keys.orderbook(log.at)).await?;
        for (order_no, raw) in page {
            if seen.insert(order_no.clone()) {
                book.push((order_no, raw));
            }
        }
    }
    // Lock parts live in the SKU's own shard.
    let mut parts: Vec<((i64, i64), String)> = Vec::new();
    for log in logs.iter().filter(|log| log.at.sub == 0) {
        let sku = log.at.sku;
        let page: Vec<(i64, String)> = hash_scan(redis, &keys.lock_parts(sku)).await?;
        parts.extend(page.into_iter().map(|(oid, part)| ((oid, sku), part)));
    }
    let mut pending: HashSet<String> = HashSet::new();
    let mut pending_locks: HashSet<(i64, i64)> = HashSet::new();
    for log in &logs {
        let mut from = "-".to_owned();
        loop {
            let page: redis::streams::StreamRangeReply =
                redis.xrange_count(&log.key, &from, "+", 1000).await?;
            let last = page.ids.last().map(|e| e.id.clone());
            for entry in page.ids {
                if let Some(no) = entry.get::<String>("o") {
                    pending.insert(no);
                }
                if let Some(oid) = entry.get::<i64>("l") {
                    pending_locks.insert((oid, log.at.sku));
                }
            }
            match last {
                Some(id) => from = format!("({id}"),
                None => break,
            }
        }
    }
    let client = pool
        .get()
        .await
        .map_err(|e| crate::db::DbError::Pool(e.to_string()))?;
    let rows = client
        .query(
            "SELECT order_no, user_id, qty, amount, currency, status, deadline_ms, payment_id, paid_ms
             FROM orders",
            &[],
        )
        .await
        .map_err(crate::db::DbError::from)?;
    let mut db: HashMap<String, String> = HashMap::with_capacity(rows.len());
    for r in &rows {
        let payment = match (r.get::<_, Option<String>>(7), r.get::<_, Option<i64>>(8)) {
            (Some(id), Some(at)) => format!("{id}@{at}"),
            _ => String::new(),
        };
        db.insert(
            r.get(0),
            format!(
                "{} {} {} {} {} {} {}",
                r.get::<_, String>(1),
                r.get::<_, i64>(2),
                r.get::<_, i64>(3),
                r.get::<_, String>(4),
                r.get::<_, String>(5),
                r.get::<_, i64>(6),
                payment
            ),
        );
    }
    report.rows = db.len();
    for (order_no, raw) in book {
        report.orders += 1;
        let Some(order) = record::decode(&order_no, &raw) else {
            report
                .wrong
                .push((order_no, "its Redis record does not decode".into()));
            continue;
        };
        let want = row_of(&order);
        match db.get(&order_no) {
            Some(have) if *have == want => report.matched += 1,
            _ if pending.contains(&order_no) => report
                .in_flight
                .push((order_no, "a change not yet committed".into())),
            None if order.status == flashgate_core::stock::OrderStatus::Queued => report
                .in_flight
                .push((order_no, "QUEUED: not yet created".into())),
            None => report
                .wrong
                .push((order_no, format!("a win without a row (Redis: {want})"))),
            Some(have) => report
                .wrong
                .push((order_no, format!("Redis {want:?}, PostgreSQL {have:?}"))),
        }
    }
    let retired: HashSet<i64> = redis
        .hkeys::<_, Vec<i64>>(keys.retired_events())
        .await?
        .into_iter()
        .collect();
    for order_no in db.keys() {
        if seen.contains(order_no) {
            continue;
        }
        match event_of_order(order_no) {
            Some(event) if retired.contains(&event) => report.archived += 1,
            _ => report
                .wrong
                .push((order_no.clone(), "a row without a win in Redis".into())),
        }
    }
    let rows = client
        .query("SELECT order_id, sku_id, part FROM stock_locks", &[])
        .await
        .map_err(crate::db::DbError::from)?;
    let mut lock_rows: HashMap<(i64, i64), String> = rows
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    report.lock_rows = lock_rows.len();
    for ((oid, sku), part) in parts {
        report.lock_parts += 1;
        let name = format!("lock {oid} sku {sku}");
        match lock_rows.remove(&(oid, sku)) {
            Some(have) if have == part => report.locks_matched += 1,
            _ if pending_locks.contains(&(oid, sku)) => report
                .in_flight
                .push((name, "a step not yet committed".into())),
            None => report
                .wrong
                .push((name, format!("a part without a row (Redis: {part})"))),
            Some(have) => report
                .wrong
                .push((name, format!("Redis {part:?}, PostgreSQL {have:?}"))),
        }
    }
    for ((oid, sku), have) in lock_rows {
        report.wrong.push((
            format!("lock {oid} sku {sku}"),
            format!("a row without a part in Redis (PostgreSQL: {have})"),
        ));
    }
    report.wrong.sort();
    report.in_flight.sort();
    Ok(report)
}
