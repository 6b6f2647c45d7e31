//! The audit: does the stock add up? A pure check over snapshots of the stores.
//!
//! For each SKU it checks the conservation invariant, that the `locked` and `sold` counters equal
//! what the orders and seed-contract locks say they hold, that every QUEUED buy (a request entry)
//! has exactly one order and every order exactly one buy, that order numbers have no gaps, that
//! each user's per-sale count matches their live orders, and that no order is both paid and
//! released (the `sold` counter would disagree with the paid orders).
//!
//! What it does not do: read the stores (the warehouse's `audit` module takes the snapshots) or
//! repair anything.

use std::collections::BTreeMap;
use std::fmt;

use super::{Ledger, LockStatus, Order, OrderStatus, SaleState};

/// The stored counters of one SKU (pools are summed from its sales).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Units put in.
    pub total: i64,
    /// Units free.
    pub available: i64,
    /// Units held by orders and locks.
    pub locked: i64,
    /// Units sold.
    pub sold: i64,
}

/// One sale as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleSnapshot {
    /// Definition and pool.
    pub state: SaleState,
    /// Wins numbered so far (order numbers `1..=seq`).
    pub seq: i64,
    /// Units held per user.
    pub held: BTreeMap<String, i64>,
    /// `(user, request id)` → order number.
    pub requests: BTreeMap<(String, String), String>,
}

/// One SKU as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkuSnapshot {
    /// The SKU.
    pub sku: i64,
    /// Its counters.
    pub counters: Counters,
    /// Its sales.
    pub sales: Vec<SaleSnapshot>,
    /// Its flash-sale orders.
    pub orders: Vec<Order>,
}

impl SkuSnapshot {
    /// The ledger these counters and sales make.
    pub fn ledger(&self) -> Ledger {
        Ledger {
            total: self.counters.total,
            available: self.counters.available,
            pools: self.sales.iter().map(|s| s.state.remaining).sum(),
            locked: self.counters.locked,
            sold: self.counters.sold,
        }
    }
}

/// One seed-contract lock as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockSnapshot {
    /// The order id.
    pub order_id: i64,
    /// SKU → units.
    pub sku_nums: BTreeMap<i64, i64>,
    /// Where it is.
    pub status: LockStatus,
}

/// Something that does not add up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// `available + pools + locked + sold != total`, or a place is negative.
    NotConserved {
        /// The SKU.
        sku: i64,
        /// Its ledger.
        ledger: Ledger,
    },
    /// The `locked` counter disagrees with the orders and locks holding units.
    LockedMismatch {
        /// The SKU.
        sku: i64,
        /// The counter.
        counter: i64,
        /// What orders and locks hold.
        held: i64,
    },
    /// The `sold` counter disagrees with paid orders and finished locks.
    SoldMismatch {
        /// The SKU.
        sku: i64,
        /// The counter.
        counter: i64,
        /// What paid orders and finished locks account for.
        accounted: i64,
    },
    /// A buy answered QUEUED whose order does not exist (a lost win).
    LostWin {
        /// The sale.
        event: i64,
        /// The order number the buyer was given.
        order_no: String,
    },
    /// An order no buy accounts for, or accounted for by several buys.
    OrderBuys {
        /// The order.
        order_no: String,
        /// How many request entries point at it (must be 1).
        buys: usize,
    },
    /// Order numbers `1..=seq` of a sale with one missing.
    MissingOrder {
        /// The sale.
        event: i64,
        /// The missing order number.
        order_no: String,
    },
    /// A user's per-sale count disagrees with their live orders.
    HeldMismatch {
        /// The sale.
        event: i64,
        /// The user.
        user: String,
        /// The stored count.
        held: i64,
        /// Units in the user's live orders.
        live: i64,
    },
    /// An order awaiting payment without a deadline (the sweeper would never release it).
    NoDeadline {
        /// The order.
        order_no: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotConserved { sku, ledger: l } => write!(
                f,
                "sku {sku}: available {} + pools {} + locked {} + sold {} != total {}",
                l.available, l.pools, l.locked, l.sold, l.total
            ),
            Self::LockedMismatch { sku, counter, held } => {
                write!(f, "sku {sku}: locked counter {counter}, but orders and locks hold {held}")
            }
            Self::SoldMismatch { sku, counter, accounted } => write!(
                f,
                "sku {sku}: sold counter {counter}, but paid orders and finished locks account for {accounted}"
            ),
            Self::LostWin { event, order_no } => {
                write!(f, "event {event}: a buy was answered {order_no} but the order does not exist")
            }
            Self::OrderBuys { order_no, buys } => {
                write!(f, "order {order_no}: {buys} buys point at it (must be exactly 1)")
            }
            Self::MissingOrder { event, order_no } => {
                write!(f, "event {event}: order {order_no} is missing from the sequence")
            }
            Self::HeldMismatch { event, user, held, live } => write!(
                f,
                "event {event}: user {user:?} counted {held} units, but their live orders hold {live}"
            ),
            Self::NoDeadline { order_no } => {
                write!(f, "order {order_no}: awaiting payment without a deadline")
            }
        }
    }
}

