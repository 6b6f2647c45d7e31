//! The calls of a SKU's stock and its flash sales: define, buy (a batch of buys of one sale in
//! one shard), create (a read batch at a time), pay, release, close (and retire), and the
//! read-only ledger script. Each function packs one script's KEYS and ARGV for one shard; each
//! `parse_*` reads its reply; order records and request entries are read with
//! [`crate::stock::record`]. The audit's chunked reads are plain commands; [`assemble_snapshot`]
//! builds their result.

use std::collections::BTreeMap;

use super::{malformed, num, num_at, status, Call, ReplyResult};
use super::{
    BUY_BATCH, CLOSE_EVENT, CREATE_ORDER, LEDGER, PAY, PURGE_ORDERS, PUT_EVENT, PUT_STOCK,
    PUT_SUBPOOL, RELEASE_ORDER, STREAM_ACK,
};
use crate::stock::audit::{Counters, SaleSnapshot, SkuSnapshot};
use crate::stock::{
    record, BuyDecision, BuyRequest, Currency, Keys, Ledger, Order, OrderStatus, PayRequest, Sale,
    SaleState, Shard, StockError, FIELD_SEP, ORDER_GROUP,
};

/// `put_stock.lua`: sets a SKU's total.
pub fn put_stock(keys: &Keys, sku: i64, total: i64) -> Call {
    Call::new(
        &PUT_STOCK,
        vec![keys.stock(sku)],
        vec![sku.to_string(), total.to_string()],
    )
}

/// `put_stock.lua`'s reply: the SKU's available units.
pub fn parse_put_stock(reply: &[String]) -> ReplyResult<i64> {
    status(reply)?;
    num_at(reply, 1, "put_stock")
}

/// `put_event.lua` (in the SKU's own shard, `sub` 0) or `put_subpool.lua` (in sub-pool `sub`):
/// a sale's definition in one shard, one argument list for both.
pub fn put_sale(keys: &Keys, sale: &Sale, subpools: u32, sub: u32) -> Call {
    let shard = Shard::new(sale.sku, sub);
    Call::new(
        if sub == 0 { &PUT_EVENT } else { &PUT_SUBPOOL },
        vec![
            keys.stock(shard),
            keys.event(shard, sale.id),
            keys.sku_events(shard),
            keys.order_stream(shard),
        ],
        vec![
            sale.id.to_string(),
            sale.sku.to_string(),
            sale.pool.to_string(),
            sale.start_ms.to_string(),
            sale.end_ms.to_string(),
            sale.per_user_limit.to_string(),
            sale.pay_window_ms.to_string(),
            ORDER_GROUP.into(),
            subpools.to_string(),
            sub.to_string(),
            sale.price.to_string(),
            sale.currency.to_string(),
            u8::from(sale.limit_counts_held).to_string(),
        ],
    )
}

/// The most buys one `buy_batch.lua` call decides: enough that a batch of a hot sale amortises
/// the script's fixed cost, few enough that one call stays well under a millisecond of Redis.
pub const BUY_BATCH_MAX: usize = 64;

/// One buy of a batch: the request and when it arrived (unix ms, the time it is decided at).
pub type Buy<'a> = (&'a BuyRequest, i64);

