//! The memory store's buying and an order's life: the buy decision (`buy_batch.lua`'s, one buy
//! at a time), pay
//! (`pay.lua`), cancel and the sweeper's expiry (`release_order.lua`, one release step shared by
//! both) and the end of sales (`close_event.lua`), each one critical section.
//!
//! What it does not do: turn a win into an order awaiting payment (see [`super::queue`]).

use super::{refused, Inner, MemoryStore};
use crate::stock::{
    self, BuyDecision, BuyRequest, Order, OrderStatus, PayRequest, Payment, StockError, Win,
};
use crate::warehouse::store::{Orders, StoreResult};

impl Inner {
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
        if sale.state.sale.limit_counts_held {
            *sale.counted.entry(user).or_default() -= qty;
        }
        let counts = self.sku_mut(sku);
        counts.locked -= qty;
        if !running {
            counts.available += qty;
        }
        order
    }
}

impl Orders for MemoryStore {
    async fn buy(&self, req: &BuyRequest, now_ms: i64) -> StoreResult<BuyDecision> {
        let mut inner = self.inner();
        if !inner.sales.contains_key(&req.event_id) {
            return Ok(BuyDecision::UnknownEvent);
        }
        let record = inner.sales.get_mut(&req.event_id).expect("checked above");
        let remaining = record.state.remaining;
        let request = (req.user_id.clone(), req.request_id.clone());
        // A request id names one quantity in the sale, registered with its first buy whatever
        // the outcome (buy_batch.lua's `req` entry).
        let (named, won) = record
            .requests
            .entry(request.clone())
            .or_insert((req.qty, None));
        if *named != req.qty {
            return refused(StockError::request_reused(
                &req.request_id,
                (req.event_id, *named),
            ));
        }
        if let Some(order_no) = won {
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
        let counted = record.counted.get(&req.user_id).copied().unwrap_or(0);
        if counted + req.qty > sale.per_user_limit {
            return Ok(BuyDecision::LimitReached { remaining });
        }
        if remaining < req.qty {
            return Ok(BuyDecision::SoldOut { remaining });
        }
        record.state.remaining -= req.qty;
        *record.counted.entry(req.user_id.clone()).or_default() += req.qty;
        record.seq += 1;
        let order_no = stock::order_no(req.event_id, record.seq);
        record
            .requests
            .insert(request, (req.qty, Some(order_no.clone())));
        let (sku, remaining) = (sale.sku, record.state.remaining);
        let (amount, currency) = (stock::amount(req.qty, sale.price), sale.currency);
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
                amount,
                currency,
                payment: None,
            },
        );
        inner.next_entry += 1;
        let entry_id = inner.next_entry.to_string();
        inner.queue.push_back(Win {
            sku_id: sku,
            entry_id,
            order_no: order_no.clone(),
            amount,
            currency,
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

    async fn pay(&self, req: &PayRequest, now_ms: i64) -> StoreResult<Order> {
        let mut inner = self.inner();
        let order_no = req.order_no.as_str();
        let Some(order) = inner.orders.get_mut(order_no) else {
            return refused(StockError::NotFound(format!("order {order_no}")));
        };
        if req.user_id.as_ref().is_some_and(|u| *u != order.user_id) {
            return refused(StockError::NotYours(order_no.to_owned()));
        }
        if req.amount != order.amount {
            return refused(StockError::FailedPrecondition(format!(
                "order {order_no}: its amount is {} {}, not {}",
                order.amount, order.currency, req.amount
            )));
        }
        match order.status {
            OrderStatus::Paid => {
                return match &order.payment {
                    Some(paid) if paid.id == req.payment_id => Ok(order.clone()),
                    _ => refused(StockError::AlreadyExists(format!(
                        "order {order_no} is paid by another payment"
                    ))),
                }
            }
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
        order.payment = Some(Payment {
            id: req.payment_id.clone(),
            paid_ms: now_ms,
        });
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
        inner.retire_final(now_ms);
        Ok(closed)
    }
}

impl Inner {
    /// `close_event.lua`'s retirement: a closed sale whose orders are all final leaves its SKU's
    /// list of sales; a sale retired `retain` ago is forgotten, its orders too
    /// (`purge_orders.lua`: what they sold stays counted).
    fn retire_final(&mut self, now_ms: i64) {
        let retiring: Vec<(i64, i64)> = self
            .sales
            .iter()
            .filter(|(id, r)| r.state.closed && !self.retired.contains_key(id))
            .filter(|(id, _)| {
                self.orders
                    .values()
                    .filter(|o| o.event_id == **id)
                    .all(|o| !o.status.holds_units())
            })
            .map(|(id, r)| (*id, r.state.sale.sku))
            .collect();
        for (id, sku) in retiring {
            self.sku_mut(sku).sales.remove(&id);
            self.retired.insert(id, now_ms);
        }
        let retain = self
            .retain_ms
            .unwrap_or(crate::warehouse::store::DEFAULT_RETAIN_CLOSED.as_millis() as i64);
        let gone: Vec<i64> = self
            .retired
            .iter()
            .filter(|(id, at)| self.sales.contains_key(id) && now_ms >= **at + retain)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            let sku = self.sales.remove(&id).expect("listed above").state.sale.sku;
            let purged: Vec<String> = self
                .orders
                .values()
                .filter(|o| o.event_id == id)
                .map(|o| o.order_no.clone())
                .collect();
            for order_no in purged {
                let order = self.orders.remove(&order_no).expect("listed above");
                if order.status == OrderStatus::Paid {
                    self.sku_mut(sku).sold_purged += order.qty;
                }
            }
        }
    }
}
