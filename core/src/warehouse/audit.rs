//! `flashgate-warehouse audit`: reads every SKU and lock from the store and checks that the stock
//! adds up ([`crate::stock::audit`]). Read-only, so it is safe on a live production Redis: each
//! SKU is read in bounded chunks (`HSCAN`/`SSCAN` of a few hundred entries, no script), so no
//! command blocks Redis for long at any size, and locks are listed from their directory, never
//! with `KEYS` or `SCAN`. On a store taking traffic, a lock or order moving between the lock read
//! and a SKU read, or between two chunks of a SKU (a shard is read again while its counters
//! move, up to three times), can show as a transient mismatch, and a lock between its per-SKU
//! steps as in flight: re-run to confirm before acting on one.
//!
//! A retired sale (ended, every order final, see `--retain-closed`) is no longer audited as a
//! sale (its per-user counts and request ids expire); its orders stay in the orderbook and are
//! checked with the SKU's counters, which keep every unit it sold.
//!
//! With `--repair` it first finishes the seed-contract locks a crash left between steps
//! ([`SeedLocks::repair_locks`](super::store::SeedLocks::repair_locks)) and prints what it did; that is the only write it makes.

use std::time::Duration;

use crate::stock::audit::{audit_records, AuditReport};
use crate::stock::lock::LockRepairs;

use super::store::{Store, StoreResult};

/// Audits everything in `store`.
pub async fn run<S: Store>(store: &S) -> StoreResult<AuditReport> {
    let records = store.lock_records().await?;
    let mut skus = Vec::new();
    for sku in store.skus().await? {
        if let Some(snapshot) = store.snapshot(sku).await? {
            skus.push(snapshot);
        }
    }
    Ok(audit_records(&skus, &records))
}

/// Repairs the locks that have stood still between steps for `older_than`.
pub async fn repair<S: Store>(store: &S, older_than: Duration) -> StoreResult<LockRepairs> {
    store.repair_locks(older_than).await
}

/// The report as a person reads it.
pub fn render(report: &AuditReport) -> String {
    let mut out = format!(
        "audit: {} SKUs, {} sales, {} orders, {} locks: ",
        report.skus, report.sales, report.orders, report.locks
    );
    if report.is_clean() {
        out.push_str("clean (every unit accounted for, every win has exactly one order)\n");
    } else {
        out.push_str(&format!("{} VIOLATIONS\n", report.violations.len()));
        for violation in &report.violations {
            out.push_str(&format!("  - {violation}\n"));
        }
    }
    out
}

/// What a repair did, as a person reads it.
pub fn render_repairs(repairs: &LockRepairs) -> String {
    if repairs.is_empty() {
        return "repair: no seed-contract lock needed repair\n".to_owned();
    }
    let ids = |ids: &[i64]| {
        ids.iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::new();
    if !repairs.rolled_back.is_empty() {
        out.push_str(&format!(
            "repair: rolled back {} interrupted lock(s) (units back to available): order_id {}\n",
            repairs.rolled_back.len(),
            ids(&repairs.rolled_back)
        ));
    }
    if !repairs.rolled_forward.is_empty() {
        out.push_str(&format!(
            "repair: completed {} interrupted unlock(s): order_id {}\n",
            repairs.rolled_forward.len(),
            ids(&repairs.rolled_forward)
        ));
    }
    for (order_id, why) in &repairs.failed {
        out.push_str(&format!(
            "repair: order_id {order_id} NOT repaired (its records contradict each other): {why}\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repairs_read_as_sentences() {
        assert_eq!(
            render_repairs(&LockRepairs::default()),
            "repair: no seed-contract lock needed repair\n"
        );
        let out = render_repairs(&LockRepairs {
            rolled_back: vec![7, 9],
            rolled_forward: vec![3],
            failed: vec![(4, "part 1:2:RELEASED".into())],
        });
        assert!(
            out.contains(
                "rolled back 2 interrupted lock(s) (units back to available): order_id 7, 9"
            ),
            "{out}"
        );
        assert!(
            out.contains("completed 1 interrupted unlock(s): order_id 3"),
            "{out}"
        );
        assert!(out.contains("order_id 4 NOT repaired"), "{out}");
    }
}
