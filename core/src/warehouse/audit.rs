//! `flashgate-warehouse audit`: reads every SKU and lock from the store and checks that the stock
//! adds up ([`crate::stock::audit`]). Read-only, so it is safe on a live production Redis: each
//! SKU is read by one script in one instant, and locks are found with `SCAN MATCH`, never `KEYS`.
//! On a store taking traffic, a lock or order moving between the lock read and a SKU read can
//! show as a transient mismatch: re-run to confirm before acting on one.

use crate::stock::audit::{audit, AuditReport};

use super::store::{Store, StoreResult};

/// Audits everything in `store`.
pub async fn run<S: Store>(store: &S) -> StoreResult<AuditReport> {
    let locks = store.locks().await?;
    let mut skus = Vec::new();
    for sku in store.skus().await? {
        if let Some(snapshot) = store.snapshot(sku).await? {
            skus.push(snapshot);
        }
    }
    Ok(audit(&skus, &locks))
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