/// `buy_batch.lua` in one shard of a sale split in `subpools`: `buys` (1 to [`BUY_BATCH_MAX`],
/// all of one sale) decided in order, as single buys one after the other would be.
pub fn buy_batch(keys: &Keys, shard: Shard, subpools: u32, buys: &[Buy<'_>]) -> Call {
    assert!(
        (1..=BUY_BATCH_MAX).contains(&buys.len()),
        "1 to {BUY_BATCH_MAX} buys"
    );
    let e = buys[0].0.event_id;
    debug_assert!(buys.iter().all(|(r, _)| r.event_id == e), "one sale");
    let mut args = Vec::with_capacity(3 + 4 * buys.len());
    args.extend([e.to_string(), subpools.to_string(), shard.sub.to_string()]);
    for (req, now_ms) in buys {
        args.extend([
            req.user_id.clone(),
            req.qty.to_string(),
            req.request_id.clone(),
            now_ms.to_string(),
        ]);
    }
    Call::new(
        &BUY_BATCH,
        vec![
            keys.event(shard, e),
            keys.event_users(shard, e),
            keys.event_requests(shard, e),
            keys.stock(shard),
            keys.orderbook(shard),
            keys.order_stream(shard),
        ],
        args,
    )
}

/// One buy alone: a batch of one.
pub fn buy(keys: &Keys, shard: Shard, subpools: u32, req: &BuyRequest, now_ms: i64) -> Call {
    buy_batch(keys, shard, subpools, &[(req, now_ms)])
}

/// `buy_batch.lua`'s reply, 3 strings per buy: each buy's decision, or its refusal (a request
/// id reused for another quantity in the sale, [`StockError::request_reused`]).
pub fn parse_buy_batch(
    buys: &[Buy<'_>],
    reply: &[String],
) -> ReplyResult<Vec<Result<BuyDecision, StockError>>> {
    if reply.len() != 3 * buys.len() {
        return Err(malformed(format!(
            "buy_batch reply of {} for {} buys",
            reply.len(),
            buys.len()
        )));
    }
    buys.iter()
        .zip(reply.chunks_exact(3))
        .map(|((req, _), r)| {
            let [outcome, detail, remaining] = r else {
                unreachable!("chunks of 3")
            };
            if outcome == "REUSED" {
                let named = num(detail)?;
                return Ok(Err(StockError::request_reused(
                    &req.request_id,
                    (req.event_id, named),
                )));
            }
            parse_buy(outcome, detail, num(remaining)?)
                .map(Ok)
                .ok_or_else(|| malformed(format!("buy outcome {outcome}")))
        })
        .collect()
}

/// The reply of one buy alone ([`buy`]).
pub fn parse_buy_reply(req: &BuyRequest, reply: &[String]) -> ReplyResult<BuyDecision> {
    let mut one = parse_buy_batch(&[(req, 0)], reply)?;
    Ok(one.pop().expect("one buy")?)
}

/// Parses `Buy`'s reply `{outcome, order_no, remaining}`.
pub fn parse_buy(outcome: &str, order_no: &str, remaining: i64) -> Option<BuyDecision> {
    Some(match outcome {
        "QUEUED" | "DUPLICATE" => BuyDecision::Queued {
            order_no: order_no.to_owned(),
            remaining,
        },
        "SOLD_OUT" => BuyDecision::SoldOut { remaining },
        "LIMIT_REACHED" => BuyDecision::LimitReached { remaining },
        "NOT_STARTED" => BuyDecision::NotStarted,
        "ENDED" => BuyDecision::Ended,
        "UNKNOWN_EVENT" => BuyDecision::UnknownEvent,
        _ => return None,
    })
}

/// `stream_ack.lua`: the entries `ids` of `stream` acknowledged in `group` and deleted. `stream`
/// must be read by that group alone; `ids` must not be empty and only name delivered entries.
pub fn stream_ack<S: AsRef<str>>(stream: &str, group: &str, ids: &[S]) -> Call {
    debug_assert!(!ids.is_empty(), "stream_ack: no ids");
    let mut args = Vec::with_capacity(1 + ids.len());
    args.push(group.to_owned());
    args.extend(ids.iter().map(|id| id.as_ref().to_owned()));
    Call::new(&STREAM_ACK, vec![stream.to_owned()], args)
}

/// The most wins one `create_order.lua` call takes. A call holds Redis's one thread for about
/// 7 µs a win, and the buys' lane waits behind it: at 256 a call (1.6 ms) the order benchmark
/// accepted 15.0k and 18.3k buys/s, at 64 (two concurrent calls of a 128-win read) 19.0k and
/// 19.8k in the same hour (`flashgate-bench-orders --wins 100000`, alternated).
pub const CREATE_BATCH: usize = 64;

/// `create_order.lua`: the orders the wins of one shard announce, created in one call; with
/// `ack`, their stream entries acknowledged in the same atomic step. `wins` are
/// `(order number, stream entry id)`, at most [`CREATE_BATCH`].
pub fn create_orders(
    keys: &Keys,
    shard: Shard,
    wins: &[(&str, &str)],
    ack: bool,
    log: bool,
    now_ms: i64,
) -> Call {
    debug_assert!(
        wins.len() <= CREATE_BATCH,
        "create_order: {} wins",
        wins.len()
    );
    let order_nos: Vec<&str> = wins.iter().map(|w| w.0).collect();
    let entries: Vec<&str> = wins.iter().map(|w| w.1).collect();
    Call::new(
        &CREATE_ORDER,
        vec![
            keys.orderbook(shard),
            keys.deadlines(shard),
            keys.order_stream(shard),
            keys.changes(shard),
        ],
        vec![
            now_ms.to_string(),
            keys.event_prefix(shard),
            if ack {
                ORDER_GROUP.into()
            } else {
                String::new()
            },
            order_nos.join(" "),
            if ack {
                entries.join(" ")
            } else {
                String::new()
            },
            flag(log),
        ],
    )
}

/// What `create_order.lua` did with one win.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// This call created the order (and acknowledged its win).
    Created,
    /// The order was past QUEUED already (a redelivery, or cancelled first); acknowledged.
    Already,
    /// No such order: left unacknowledged.
    NotFound,
}

/// `create_order.lua`'s reply: one outcome per win, in the order they were given.
pub fn parse_create_orders(reply: &[String], wins: usize) -> ReplyResult<Vec<Created>> {
    if reply.len() != wins {
        return Err(malformed(format!(
            "create_order: {} replies for {wins} wins",
            reply.len()
        )));
    }
    reply
        .iter()
        .map(|r| match r.as_str() {
            "CREATED" => Ok(Created::Created),
            "ALREADY" => Ok(Created::Already),
            "NOT_FOUND" => Ok(Created::NotFound),
            other => Err(malformed(format!("create_order outcome {other:?}"))),
        })
        .collect()
}

/// `pay.lua`: the payment side's confirmation of an order in its shard.
pub fn pay(keys: &Keys, shard: Shard, req: &PayRequest, log: bool, now_ms: i64) -> Call {
    Call::new(
        &PAY,
        vec![
            keys.orderbook(shard),
            keys.deadlines(shard),
            keys.stock(shard),
            keys.changes(shard),
        ],
        vec![
            req.order_no.clone(),
            // An empty user is how pay.lua is asked for any user's order.
            req.user_id.clone().unwrap_or_default(),
            req.payment_id.clone(),
            req.amount.to_string(),
            now_ms.to_string(),
            flag(log),
        ],
    )
}

/// `pay.lua`'s reply: the paid order.
pub fn parse_pay(order_no: &str, reply: &[String]) -> ReplyResult<Order> {
    status(reply)?;
    order_record(
        order_no,
        reply.get(1).ok_or_else(|| malformed("pay reply"))?,
    )
}

/// `release_order.lua`: a user's cancel (`to` CANCELLED) or the sweeper's expiry (`to` EXPIRED,
/// `user_id` empty: any user's order).
pub fn release_order(
    keys: &Keys,
    (event, shard): (i64, Shard),
    order_no: &str,
    user_id: &str,
    now_ms: i64,
    to: OrderStatus,
    log: bool,
) -> Call {
    Call::new(
        &RELEASE_ORDER,
        vec![
            keys.orderbook(shard),
            keys.deadlines(shard),
            keys.stock(shard),
            keys.event(shard, event),
            keys.event_users(shard, event),
            keys.changes(shard),
        ],
        vec![
            order_no.into(),
            user_id.into(),
            now_ms.to_string(),
            to.as_str().into(),
            flag(log),
        ],
    )
}

/// `release_order.lua`'s reply: whether this call released the order (not a repeat, not
/// skipped), and the order.
pub fn parse_release_order(order_no: &str, reply: &[String]) -> ReplyResult<(bool, Order)> {
    let released = status(reply)? == "OK";
    let record = reply
        .get(1)
        .ok_or_else(|| malformed("release reply without record"))?;
    Ok((released, order_record(order_no, record)?))
}

/// Orders `close_event.lua` examines at most per call while it waits for a sale's orders to be
/// final (a few hundred µs of Redis time).
pub const RETIRE_CHUNK: usize = 200;

/// `close_event.lua`: the sweeper's end of one sale in one shard, and its mark there once its
/// orders there are final.
pub fn close_event(keys: &Keys, (event, subpools): (i64, u32), shard: Shard, now_ms: i64) -> Call {
    Call::new(
        &CLOSE_EVENT,
        vec![
            keys.event(shard, event),
            keys.stock(shard),
            keys.orderbook(shard),
        ],
        vec![
            now_ms.to_string(),
            event.to_string(),
            subpools.max(1).to_string(),
            shard.sub.to_string(),
            RETIRE_CHUNK.to_string(),
        ],
    )
}

/// What `close_event.lua` did with one sale in one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Closing {
    /// This call closed the sale (its pool went back to available).
    pub closed_now: bool,
    /// Every order of the sale in this shard is final (found by this call or before): its
    /// `seq` there.
    pub retired: Option<i64>,
}

