//! `MemoryStore`: the embedded default for a one-command local run, and the oracle the Redis
//! store is tested against. It keeps everything in one mutex-guarded structure and follows the Lua
//! scripts' semantics line by line. It is not durable: a restart forgets every sale and order.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{Store, StoreError, StoreResult};
use crate::stock::audit::{Counters, LockSnapshot, SaleSnapshot, SkuSnapshot};
use crate::stock::lock::LockRepairs;
use crate::stock::{
    self, BuyDecision, BuyRequest, Ledger, LockRequest, LockStatus, Order, OrderStatus, Sale,
    SaleState, StockError, Win,
};

/// An in-process [`Store`] with the Redis store's semantics.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    new_win: Arc<Notify>,
}

#[derive(Default)]
struct Inner {
    skus: BTreeMap<i64, SkuCounts>,
    sales: BTreeMap<i64, SaleRecord>,
    orders: BTreeMap<String, Order>,
    deadlines: BTreeSet<(i64, String)>,
    locks: HashMap<i64, LockRecord>,
    queue: VecDeque<Win>,
    pending: BTreeMap<u64, Delivery>,
    next_entry: u64,
}

#[derive(Default)]
struct SkuCounts {
    total: i64,
    available: i64,
    locked: i64,
    sold: i64,
    sales: BTreeSet<i64>,
}

struct SaleRecord {
    state: SaleState,
    seq: i64,
    held: HashMap<String, i64>,
    requests: HashMap<(String, String), String>,
}

struct LockRecord {
    sku_nums: BTreeMap<i64, i64>,
    status: LockStatus,
}

struct Delivery {
    consumer: String,
    since: Instant,
    win: Win,
}

fn refused<T>(e: StockError) -> StoreResult<T> {
    Err(StoreError::Refused(e))
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves no half-applied operation (each one checks before
        // it writes), so the data is still consistent: keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    fn sku_mut(&mut self, sku: i64) -> &mut SkuCounts {
        self.skus.get_mut(&sku).expect("a sale's SKU exists")
    }

    /// The release step shared by cancel and expiry (release_order.lua).
    fn release(&mut self, order_no: &str, status: OrderStatus, now_ms: i64) -> Order {
        let order = self
            .orders
            .get_mut(order_no)
            .expect("caller checked the order");
        let (sku, event, qty, user) = (
            order.sku_id,
            order.event_id,
            order.qty,
            order.user_id.clone(),
        );
        order.status = status;
        let order = order.clone();
        self.deadlines.retain(|(_, no)| no != order_no);
        let sale = self.sales.get_mut(&event).expect("an order's sale exists");
        let running = !sale.state.closed && now_ms < sale.state.sale.end_ms;
        if running {
            sale.state.remaining += qty;
        }
        *sale.held.entry(user).or_default() -= qty;
        let counts = self.sku_mut(sku);
        counts.locked -= qty;
        if !running {
            counts.available += qty;
        }
        order
    }
}

impl Store for MemoryStore {
    async fn put_stock(&self, sku: i64, total: i64) -> StoreResult<i64> {
        let mut inner = self.inner();
        let counts = inner.skus.entry(sku).or_default();
        let next = counts.available + (total - counts.total);
        if next < 0 {
            return refused(StockError::FailedPrecondition(format!(
                "sku {sku}: total {total} is below the {} units pooled, locked or sold",
                counts.total - counts.available
            )));
        }
        counts.total = total;
        counts.available = next;
        Ok(next)
    }

    async fn available(&self, skus: &[i64]) -> StoreResult<Vec<Option<i64>>> {
        let inner = self.inner();
        Ok(skus
            .iter()
            .map(|s| inner.skus.get(s).map(|c| c.available))
            .collect())
    }

    async fn ledger(&self, sku: i64) -> StoreResult<Option<Ledger>> {
        let inner = self.inner();
        Ok(inner.skus.get(&sku).map(|c| Ledger {
            total: c.total,
            available: c.available,
            pools: c.sales.iter().map(|e| inner.sales[e].state.remaining).sum(),
            locked: c.locked,
            sold: c.sold,
        }))
    }

    async fn skus(&self) -> StoreResult<Vec<i64>> {
        Ok(self.inner().skus.keys().copied().collect())
    }

