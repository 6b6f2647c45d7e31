//! The gRPC services: the seed's `warehouse.Warehouse`, and flashgate's `flashsale.Admin`,
//! `flashsale.Seckill` and `flashsale.Queue` (the waiting room, [`queue`]), over any [`Store`].
//!
//! This is the boundary: requests are validated here (every failure `INVALID_ARGUMENT` naming the
//! field), store refusals become their gRPC codes, and a broken backend becomes `UNAVAILABLE`
//! without its internals reaching the client (they go to the log).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use tonic::{Request, Response, Status};

use super::metrics::Metrics;
use super::store::{Store, StoreError};
use crate::proto::common::SkuIdReq;
use crate::proto::flashsale::{
    admin_server::Admin, buy_result, seckill_server::Seckill, BuyManyReply, BuyManyReq, BuyOutcome,
    BuyRefused, BuyReply, BuyReq, BuyResult, Event, EventList, EventReq, EventState, EventStatus,
    ListEventsReq, Order as OrderMsg, OrderReq, OrderStatus as OrderStatusMsg, PayOrderReq,
    PutSkuStockReq, SkuLedger, SkuLedgerReq,
};
use crate::proto::warehouse::{
    warehouse_server::Warehouse, SkuStockLockReq, SkuStockReply, SkuStockUnlockReq, SkusReq,
    SkusStockReply,
};
use crate::stock::{
    BuyDecision, BuyRequest, Currency, LockRequest, Order, OrderStatus, PayRequest, Sale,
    SalePhase, SaleState, StockError, BUY_MANY_MAX, MAX_PRICE, MAX_SUBPOOLS,
};

pub mod queue;

/// Most SKU ids one `BatchSkusStock` may ask for.
pub const MAX_BATCH_IDS: usize = 1000;
/// Most SKUs one lock may hold.
pub const MAX_LOCK_SKUS: usize = 100;
/// Most units one buy may ask for.
pub const MAX_BUY_QTY: i32 = 100;

/// The unix-millisecond wall clock the warehouse decides with.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The services' shared state: the store, the metrics, whether demo payments are on and the
/// waiting rooms' draw secret.
#[derive(Clone)]
pub struct WarehouseService<S> {
    store: S,
    metrics: Metrics,
    demo_payments: bool,
    queue_secret: Option<Arc<[u8]>>,
}

impl<S: Store> WarehouseService<S> {
    /// Services over `store`, recording into `metrics`, with demo payments off.
    pub fn new(store: S, metrics: Metrics) -> Self {
        Self {
            store,
            metrics,
            demo_payments: false,
            queue_secret: None,
        }
    }

    /// The secret the waiting rooms' pre-queues are drawn under (`None`: waiting rooms are
    /// refused, see [`queue`]).
    pub fn with_queue_secret(mut self, secret: Option<&[u8]>) -> Self {
        self.queue_secret = secret.map(Arc::from);
        self
    }

    /// Whether `DemoPayOrder` pays (a local demo) or is refused (`PERMISSION_DENIED`, production).
    pub fn with_demo_payments(mut self, on: bool) -> Self {
        self.demo_payments = on;
        self
    }

    /// Pays an order (the payment side's word, or the demo's).
    async fn pay(&self, pay: &PayRequest) -> Result<OrderMsg, Status> {
        self.store
            .pay(pay, now_ms())
            .await
            .map(order_msg)
            .map_err(status_of)
    }

    /// One buy's decision, as `Seckill/Buy` answers it (and each entry of `BuyMany`).
    async fn decide_buy(&self, req: &BuyReq) -> Result<BuyReply, Status> {
        let buy = BuyRequest {
            event_id: positive("event_id", req.event_id)?,
            user_id: text("user_id", &req.user_id, 1, 128)?.to_owned(),
            qty: positive("qty", req.qty.into())?,
            request_id: text("request_id", &req.request_id, 1, 128)?.to_owned(),
        };
        if req.qty > MAX_BUY_QTY {
            return Err(invalid("qty", &format!("must be at most {MAX_BUY_QTY}")));
        }
        let decision = self.store.buy(&buy, now_ms()).await.map_err(status_of)?;
        let (outcome, order_no, remaining) = match decision {
            BuyDecision::Queued {
                order_no,
                remaining,
            } => (BuyOutcome::Queued, order_no, remaining),
            BuyDecision::SoldOut { remaining } => (BuyOutcome::SoldOut, String::new(), remaining),
            BuyDecision::LimitReached { remaining } => {
                (BuyOutcome::LimitReached, String::new(), remaining)
            }
            BuyDecision::NotStarted => (BuyOutcome::NotStarted, String::new(), 0),
            BuyDecision::Ended => (BuyOutcome::Ended, String::new(), 0),
            BuyDecision::UnknownEvent => (BuyOutcome::UnknownEvent, String::new(), 0),
        };
        self.metrics
            .buy_outcomes
            .with_label_values(&[outcome.as_str_name()])
            .inc();
        Ok(BuyReply {
            outcome: outcome.into(),
            order_no,
            remaining: clamp(remaining),
        })
    }

