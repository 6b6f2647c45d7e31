//! The audit: does the stock add up? A pure check over snapshots of the stores.
//!
//! For each SKU it checks the conservation invariant, that the `locked` and `sold` counters equal
//! what the orders and seed-contract locks say they hold, that every QUEUED buy (a request entry)
//! has exactly one order and every order exactly one buy, that order numbers have no gaps, that
//! each user's per-sale count matches their orders (every unit won, or only the live orders' for a
//! sale whose limit counts units held), that no order is both paid and released (the `sold`
//! counter would disagree with the paid orders), and that every paid order names its payment.
//!
//! Seed-contract locks are checked through their per-SKU parts ([`super::lock`]): the counters
//! must equal the parts that hold units, and the parts must agree with their lock's journal (a
//! LOCKED journal has every SKU's part LOCKED at its attempt, a FINISHED one every part
//! FINISHED, a RELEASED or ABORTED one none holding units). A lock stopped between steps is
//! reported until a repair finishes it.
//!
//! What it does not do: read the stores (the warehouse's `audit` module takes the snapshots) or
//! repair anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::lock::{JournalStatus, LockRecords, Part, PartState};
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
    /// Of `sold`, the units of paid orders deleted a retention time after their sale retired
    /// (`--retain-closed`): the audit counts them with the paid orders still stored.
    pub sold_purged: i64,
}

/// One sale as stored in one shard (a sale split in sub-pools has one per sub-pool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleSnapshot {
    /// Definition and pool (of this shard).
    pub state: SaleState,
    /// The sub-pool this shard holds (0: the SKU's own shard).
    pub sub: u32,
    /// Wins numbered so far (order numbers `1..=seq` on this sub-pool's track, see
    /// [`order_seq`](super::order_seq)).
    pub seq: i64,
    /// Units the per-user limit counts, per user (see [`Sale::limit_counts_held`]).
    ///
    /// [`Sale::limit_counts_held`]: super::Sale::limit_counts_held
    pub counted: BTreeMap<String, i64>,
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
    /// Pool units on their way between two shards (a transfer journaled and not yet landed).
    pub moving: i64,
}