    async fn put_sale(&self, sale: &Sale) -> StoreResult<SaleState> {
        let mut inner = self.inner();
        if let Some(existing) = inner.sales.get(&sale.id) {
            if existing.state.sale.sku != sale.sku {
                return refused(StockError::FailedPrecondition(format!(
                    "event {} sells sku {}; its sku cannot change",
                    sale.id, existing.state.sale.sku
                )));
            }
            if existing.state.sale.subpools != sale.subpools {
                return refused(StockError::FailedPrecondition(format!(
                    "event {} is split in {} sub-pools; that cannot change",
                    sale.id, existing.state.sale.subpools
                )));
            }
        }
        let Some(available) = inner.skus.get(&sale.sku).map(|c| c.available) else {
            return refused(StockError::NotFound(format!("sku {}", sale.sku)));
        };
        let (put, pool) = match inner.sales.get(&sale.id) {
            Some(r) if r.state.closed => {
                return refused(StockError::FailedPrecondition(format!(
                    "event {} has ended and been closed",
                    sale.id
                )))
            }
            Some(r) => (r.state.sale.pool, r.state.remaining),
            None => (0, 0),
        };
        let delta = sale.pool - put;
        if delta > available {
            return refused(StockError::FailedPrecondition(format!(
                "sku {} has {available} units available, the pool needs {delta} more",
                sale.sku
            )));
        }
        if -delta > pool {
            return refused(StockError::FailedPrecondition(format!(
                "event {}: only {pool} units are left in the pool, cannot take back {}",
                sale.id, -delta
            )));
        }
        let counts = inner.sku_mut(sale.sku);
        counts.available -= delta;
        counts.sales.insert(sale.id);
        let record = inner.sales.entry(sale.id).or_insert_with(|| SaleRecord {
            state: SaleState {
                sale: sale.clone(),
                remaining: 0,
                closed: false,
            },
            seq: 0,
            held: HashMap::new(),
            requests: HashMap::new(),
        });
        record.state.sale = sale.clone();
        record.state.remaining = pool + delta;
        Ok(record.state.clone())
    }

    async fn sale(&self, event_id: i64) -> StoreResult<Option<SaleState>> {
        Ok(self.inner().sales.get(&event_id).map(|r| r.state.clone()))
    }

    async fn sales_of(&self, sku: i64) -> StoreResult<Vec<i64>> {
        Ok(self
            .inner()
            .skus
            .get(&sku)
            .map(|c| c.sales.iter().copied().collect())
            .unwrap_or_default())
    }

    async fn lock(&self, req: &LockRequest) -> StoreResult<()> {
        let mut inner = self.inner();
        if let Some(existing) = inner.locks.get(&req.order_id) {
            return if existing.sku_nums == req.sku_nums {
                Ok(())
            } else {
                refused(StockError::AlreadyExists(format!(
                    "order_id {} is already locked with other sku_nums",
                    req.order_id
                )))
            };
        }
        for (sku, num) in &req.sku_nums {
            let available = inner.skus.get(sku).map_or(0, |c| c.available);
            if available < *num {
                return refused(StockError::FailedPrecondition(format!(
                    "sku {sku} has {available} units available, {num} asked"
                )));
            }
        }
        for (sku, num) in &req.sku_nums {
            let counts = inner.sku_mut(*sku);
            counts.available -= num;
            counts.locked += num;
        }
        inner.locks.insert(
            req.order_id,
            LockRecord {
                sku_nums: req.sku_nums.clone(),
                status: LockStatus::Locked,
            },
        );
        Ok(())
    }

    async fn unlock(&self, order_id: i64, finish: bool) -> StoreResult<()> {
        let mut inner = self.inner();
        let Some(lock) = inner.locks.get_mut(&order_id) else {
            return refused(StockError::NotFound(format!("lock of order_id {order_id}")));
        };
        let target = if finish {
            LockStatus::Finished
        } else {
            LockStatus::Released
        };
        if lock.status == target {
            return Ok(());
        }
        if lock.status != LockStatus::Locked {
            return refused(StockError::FailedPrecondition(format!(
                "order_id {order_id} is already {}",
                lock.status.as_str()
            )));
        }
        lock.status = target;
        let sku_nums = lock.sku_nums.clone();
        for (sku, num) in sku_nums {
            let counts = inner.sku_mut(sku);
            counts.locked -= num;
            if finish {
                counts.sold += num;
            } else {
                counts.available += num;
            }
        }
        Ok(())
    }