    /// Runs one RPC body, recording its code and latency.
    async fn track<T>(
        &self,
        method: &'static str,
        body: impl Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let result = body.await;
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        self.metrics.observe(method, code, started.elapsed());
        result.map(Response::new)
    }
}

/// Maps a store failure to its gRPC status. Backend details are logged, never sent.
pub fn status_of(err: StoreError) -> Status {
    match err {
        StoreError::Refused(StockError::NotFound(what)) => {
            Status::not_found(format!("{what} not found"))
        }
        StoreError::Refused(StockError::FailedPrecondition(why)) => {
            Status::failed_precondition(why)
        }
        StoreError::Refused(StockError::AlreadyExists(why)) => Status::already_exists(why),
        StoreError::Refused(e @ StockError::NotYours(_)) => {
            Status::permission_denied(e.to_string())
        }
        StoreError::Unavailable(detail) => {
            tracing::warn!(%detail, "stock store unavailable");
            Status::unavailable("stock store unavailable; retry with backoff")
        }
        StoreError::Corrupt(detail) => {
            tracing::error!(%detail, "stock store answered unexpectedly");
            Status::internal("stock store error")
        }
    }
}

fn invalid(field: &str, rule: &str) -> Status {
    Status::invalid_argument(format!("{field}: {rule}"))
}

fn positive(field: &str, n: i64) -> Result<i64, Status> {
    if n > 0 {
        Ok(n)
    } else {
        Err(invalid(field, "must be > 0"))
    }
}

/// Checks a free-text field's length in characters (not bytes) and that it has no control
/// characters (they would break logs and the stores' composite keys).
fn text<'a>(field: &str, s: &'a str, min: usize, max: usize) -> Result<&'a str, Status> {
    let len = s.chars().count();
    if len < min {
        return Err(invalid(
            field,
            &format!("must be at least {min} characters"),
        ));
    }
    if len > max {
        return Err(invalid(field, &format!("must be at most {max} characters")));
    }
    if s.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(s)
}

fn lock_request(req: SkuStockLockReq) -> Result<LockRequest, Status> {
    positive("order_id", req.order_id)?;
    text("order_no", &req.order_no, 3, 64)?;
    text("consignee", &req.consignee, 2, 64)?;
    text("phone", &req.phone, 3, 32)?;
    text("address", &req.address, 3, 256)?;
    text("note", &req.note, 0, 512)?;
    if req.sku_nums.is_empty() {
        return Err(invalid("sku_nums", "must have at least 1 entry"));
    }
    if req.sku_nums.len() > MAX_LOCK_SKUS {
        return Err(invalid(
            "sku_nums",
            &format!("must have at most {MAX_LOCK_SKUS} entries"),
        ));
    }
    let mut sku_nums = BTreeMap::new();
    for (sku, num) in &req.sku_nums {
        if *sku <= 0 {
            return Err(invalid("sku_nums", &format!("sku id {sku} must be > 0")));
        }
        if *num <= 0 {
            return Err(invalid(
                "sku_nums",
                &format!("num of sku {sku} must be > 0"),
            ));
        }
        sku_nums.insert(*sku, i64::from(*num));
    }
    Ok(LockRequest {
        order_id: req.order_id,
        order_no: req.order_no,
        consignee: req.consignee,
        phone: req.phone,
        address: req.address,
        note: req.note,
        sku_nums,
    })
}