/// `close_event.lua`'s reply.
pub fn parse_close_event(reply: &[String]) -> ReplyResult<Closing> {
    Ok(match status(reply)? {
        "CLOSED" => Closing {
            closed_now: true,
            retired: None,
        },
        "OPEN" | "ALREADY" => Closing::default(),
        "RETIRED" => Closing {
            closed_now: reply.get(2).is_some_and(|units| !units.is_empty()),
            retired: Some(num_at(reply, 1, "close_event")?),
        },
        other => return Err(malformed(format!("close_event outcome {other:?}"))),
    })
}

/// Orders one `purge_orders.lua` call deletes at most.
pub const PURGE_CHUNK: i64 = 200;

/// `purge_orders.lua`: the orders `first..=last` of a retired sale's track in one shard.
pub fn purge_orders(
    keys: &Keys,
    (event, subpools): (i64, u32),
    shard: Shard,
    (first, last): (i64, i64),
) -> Call {
    Call::new(
        &PURGE_ORDERS,
        vec![keys.orderbook(shard), keys.stock(shard)],
        vec![
            event.to_string(),
            subpools.max(1).to_string(),
            shard.sub.to_string(),
            first.to_string(),
            last.to_string(),
        ],
    )
}

/// `purge_orders.lua`'s reply: how many orders it deleted.
pub fn parse_purge_orders(reply: &[String]) -> ReplyResult<i64> {
    status(reply)?;
    num_at(reply, 1, "purge_orders")
}