    async fn buy(&self, req: &BuyRequest, now_ms: i64) -> StoreResult<BuyDecision> {
        let mut inner = self.inner();
        let Some(record) = inner.sales.get_mut(&req.event_id) else {
            return Ok(BuyDecision::UnknownEvent);
        };
        let remaining = record.state.remaining;
        let request = (req.user_id.clone(), req.request_id.clone());
        if let Some(order_no) = record.requests.get(&request) {
            return Ok(BuyDecision::Queued {
                order_no: order_no.clone(),
                remaining,
            });
        }
        let sale = &record.state.sale;
        if now_ms < sale.start_ms {
            return Ok(BuyDecision::NotStarted);
        }
        if record.state.closed || now_ms >= sale.end_ms {
            return Ok(BuyDecision::Ended);
        }
        let held = record.held.get(&req.user_id).copied().unwrap_or(0);
        if held + req.qty > sale.per_user_limit {
            return Ok(BuyDecision::LimitReached { remaining });
        }
        if remaining < req.qty {
            return Ok(BuyDecision::SoldOut { remaining });
        }
        record.state.remaining -= req.qty;
        *record.held.entry(req.user_id.clone()).or_default() += req.qty;
        record.seq += 1;
        let order_no = stock::order_no(req.event_id, record.seq);
        record.requests.insert(request, order_no.clone());
        let (sku, remaining) = (sale.sku, record.state.remaining);
        inner.sku_mut(sku).locked += req.qty;
        inner.orders.insert(
            order_no.clone(),
            Order {
                order_no: order_no.clone(),
                event_id: req.event_id,
                sku_id: sku,
                user_id: req.user_id.clone(),
                qty: req.qty,
                status: OrderStatus::Queued,
                deadline_ms: 0,
                created_ms: now_ms,
            },
        );
        inner.next_entry += 1;
        let entry_id = inner.next_entry.to_string();
        inner.queue.push_back(Win {
            sku_id: sku,
            entry_id,
            order_no: order_no.clone(),
        });
        drop(inner);
        self.new_win.notify_waiters();
        Ok(BuyDecision::Queued {
            order_no,
            remaining,
        })
    }

    async fn order(&self, order_no: &str) -> StoreResult<Option<Order>> {
        Ok(self.inner().orders.get(order_no).cloned())
    }

    async fn pay(&self, order_no: &str, user_id: &str, now_ms: i64) -> StoreResult<Order> {
        let mut inner = self.inner();
        let Some(order) = inner.orders.get_mut(order_no) else {
            return refused(StockError::NotFound(format!("order {order_no}")));
        };
        if order.user_id != user_id {
            return refused(StockError::NotYours(order_no.to_owned()));
        }
        match order.status {
            OrderStatus::Paid => return Ok(order.clone()),
            OrderStatus::Queued => {
                return refused(StockError::FailedPrecondition(format!(
                    "order {order_no} is still being created; retry shortly"
                )))
            }
            OrderStatus::PendingPayment => {}
            other => {
                return refused(StockError::FailedPrecondition(format!(
                    "order {order_no} is {}",
                    other.as_str()
                )))
            }
        }
        if now_ms > order.deadline_ms {
            return refused(StockError::FailedPrecondition(format!(
                "order {order_no}: the payment deadline has passed"
            )));
        }
        order.status = OrderStatus::Paid;
        let order = order.clone();
        inner.deadlines.retain(|(_, no)| no != order_no);
        let counts = inner.sku_mut(order.sku_id);
        counts.locked -= order.qty;
        counts.sold += order.qty;
        Ok(order)
    }

    async fn cancel(&self, order_no: &str, user_id: &str, now_ms: i64) -> StoreResult<Order> {
        let mut inner = self.inner();
        let Some(order) = inner.orders.get(order_no) else {
            return refused(StockError::NotFound(format!("order {order_no}")));
        };
        if order.user_id != user_id {
            return refused(StockError::NotYours(order_no.to_owned()));
        }
        match order.status {
            OrderStatus::Cancelled => Ok(order.clone()),
            OrderStatus::Queued | OrderStatus::PendingPayment => {
                Ok(inner.release(order_no, OrderStatus::Cancelled, now_ms))
            }
            other => refused(StockError::FailedPrecondition(format!(
                "order {order_no} is {} and cannot be cancelled",
                other.as_str()
            ))),
        }
    }

    async fn expire_due(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<String>> {
        let mut inner = self.inner();
        let due: Vec<String> = inner
            .deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline < now_ms)
            .take(limit)
            .map(|(_, no)| no.clone())
            .collect();
        let mut expired = Vec::new();
        for no in due {
            if inner.orders[&no].status == OrderStatus::PendingPayment {
                inner.release(&no, OrderStatus::Expired, now_ms);
                expired.push(no);
            } else {
                inner.deadlines.retain(|(_, n)| *n != no);
            }
        }
        Ok(expired)
    }

