//! The audit's tests: a healthy snapshot is clean, and each kind of damage is reported.

use super::*;
use crate::stock::{Currency, Payment, Sale};

fn order(no: &str, user: &str, qty: i64, status: OrderStatus) -> Order {
    Order {
        order_no: no.into(),
        event_id: 7,
        sku_id: 1,
        user_id: user.into(),
        qty,
        status,
        deadline_ms: 99,
        created_ms: 1,
        amount: qty * 100,
        currency: Currency::parse("EUR").unwrap(),
        payment: (status == OrderStatus::Paid).then(|| Payment {
            id: format!("pay-{no}"),
            paid_ms: 50,
        }),
    }
}

/// total 10: available 5, pool 1, one pending order (2 units), one paid (1), a lock of 1.
fn healthy() -> (SkuSnapshot, Vec<LockSnapshot>) {
    let sale = SaleSnapshot {
        state: SaleState {
            sale: Sale {
                id: 7,
                sku: 1,
                pool: 4,
                start_ms: 0,
                end_ms: 10,
                per_user_limit: 2,
                pay_window_ms: 5,
                subpools: 1,
                price: 100,
                currency: Currency::parse("EUR").unwrap(),
                limit_counts_held: false,
            },
            remaining: 1,
            closed: false,
        },
        sub: 0,
        seq: 2,
        counted: [("ann".to_owned(), 2), ("bob".to_owned(), 1)]
            .into_iter()
            .collect(),
        requests: [
            (("ann".to_owned(), "r1".to_owned()), "7-1".to_owned()),
            (("bob".to_owned(), "r2".to_owned()), "7-2".to_owned()),
        ]
        .into_iter()
        .collect(),
    };
    let snap = SkuSnapshot {
        sku: 1,
        counters: Counters {
            total: 10,
            available: 5,
            locked: 3,
            sold: 1,
            sold_purged: 0,
        },
        sales: vec![sale],
        orders: vec![
            order("7-1", "ann", 2, OrderStatus::PendingPayment),
            order("7-2", "bob", 1, OrderStatus::Paid),
        ],
        moving: 0,
    };
    let locks = vec![LockSnapshot {
        order_id: 1,
        sku_nums: [(1, 1)].into_iter().collect(),
        status: LockStatus::Locked,
    }];
    (snap, locks)
}

#[test]
fn a_healthy_store_is_clean() {
    let (snap, locks) = healthy();
    let report = audit(&[snap], &locks);
    assert!(report.is_clean(), "{:?}", report.violations);
    assert_eq!(
        (report.skus, report.sales, report.orders, report.locks),
        (1, 1, 2, 1)
    );
}

#[test]
fn each_kind_of_damage_is_reported() {
    let (snap, locks) = healthy();

    let mut lost_unit = snap.clone();
    lost_unit.counters.available -= 1;
    assert!(matches!(
        audit(&[lost_unit], &locks).violations[..],
        [Violation::NotConserved { .. }]
    ));

    // An order both paid and released: the units came back while sold still counts them.
    let mut double = snap.clone();
    double.counters.sold -= 1;
    double.counters.available += 1;
    assert!(audit(&[double], &locks)
        .violations
        .contains(&Violation::SoldMismatch {
            sku: 1,
            counter: 0,
            accounted: 1
        }));

    let mut lost_win = snap.clone();
    lost_win.orders.remove(0);
    let found = audit(&[lost_win], &locks).violations;
    assert!(
        found.contains(&Violation::LostWin {
            event: 7,
            order_no: "7-1".into()
        }),
        "{found:?}"
    );
    assert!(
        found.contains(&Violation::MissingOrder {
            event: 7,
            order_no: "7-1".into()
        }),
        "{found:?}"
    );

    let mut twice = snap.clone();
    twice.sales[0]
        .requests
        .insert(("ann".into(), "r9".into()), "7-1".into());
    assert!(audit(&[twice], &locks)
        .violations
        .contains(&Violation::OrderBuys {
            order_no: "7-1".into(),
            buys: 2
        }));

    let mut miscounted = snap.clone();
    miscounted.sales[0].counted.insert("bob".into(), 0);
    assert!(audit(&[miscounted], &locks)
        .violations
        .contains(&Violation::CountMismatch {
            event: 7,
            user: "bob".into(),
            counted: 0,
            orders: 1
        }));

    let mut unpaid = snap.clone();
    unpaid.orders[1].payment = None;
    assert!(audit(&[unpaid], &locks)
        .violations
        .contains(&Violation::PaidWithoutPayment {
            order_no: "7-2".into()
        }));

    let released_lock = vec![LockSnapshot {
        status: LockStatus::Released,
        ..locks[0].clone()
    }];
    assert!(audit(std::slice::from_ref(&snap), &released_lock)
        .violations
        .contains(&Violation::LockedMismatch {
            sku: 1,
            counter: 3,
            held: 2
        }));

    let mut no_deadline = snap;
    no_deadline.orders[0].deadline_ms = 0;
    assert!(audit(&[no_deadline], &locks)
        .violations
        .contains(&Violation::NoDeadline {
            order_no: "7-1".into()
        }));
}