/// What an audit looked at and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// SKUs checked.
    pub skus: usize,
    /// Sales checked.
    pub sales: usize,
    /// Orders checked.
    pub orders: usize,
    /// Seed-contract locks checked.
    pub locks: usize,
    /// Every violation found (empty when the stock adds up).
    pub violations: Vec<Violation>,
}

impl AuditReport {
    /// Whether nothing was found.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks the snapshots of every SKU and every lock.
pub fn audit(skus: &[SkuSnapshot], locks: &[LockSnapshot]) -> AuditReport {
    let mut report = AuditReport {
        skus: skus.len(),
        locks: locks.len(),
        ..AuditReport::default()
    };
    let v = &mut report.violations;
    for snap in skus {
        report.sales += snap.sales.len();
        report.orders += snap.orders.len();
        let ledger = snap.ledger();
        if !ledger.is_conserved() {
            v.push(Violation::NotConserved {
                sku: snap.sku,
                ledger,
            });
        }
        let lock_units = |status: LockStatus| -> i64 {
            locks
                .iter()
                .filter(|l| l.status == status)
                .filter_map(|l| l.sku_nums.get(&snap.sku))
                .sum()
        };
        let order_units = |keep: fn(OrderStatus) -> bool| -> i64 {
            snap.orders
                .iter()
                .filter(|o| keep(o.status))
                .map(|o| o.qty)
                .sum()
        };
        let held = order_units(OrderStatus::holds_units) + lock_units(LockStatus::Locked);
        if held != snap.counters.locked {
            v.push(Violation::LockedMismatch {
                sku: snap.sku,
                counter: snap.counters.locked,
                held,
            });
        }
        let accounted = order_units(|s| s == OrderStatus::Paid) + lock_units(LockStatus::Finished);
        if accounted != snap.counters.sold {
            v.push(Violation::SoldMismatch {
                sku: snap.sku,
                counter: snap.counters.sold,
                accounted,
            });
        }
        for order in &snap.orders {
            if order.status == OrderStatus::PendingPayment && order.deadline_ms <= 0 {
                v.push(Violation::NoDeadline {
                    order_no: order.order_no.clone(),
                });
            }
        }
        for sale in &snap.sales {
            audit_sale(snap, sale, v);
        }
    }
    report
}

fn audit_sale(snap: &SkuSnapshot, sale: &SaleSnapshot, v: &mut Vec<Violation>) {
    let event = sale.state.sale.id;
    let orders: BTreeMap<&str, &Order> = snap
        .orders
        .iter()
        .filter(|o| o.event_id == event)
        .map(|o| (o.order_no.as_str(), o))
        .collect();
    let mut buys: BTreeMap<&str, usize> = BTreeMap::new();
    for order_no in sale.requests.values() {
        *buys.entry(order_no.as_str()).or_default() += 1;
        if !orders.contains_key(order_no.as_str()) {
            v.push(Violation::LostWin {
                event,
                order_no: order_no.clone(),
            });
        }
    }
    for order_no in orders.keys() {
        let n = buys.get(order_no).copied().unwrap_or(0);
        if n != 1 {
            v.push(Violation::OrderBuys {
                order_no: (*order_no).to_owned(),
                buys: n,
            });
        }
    }
    for seq in 1..=sale.seq {
        let order_no = super::order_no(event, seq);
        if !orders.contains_key(order_no.as_str()) {
            v.push(Violation::MissingOrder { event, order_no });
        }
    }
    let mut live: BTreeMap<&str, i64> = BTreeMap::new();
    for order in orders.values() {
        if !matches!(order.status, OrderStatus::Cancelled | OrderStatus::Expired) {
            *live.entry(order.user_id.as_str()).or_default() += order.qty;
        }
    }
    let users: std::collections::BTreeSet<&str> = live
        .keys()
        .copied()
        .chain(sale.held.keys().map(String::as_str))
        .collect();
    for user in users {
        let held = sale.held.get(user).copied().unwrap_or(0);
        let units = live.get(user).copied().unwrap_or(0);
        if held != units {
            v.push(Violation::HeldMismatch {
                event,
                user: user.to_owned(),
                held,
                live: units,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stock::Sale;

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
                },
                remaining: 1,
                closed: false,
            },
            seq: 2,
            held: [("ann".to_owned(), 2), ("bob".to_owned(), 1)]
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
            },
            sales: vec![sale],
            orders: vec![
                order("7-1", "ann", 2, OrderStatus::PendingPayment),
                order("7-2", "bob", 1, OrderStatus::Paid),
            ],
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

        let mut held = snap.clone();
        held.sales[0].held.insert("bob".into(), 0);
        assert!(audit(&[held], &locks)
            .violations
            .contains(&Violation::HeldMismatch {
                event: 7,
                user: "bob".into(),
                held: 0,
                live: 1
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
}