    async fn close_ended(&self, now_ms: i64) -> StoreResult<Vec<i64>> {
        let mut inner = self.inner();
        let mut closed = Vec::new();
        let ended: Vec<i64> = inner
            .sales
            .iter()
            .filter(|(_, r)| !r.state.closed && now_ms >= r.state.sale.end_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in ended {
            let record = inner.sales.get_mut(&id).expect("listed above");
            let (sku, units) = (record.state.sale.sku, record.state.remaining);
            record.state.closed = true;
            record.state.remaining = 0;
            inner.sku_mut(sku).available += units;
            closed.push(id);
        }
        Ok(closed)
    }

    async fn read_wins(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> StoreResult<Vec<Win>> {
        let deadline = tokio::time::Instant::now() + block;
        loop {
            let notified = self.new_win.notified();
            {
                let mut inner = self.inner();
                if !inner.queue.is_empty() {
                    // Up to `count` per SKU, in arrival order, as XREADGROUP over streams does.
                    let mut per_sku: BTreeMap<i64, usize> = BTreeMap::new();
                    let mut wins = Vec::new();
                    inner.queue.retain(|win| {
                        let taken = per_sku.entry(win.sku_id).or_default();
                        if *taken < count {
                            *taken += 1;
                            wins.push(win.clone());
                            false
                        } else {
                            true
                        }
                    });
                    for win in &wins {
                        let entry: u64 = win.entry_id.parse().expect("numbered by buy");
                        inner.pending.insert(
                            entry,
                            Delivery {
                                consumer: consumer.to_owned(),
                                since: Instant::now(),
                                win: win.clone(),
                            },
                        );
                    }
                    return Ok(wins);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn reclaim_wins(
        &self,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> StoreResult<Vec<Win>> {
        let mut inner = self.inner();
        let now = Instant::now();
        let mut wins = Vec::new();
        for delivery in inner.pending.values_mut() {
            if wins.len() == count {
                break;
            }
            if now.duration_since(delivery.since) >= min_idle {
                delivery.consumer = consumer.to_owned();
                delivery.since = now;
                wins.push(delivery.win.clone());
            }
        }
        Ok(wins)
    }

    async fn create_order(&self, win: &Win, now_ms: i64) -> StoreResult<bool> {
        let mut inner = self.inner();
        let Some(order) = inner.orders.get(&win.order_no) else {
            return refused(StockError::NotFound(format!("order {}", win.order_no)));
        };
        if order.status != OrderStatus::Queued {
            return Ok(false);
        }
        let window = inner.sales[&order.event_id].state.sale.pay_window_ms;
        let order = inner
            .orders
            .get_mut(&win.order_no)
            .expect("looked up above");
        order.status = OrderStatus::PendingPayment;
        order.deadline_ms = now_ms + window;
        let key = (order.deadline_ms, win.order_no.clone());
        inner.deadlines.insert(key);
        Ok(true)
    }

    async fn ack_win(&self, win: &Win) -> StoreResult<()> {
        if let Ok(entry) = win.entry_id.parse::<u64>() {
            self.inner().pending.remove(&entry);
        }
        Ok(())
    }

    async fn snapshot(&self, sku: i64) -> StoreResult<Option<SkuSnapshot>> {
        let inner = self.inner();
        let Some(counts) = inner.skus.get(&sku) else {
            return Ok(None);
        };
        let sales = counts
            .sales
            .iter()
            .map(|id| {
                let r = &inner.sales[id];
                SaleSnapshot {
                    // One pool here whatever the split: its orders are numbered 1, 2, …
                    state: SaleState {
                        sale: Sale {
                            subpools: 1,
                            ..r.state.sale.clone()
                        },
                        ..r.state.clone()
                    },
                    sub: 0,
                    seq: r.seq,
                    held: r.held.iter().map(|(u, n)| (u.clone(), *n)).collect(),
                    requests: r.requests.clone().into_iter().collect(),
                }
            })
            .collect();
        Ok(Some(SkuSnapshot {
            sku,
            counters: Counters {
                total: counts.total,
                available: counts.available,
                locked: counts.locked,
                sold: counts.sold,
            },
            sales,
            orders: inner
                .orders
                .values()
                .filter(|o| o.sku_id == sku)
                .cloned()
                .collect(),
            moving: 0,
        }))
    }

    async fn locks(&self) -> StoreResult<Vec<LockSnapshot>> {
        let inner = self.inner();
        let mut locks: Vec<LockSnapshot> = inner
            .locks
            .iter()
            .map(|(id, l)| LockSnapshot {
                order_id: *id,
                sku_nums: l.sku_nums.clone(),
                status: l.status,
            })
            .collect();
        locks.sort_by_key(|l| l.order_id);
        Ok(locks)
    }

    async fn repair_locks(&self, _older_than: Duration) -> StoreResult<LockRepairs> {
        // A lock and an unlock are each one critical section: none is ever left half-way.
        Ok(LockRepairs::default())
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}