fn sale_of(e: &Event) -> Result<Sale, Status> {
    positive("id", e.id)?;
    positive("sku_id", e.sku_id)?;
    if e.pool < 0 {
        return Err(invalid("pool", "must be >= 0"));
    }
    positive("start_ms", e.start_ms)?;
    if e.end_ms <= e.start_ms {
        return Err(invalid("end_ms", "must be after start_ms"));
    }
    positive("per_user_limit", e.per_user_limit.into())?;
    positive("pay_window_ms", e.pay_window_ms)?;
    if !(0..=MAX_PRICE).contains(&e.price) {
        return Err(invalid(
            "price",
            &format!("must be 0 up to {MAX_PRICE} (minor units of the currency)"),
        ));
    }
    let currency = Currency::parse(&e.currency).ok_or_else(|| {
        invalid(
            "currency",
            "must be an ISO 4217 code, three capital letters (e.g. EUR)",
        )
    })?;
    let subpools = match e.subpools {
        0 => 1,
        n if n < 0 || n as u32 > MAX_SUBPOOLS => {
            return Err(invalid(
                "subpools",
                &format!("must be 0 or 1 (one pool) up to {MAX_SUBPOOLS}"),
            ))
        }
        n => n as u32,
    };
    Ok(Sale {
        id: e.id,
        sku: e.sku_id,
        pool: e.pool.into(),
        start_ms: e.start_ms,
        end_ms: e.end_ms,
        per_user_limit: e.per_user_limit.into(),
        pay_window_ms: e.pay_window_ms,
        subpools,
        price: e.price,
        currency,
        limit_counts_held: e.limit_counts_held,
    })
}

impl<S: Store> WarehouseService<S> {
    /// `GetEvent`'s answer for sale `id` (its room settings included), `NOT_FOUND` if none.
    async fn sale_state(&self, id: i64) -> Result<EventState, Status> {
        match self.store.sale(id).await.map_err(status_of)? {
            Some(state) => {
                let room = self.store.room(id).await.map_err(status_of)?;
                Ok(queue::with_room(event_state(state, now_ms()), room))
            }
            None => Err(Status::not_found(format!("event {id} not found"))),
        }
    }
}

fn event_state(state: SaleState, now: i64) -> EventState {
    let status = match state.phase(now) {
        SalePhase::Upcoming => EventStatus::Upcoming,
        SalePhase::Running => EventStatus::Running,
        SalePhase::Ended => EventStatus::Ended,
    };
    let s = state.sale;
    EventState {
        event: Some(Event {
            id: s.id,
            sku_id: s.sku,
            pool: clamp(s.pool),
            start_ms: s.start_ms,
            end_ms: s.end_ms,
            per_user_limit: clamp(s.per_user_limit),
            pay_window_ms: s.pay_window_ms,
            subpools: s.subpools.try_into().unwrap_or(i32::MAX),
            price: s.price,
            currency: s.currency.to_string(),
            limit_counts_held: s.limit_counts_held,
            ..Default::default()
        }),
        remaining: clamp(state.remaining),
        sold_out: state.remaining == 0,
        status: status.into(),
        server_time_ms: now,
    }
}

/// Counts are i64 inside; the seed's wire type is int32.
fn clamp(n: i64) -> i32 {
    n.clamp(0, i64::from(i32::MAX)) as i32
}

fn order_msg(o: Order) -> OrderMsg {
    let status = match o.status {
        OrderStatus::Queued => OrderStatusMsg::Queued,
        OrderStatus::PendingPayment => OrderStatusMsg::PendingPayment,
        OrderStatus::Paid => OrderStatusMsg::Paid,
        OrderStatus::Cancelled => OrderStatusMsg::Cancelled,
        OrderStatus::Expired => OrderStatusMsg::Expired,
    };
    OrderMsg {
        order_no: o.order_no,
        event_id: o.event_id,
        sku_id: o.sku_id,
        user_id: o.user_id,
        qty: clamp(o.qty),
        status: status.into(),
        deadline_ms: o.deadline_ms,
        created_ms: o.created_ms,
        amount: o.amount,
        currency: o.currency.to_string(),
        payment_id: o.payment.as_ref().map(|p| p.id.clone()).unwrap_or_default(),
        paid_ms: o.payment.map_or(0, |p| p.paid_ms),
    }
}

fn order_req(req: &OrderReq) -> Result<(&str, &str), Status> {
    Ok((
        text("order_no", &req.order_no, 3, 64)?,
        text("user_id", &req.user_id, 1, 128)?,
    ))
}

fn pay_request(req: &PayOrderReq) -> Result<PayRequest, Status> {
    let user_id = match req.user_id.as_str() {
        "" => None,
        user => Some(text("user_id", user, 1, 128)?.to_owned()),
    };
    if req.amount < 0 {
        return Err(invalid("amount", "must be >= 0"));
    }
    Ok(PayRequest {
        order_no: text("order_no", &req.order_no, 3, 64)?.to_owned(),
        user_id,
        payment_id: text("payment_id", &req.payment_id, 1, 128)?.to_owned(),
        amount: req.amount,
    })
}