/// `ledger.lua`: one shard's counters and pools.
pub fn ledger(keys: &Keys, shard: Shard) -> Call {
    Call::new(
        &LEDGER,
        vec![keys.stock(shard), keys.sku_events(shard)],
        vec![keys.event_prefix(shard)],
    )
}

/// `ledger.lua`'s reply; `None` when the shard has no stock hash.
pub fn parse_ledger(reply: &[String]) -> ReplyResult<Option<Ledger>> {
    if reply.first().map(String::as_str) == Some("NOT_FOUND") {
        return Ok(None);
    }
    let n: Vec<i64> = reply
        .iter()
        .skip(1)
        .map(|s| num(s))
        .collect::<ReplyResult<_>>()?;
    let [total, available, pools, locked, sold] = n[..] else {
        return Err(malformed("ledger reply"));
    };
    Ok(Some(Ledger {
        total,
        available,
        pools,
        locked,
        sold,
    }))
}

/// Entries one audit read asks for at most (`HSCAN`/`SSCAN` `COUNT`) of a set of sales or a
/// sale's per-user and request hashes: each read stays well under a millisecond of Redis time
/// however large the hash.
pub const AUDIT_CHUNK: usize = 500;

/// The same for the orderbook, whose entries are whole order records (a chunk of them is a
/// reply of some 25 kB).
pub const AUDIT_ORDERS_CHUNK: usize = 100;