impl SkuSnapshot {
    /// The ledger these counters and sales make.
    pub fn ledger(&self) -> Ledger {
        Ledger {
            total: self.counters.total,
            available: self.counters.available,
            pools: self.sales.iter().map(|s| s.state.remaining).sum::<i64>() + self.moving,
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
    /// A user's per-sale count disagrees with their orders: the units of all of them, or of the
    /// live ones when the sale's limit counts units held.
    CountMismatch {
        /// The sale.
        event: i64,
        /// The user.
        user: String,
        /// The stored count.
        counted: i64,
        /// What the user's orders account for.
        orders: i64,
    },
    /// A paid order without the payment that paid it.
    PaidWithoutPayment {
        /// The order.
        order_no: String,
    },
    /// An order awaiting payment without a deadline (the sweeper would never release it).
    NoDeadline {
        /// The order.
        order_no: String,
    },
    /// A seed-contract lock stopped between its per-SKU steps: in flight on a live store, else
    /// interrupted by a crash and waiting for a repair (`audit --repair`, or any warehouse's
    /// sweeper).
    LockInFlight {
        /// The order id.
        order_id: i64,
        /// Its journal's state.
        status: JournalStatus,
    },
    /// A SKU's part of a lock disagrees with the lock's journal: units held that no lock
    /// accounts for, or a lock missing units it should hold.
    LockPartMismatch {
        /// The order id.
        order_id: i64,
        /// The SKU.
        sku: i64,
        /// The part the journal implies (`None`: none holding units).
        expected: Option<Part>,
        /// The part stored (`None`: none, or none holding units).
        found: Option<Part>,
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
            Self::CountMismatch { event, user, counted, orders } => write!(
                f,
                "event {event}: user {user:?} counted {counted} units, but their orders account for {orders}"
            ),
            Self::PaidWithoutPayment { order_no } => {
                write!(f, "order {order_no}: paid, but no payment is recorded")
            }
            Self::NoDeadline { order_no } => {
                write!(f, "order {order_no}: awaiting payment without a deadline")
            }
            Self::LockInFlight { order_id, status } => write!(
                f,
                "lock of order_id {order_id} is {} (in flight, or interrupted: run audit --repair)",
                status.as_str()
            ),
            Self::LockPartMismatch { order_id, sku, expected, found } => {
                let show = |p: &Option<Part>| p.map_or("nothing held".to_owned(), |p| p.to_string());
                write!(
                    f,
                    "lock of order_id {order_id} on sku {sku}: expected {}, found {}",
                    show(expected),
                    show(found)
                )
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

/// Checks the snapshots of every SKU and every lock of a store whose lock is one atomic step
/// (its parts are implied, see [`LockRecords::implied_by`]).
pub fn audit(skus: &[SkuSnapshot], locks: &[LockSnapshot]) -> AuditReport {
    audit_records(skus, &LockRecords::implied_by(locks))
}

/// Checks the snapshots of every SKU against every lock's journal and per-SKU parts.
pub fn audit_records(skus: &[SkuSnapshot], records: &LockRecords) -> AuditReport {
    let mut report = AuditReport {
        skus: skus.len(),
        locks: records
            .journals
            .iter()
            .filter(|j| j.status != JournalStatus::Aborted)
            .count(),
        ..AuditReport::default()
    };
    let v = &mut report.violations;
    audit_lock_parts(records, v);
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
        let lock_units = |state: PartState| -> i64 {
            records
                .parts
                .iter()
                .filter(|p| p.sku == snap.sku && p.part.state == state)
                .map(|p| p.part.num)
                .sum()
        };
        let order_units = |keep: fn(OrderStatus) -> bool| -> i64 {
            snap.orders
                .iter()
                .filter(|o| keep(o.status))
                .map(|o| o.qty)
                .sum()
        };
        let held = order_units(OrderStatus::holds_units) + lock_units(PartState::Locked);
        if held != snap.counters.locked {
            v.push(Violation::LockedMismatch {
                sku: snap.sku,
                counter: snap.counters.locked,
                held,
            });
        }
        let accounted = order_units(|s| s == OrderStatus::Paid)
            + lock_units(PartState::Finished)
            + snap.counters.sold_purged;
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
            if order.status == OrderStatus::Paid && order.payment.is_none() {
                v.push(Violation::PaidWithoutPayment {
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

/// Each journal against its parts that hold units, and parts no journal accounts for.
fn audit_lock_parts(records: &LockRecords, v: &mut Vec<Violation>) {
    let mut live: BTreeMap<(i64, i64), Part> = BTreeMap::new();
    for p in records.parts.iter().filter(|p| p.part.is_live()) {
        live.insert((p.order_id, p.sku), p.part);
    }
    let mut journaled = BTreeSet::new();
    for j in &records.journals {
        journaled.insert(j.order_id);
        if j.status.is_in_flight() {
            v.push(Violation::LockInFlight {
                order_id: j.order_id,
                status: j.status,
            });
        }
        let state = match j.status {
            JournalStatus::Locked => Some(PartState::Locked),
            JournalStatus::Finished => Some(PartState::Finished),
            _ => None,
        };
        let of_order = live.range((j.order_id, i64::MIN)..=(j.order_id, i64::MAX));
        let skus: BTreeSet<i64> = j
            .sku_nums
            .keys()
            .copied()
            .chain(of_order.map(|((_, sku), _)| *sku))
            .collect();
        for sku in skus {
            let found = live.get(&(j.order_id, sku)).copied();
            let expected = match (state, j.sku_nums.get(&sku)) {
                (Some(state), Some(&num)) => Some(Part {
                    attempt: j.attempt,
                    num,
                    state,
                }),
                _ => None,
            };
            // Between steps a part may be in the state before or after the step of its attempt
            // (the in-flight journal itself is reported above).
            let ours = |p: &Part| p.attempt == j.attempt && j.sku_nums.get(&sku) == Some(&p.num);
            let fits = match j.status {
                JournalStatus::Pending | JournalStatus::Aborting | JournalStatus::Releasing => {
                    found.is_none_or(|p| ours(&p) && p.state == PartState::Locked)
                }
                JournalStatus::Finishing => found.is_some_and(|p| ours(&p)),
                _ => found == expected,
            };
            if !fits {
                v.push(Violation::LockPartMismatch {
                    order_id: j.order_id,
                    sku,
                    expected,
                    found,
                });
            }
        }
    }
    for (&(order_id, sku), &part) in &live {
        if !journaled.contains(&order_id) {
            v.push(Violation::LockPartMismatch {
                order_id,
                sku,
                expected: None,
                found: Some(part),
            });
        }
    }
}

fn audit_sale(snap: &SkuSnapshot, sale: &SaleSnapshot, v: &mut Vec<Violation>) {
    let event = sale.state.sale.id;
    let subpools = sale.state.sale.subpools;
    let orders: BTreeMap<&str, &Order> = snap
        .orders
        .iter()
        .filter(|o| {
            o.event_id == event && super::subpool_of_order(&o.order_no, subpools) == Some(sale.sub)
        })
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
        let order_no = super::order_no(event, super::order_seq(seq, sale.sub, subpools));
        if !orders.contains_key(order_no.as_str()) {
            v.push(Violation::MissingOrder { event, order_no });
        }
    }
    // What the per-user limit counts: every unit won, or only what the live orders hold.
    let counts = |o: &Order| {
        !sale.state.sale.limit_counts_held
            || !matches!(o.status, OrderStatus::Cancelled | OrderStatus::Expired)
    };
    let mut of_orders: BTreeMap<&str, i64> = BTreeMap::new();
    for order in orders.values().filter(|o| counts(o)) {
        *of_orders.entry(order.user_id.as_str()).or_default() += order.qty;
    }
    let users: BTreeSet<&str> = of_orders
        .keys()
        .copied()
        .chain(sale.counted.keys().map(String::as_str))
        .collect();
    for user in users {
        let counted = sale.counted.get(user).copied().unwrap_or(0);
        let units = of_orders.get(user).copied().unwrap_or(0);
        if counted != units {
            v.push(Violation::CountMismatch {
                event,
                user: user.to_owned(),
                counted,
                orders: units,
            });
        }
    }
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;