/// How long after its end a sale is still listed by `ListEvents`: a buyer who arrives late is
/// told the sale has ended (by the warehouse), not that it never existed (by the edge).
pub const LISTED_AFTER_END_MS: i64 = 3_600_000;

#[tonic::async_trait]
impl<S: Store> Warehouse for WarehouseService<S> {
    async fn get_sku_stock(
        &self,
        request: Request<SkuIdReq>,
    ) -> Result<Response<SkuStockReply>, Status> {
        self.track("GetSkuStock", async {
            let id = positive("id", request.get_ref().id)?;
            let available = self.store.available(&[id]).await.map_err(status_of)?;
            match available.first().copied().flatten() {
                Some(n) => Ok(SkuStockReply { num: clamp(n) }),
                None => Err(Status::not_found(format!("sku {id} not found"))),
            }
        })
        .await
    }

    async fn batch_skus_stock(
        &self,
        request: Request<SkusReq>,
    ) -> Result<Response<SkusStockReply>, Status> {
        self.track("BatchSkusStock", async {
            let ids = &request.get_ref().ids;
            if ids.is_empty() {
                return Err(invalid("ids", "must not be empty"));
            }
            if ids.len() > MAX_BATCH_IDS {
                return Err(invalid(
                    "ids",
                    &format!("must have at most {MAX_BATCH_IDS} entries"),
                ));
            }
            if let Some(bad) = ids.iter().find(|id| **id <= 0) {
                return Err(invalid("ids", &format!("id {bad} must be > 0")));
            }
            let available = self.store.available(ids).await.map_err(status_of)?;
            let sku_nums: HashMap<i64, i32> = ids
                .iter()
                .zip(available)
                .filter_map(|(id, n)| n.map(|n| (*id, clamp(n))))
                .collect();
            Ok(SkusStockReply { sku_nums })
        })
        .await
    }

    async fn s_ku_stock_lock(
        &self,
        request: Request<SkuStockLockReq>,
    ) -> Result<Response<()>, Status> {
        self.track("SKuStockLock", async {
            let lock = lock_request(request.into_inner())?;
            self.store.lock(&lock).await.map_err(status_of)
        })
        .await
    }

    async fn sku_stock_unlock(
        &self,
        request: Request<SkuStockUnlockReq>,
    ) -> Result<Response<()>, Status> {
        self.track("SkuStockUnlock", async {
            let req = request.get_ref();
            let order_id = positive("order_id", req.order_id)?;
            self.store
                .unlock(order_id, req.finish)
                .await
                .map_err(status_of)
        })
        .await
    }
}

#[tonic::async_trait]
impl<S: Store> Admin for WarehouseService<S> {
    async fn put_sku_stock(
        &self,
        request: Request<PutSkuStockReq>,
    ) -> Result<Response<SkuStockReply>, Status> {
        self.track("PutSkuStock", async {
            let req = request.get_ref();
            let sku = positive("sku_id", req.sku_id)?;
            if req.num < 0 {
                return Err(invalid("num", "must be >= 0"));
            }
            let available = self
                .store
                .put_stock(sku, req.num.into())
                .await
                .map_err(status_of)?;
            Ok(SkuStockReply {
                num: clamp(available),
            })
        })
        .await
    }

    async fn put_event(&self, request: Request<Event>) -> Result<Response<EventState>, Status> {
        self.track("PutEvent", async {
            let sale = sale_of(request.get_ref())?;
            let room = queue::room_rules(request.get_ref(), sale.subpools)?;
            if room.is_some() && self.queue_secret.is_none() {
                return Err(queue::no_secret());
            }
            let state = self.store.put_sale(&sale).await.map_err(status_of)?;
            // After the sale (a room is never stored for a sale refused); the sale exists
            // without its room for one round trip, and the edge mints no link before the start.
            self.store
                .put_room(&sale, room.as_ref())
                .await
                .map_err(status_of)?;
            Ok(queue::with_room(event_state(state, now_ms()), room))
        })
        .await
    }

    async fn get_event(&self, request: Request<EventReq>) -> Result<Response<EventState>, Status> {
        self.track("GetEvent", async {
            let id = positive("id", request.get_ref().id)?;
            self.sale_state(id).await
        })
        .await
    }