/// One sale of a shard as the audit reads it: its hash, per-user counts and request ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawSale {
    /// The sale's hash (`HGETALL`).
    pub sale: BTreeMap<String, String>,
    /// User → units counted (`HSCAN` of the users hash).
    pub users: BTreeMap<String, String>,
    /// `user \x1f request id` → order number (`HSCAN` of the requests hash).
    pub req: BTreeMap<String, String>,
}

/// Builds one shard's snapshot from what the audit read in chunks: the stock hash, its sales and
/// its orderbook; `None` when the shard has no stock hash.
pub fn assemble_snapshot(
    shard: Shard,
    stock: &BTreeMap<String, String>,
    raw_sales: Vec<RawSale>,
    orders: &BTreeMap<String, String>,
) -> ReplyResult<Option<SkuSnapshot>> {
    if stock.is_empty() {
        return Ok(None);
    }
    let sku = shard.sku;
    let counter = |k: &str| stock.get(k).map_or(Ok(0), |v| num(v));
    let mut sales = Vec::new();
    for sale in raw_sales {
        let state = parse_sale(&sale.sale)
            .ok_or_else(|| malformed(format!("sale hash {:?}", sale.sale)))?;
        let counted = sale
            .users
            .iter()
            .map(|(u, n)| Ok((u.clone(), num(n)?)))
            .collect::<ReplyResult<_>>()?;
        let mut requests = BTreeMap::new();
        for (field, entry) in &sale.req {
            let (user, request) = field
                .split_once(FIELD_SEP)
                .ok_or_else(|| malformed(format!("request field {field:?}")))?;
            let (_, won) = record::parse_request_entry(entry)
                .ok_or_else(|| malformed(format!("request entry {entry:?}")))?;
            if let Some(order_no) = won {
                requests.insert((user.to_owned(), request.to_owned()), order_no.to_owned());
            }
        }
        let seq = sale.sale.get("seq").map_or(Ok(0), |v| num(v))?;
        sales.push(SaleSnapshot {
            state,
            sub: shard.sub,
            seq,
            counted,
            requests,
        });
    }
    let orders = orders
        .iter()
        .map(|(no, record)| order_record(no, record))
        .collect::<ReplyResult<_>>()?;
    Ok(Some(SkuSnapshot {
        sku,
        counters: Counters {
            total: counter("total")?,
            available: counter("available")?,
            locked: counter("locked")?,
            sold: counter("sold")?,
            sold_purged: counter("sold_purged")?,
        },
        sales,
        orders,
        moving: 0,
    }))
}

/// An order record of the orderbook, or why it is not one.
pub fn order_record(order_no: &str, record: &str) -> ReplyResult<Order> {
    parse_order_record(order_no, record)
        .ok_or_else(|| malformed(format!("order record {order_no}: {record}")))
}

/// Builds an [`Order`] from its record in the orderbook ([`record::decode`]).
pub fn parse_order_record(order_no: &str, record: &str) -> Option<Order> {
    record::decode(order_no, record)
}

/// Builds a [`SaleState`] from a sale hash (`HGETALL`).
pub fn parse_sale(fields: &BTreeMap<String, String>) -> Option<SaleState> {
    let num = |k: &str| fields.get(k).and_then(|v| v.parse::<i64>().ok());
    Some(SaleState {
        sale: Sale {
            id: num("id")?,
            sku: num("sku")?,
            pool: num("put")?,
            start_ms: num("start")?,
            end_ms: num("end")?,
            per_user_limit: num("limit")?,
            pay_window_ms: num("pay_window")?,
            subpools: num("subpools").map_or(Ok(1), u32::try_from).ok()?.max(1),
            price: num("price")?,
            currency: Currency::parse(fields.get("currency")?)?,
            limit_counts_held: match num("counts_held")? {
                0 => false,
                1 => true,
                _ => return None,
            },
        },
        remaining: num("pool")?,
        closed: num("closed").unwrap_or(0) == 1,
    })
}

#[cfg(test)]
mod tests;

/// The change-log flag of `create_order.lua`, `pay.lua` and `release_order.lua`: whether the
/// call appends the orders it changes to the shard's change log (see `Keys::changes`).
fn flag(log: bool) -> String {
    if log { "1" } else { "0" }.into()
}