#[test]
fn a_released_order_still_counts_unless_the_sale_counts_units_held() {
    // Ann cancels her order: its 2 units go back to the pool, and the lock stays as it was.
    let (mut snap, locks) = healthy();
    snap.orders[0].status = OrderStatus::Cancelled;
    snap.counters.locked -= 2;
    snap.sales[0].state.remaining += 2;
    assert!(audit(std::slice::from_ref(&snap), &locks).is_clean());

    let mut held = snap.clone();
    held.sales[0].state.sale.limit_counts_held = true;
    assert!(audit(&[held.clone()], &locks)
        .violations
        .contains(&Violation::CountMismatch {
            event: 7,
            user: "ann".into(),
            counted: 2,
            orders: 0
        }));
    held.sales[0].counted.insert("ann".into(), 0);
    assert!(audit(&[held], &locks).is_clean());
}

/// The healthy store's lock as the Redis store records it: attempt 2 (attempt 1 failed and
/// left a tombstone on sku 1), LOCKED, one part.
fn journaled() -> (SkuSnapshot, LockRecords) {
    use crate::stock::lock::{JournalSnapshot, PartSnapshot};
    let (snap, _) = healthy();
    let part = |order_id, attempt, num, state| PartSnapshot {
        order_id,
        sku: 1,
        part: Part {
            attempt,
            num,
            state,
        },
    };
    let records = LockRecords {
        journals: vec![
            JournalSnapshot {
                order_id: 1,
                status: JournalStatus::Locked,
                attempt: 2,
                sku_nums: [(1, 1)].into_iter().collect(),
            },
            JournalSnapshot {
                order_id: 2,
                status: JournalStatus::Aborted,
                attempt: 1,
                sku_nums: [(1, 4), (2, 1)].into_iter().collect(),
            },
        ],
        parts: vec![
            part(1, 2, 1, PartState::Locked),
            part(2, 1, 4, PartState::Released),
        ],
    };
    (snap, records)
}

#[test]
fn lock_parts_that_agree_with_their_journals_are_clean() {
    let (snap, records) = journaled();
    let report = audit_records(std::slice::from_ref(&snap), &records);
    assert!(report.is_clean(), "{:?}", report.violations);
    assert_eq!(report.locks, 1, "an ABORTED lock is no lock");
}

#[test]
fn lock_parts_that_disagree_with_their_journals_are_reported() {
    let (snap, records) = journaled();
    let snaps = std::slice::from_ref(&snap);

    // A crash between steps: the journal is PENDING while the units are held.
    let mut pending = records.clone();
    pending.journals[0].status = JournalStatus::Pending;
    assert_eq!(
        audit_records(snaps, &pending).violations,
        vec![Violation::LockInFlight {
            order_id: 1,
            status: JournalStatus::Pending
        }]
    );

    // A take that arrived after its attempt was rolled back: units held by an ABORTED lock.
    let mut leaked = records.clone();
    leaked.parts[1].part.state = PartState::Locked;
    let mut counted = snap.clone();
    counted.counters.locked += 4;
    counted.counters.available -= 4;
    let found = audit_records(std::slice::from_ref(&counted), &leaked).violations;
    assert_eq!(
        found,
        vec![Violation::LockPartMismatch {
            order_id: 2,
            sku: 1,
            expected: None,
            found: Some(leaked.parts[1].part),
        }]
    );

    // A LOCKED journal whose part is at another attempt, and the counter that misses it.
    let mut stale = records.clone();
    stale.parts[0].part.attempt = 1;
    assert!(audit_records(snaps, &stale)
        .violations
        .iter()
        .any(|v| matches!(v, Violation::LockPartMismatch { order_id: 1, .. })));
    let mut lost = records.clone();
    lost.parts.remove(0);
    let found = audit_records(snaps, &lost).violations;
    assert!(
        found.contains(&Violation::LockedMismatch {
            sku: 1,
            counter: 3,
            held: 2
        }),
        "{found:?}"
    );
    assert!(found.contains(&Violation::LockPartMismatch {
        order_id: 1,
        sku: 1,
        expected: Some(records.parts[0].part),
        found: None,
    }));

    // Half-way through a commit, a part may be LOCKED or FINISHED, never released.
    let mut finishing = records.clone();
    finishing.journals[0].status = JournalStatus::Finishing;
    assert_eq!(audit_records(snaps, &finishing).violations.len(), 1);
    finishing.parts[0].part.state = PartState::Released;
    let mut given_back = snap.clone();
    given_back.counters.locked -= 1;
    given_back.counters.available += 1;
    let found = audit_records(std::slice::from_ref(&given_back), &finishing).violations;
    assert_eq!(found.len(), 2, "{found:?}");

    // A part nobody journaled.
    let mut orphan = records;
    orphan.journals.remove(0);
    assert!(audit_records(snaps, &orphan)
        .violations
        .contains(&Violation::LockPartMismatch {
            order_id: 1,
            sku: 1,
            expected: None,
            found: Some(orphan.parts[0].part),
        }));
}