    async fn get_sku_ledger(
        &self,
        request: Request<SkuLedgerReq>,
    ) -> Result<Response<SkuLedger>, Status> {
        self.track("GetSkuLedger", async {
            let sku = positive("sku_id", request.get_ref().sku_id)?;
            match self.store.ledger(sku).await.map_err(status_of)? {
                Some(l) => Ok(SkuLedger {
                    sku_id: sku,
                    total: l.total,
                    available: l.available,
                    pools: l.pools,
                    locked: l.locked,
                    sold: l.sold,
                }),
                None => Err(Status::not_found(format!("sku {sku} not found"))),
            }
        })
        .await
    }

    async fn list_events(
        &self,
        _request: Request<ListEventsReq>,
    ) -> Result<Response<EventList>, Status> {
        self.track("ListEvents", async {
            let now = now_ms();
            let ids = self
                .store
                .sales_ending_from(now - LISTED_AFTER_END_MS)
                .await
                .map_err(status_of)?;
            Ok(EventList {
                ids,
                server_time_ms: now,
            })
        })
        .await
    }
}

#[tonic::async_trait]
impl<S: Store> Seckill for WarehouseService<S> {
    async fn buy(&self, request: Request<BuyReq>) -> Result<Response<BuyReply>, Status> {
        self.track("Buy", self.decide_buy(request.get_ref())).await
    }

    async fn buy_many(
        &self,
        request: Request<BuyManyReq>,
    ) -> Result<Response<BuyManyReply>, Status> {
        self.track("BuyMany", async {
            let buys = &request.get_ref().buys;
            if buys.is_empty() || buys.len() > BUY_MANY_MAX {
                return Err(invalid(
                    "buys",
                    &format!("must hold 1 up to {BUY_MANY_MAX} buys"),
                ));
            }
            // All at once, so the store's lanes decide them together (one script call per
            // shard, in this order where they share one).
            let decided = join_all(buys.iter().map(|buy| self.decide_buy(buy))).await;
            let results = decided
                .into_iter()
                .map(|decision| BuyResult {
                    result: Some(match decision {
                        Ok(reply) => buy_result::Result::Reply(reply),
                        Err(status) => buy_result::Result::Refused(BuyRefused {
                            code: status.code() as i32,
                            message: status.message().to_owned(),
                        }),
                    }),
                })
                .collect();
            Ok(BuyManyReply { results })
        })
        .await
    }

    async fn get_order(&self, request: Request<OrderReq>) -> Result<Response<OrderMsg>, Status> {
        self.track("GetOrder", async {
            let (order_no, user) = order_req(request.get_ref())?;
            match self.store.order(order_no).await.map_err(status_of)? {
                Some(o) if o.user_id == user => Ok(order_msg(o)),
                Some(_) => Err(status_of(StockError::NotYours(order_no.to_owned()).into())),
                None => Err(Status::not_found(format!("order {order_no} not found"))),
            }
        })
        .await
    }

    async fn pay_order(&self, request: Request<PayOrderReq>) -> Result<Response<OrderMsg>, Status> {
        self.track("PayOrder", async {
            let pay = pay_request(request.get_ref())?;
            self.pay(&pay).await
        })
        .await
    }

    async fn cancel_order(&self, request: Request<OrderReq>) -> Result<Response<OrderMsg>, Status> {
        self.track("CancelOrder", async {
            let (order_no, user) = order_req(request.get_ref())?;
            self.store
                .cancel(order_no, user, now_ms())
                .await
                .map(order_msg)
                .map_err(status_of)
        })
        .await
    }

    async fn demo_pay_order(
        &self,
        request: Request<OrderReq>,
    ) -> Result<Response<OrderMsg>, Status> {
        self.track("DemoPayOrder", async {
            if !self.demo_payments {
                return Err(Status::permission_denied(
                    "DemoPayOrder: this warehouse was not started with --demo-payments; \
                     orders are paid by the payment side (PayOrder)",
                ));
            }
            let (order_no, user) = order_req(request.get_ref())?;
            // The order's own amount: a demo payment always matches. The store checks the user.
            let amount = match self.store.order(order_no).await.map_err(status_of)? {
                Some(order) => order.amount,
                None => return Err(Status::not_found(format!("order {order_no} not found"))),
            };
            let pay = PayRequest {
                order_no: order_no.to_owned(),
                user_id: Some(user.to_owned()),
                payment_id: format!("demo-{order_no}"),
                amount,
            };
            self.pay(&pay).await
        })
        .await
    }
}
