//! What the edge sends the client: the [`Response`] (status, JSON body, `Retry-After`,
//! `Cache-Control`) with the headers every answer carries, and the JSON views of a sale (with
//! its price and currency), a buy and an order (with its amount).
//!
//! Both adapters send a response through [`Response::headers`], so their answers match byte for
//! byte. What it deliberately does not do: decide which answer to give (the routes and
//! [`Gate::complete`](super::Gate::complete) do).

use super::hold::Hold;
use super::state::SaleView;
use crate::proto::flashsale::{BuyOutcome, BuyReply, Order, OrderStatus};
use crate::refusal::{Reason, Refusal};
use serde::Serialize;

/// A response the edge sends to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: String,
    /// `Retry-After`, seconds.
    pub retry_after_s: Option<u64>,
    /// `Cache-Control`.
    pub cache_control: &'static str,
    /// Set on a waiting place's poll that asked to be held: an adapter that can hold requests
    /// may decide it again until its news changes (see [`Hold`]). Never sent to the client.
    pub hold: Option<Box<Hold>>,
}

impl Response {
    /// The headers an edge sends with the response, besides its status and body: the JSON
    /// content type, `Cache-Control`, `nosniff`, and `Retry-After` where waiting helps.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("content-type", "application/json; charset=utf-8".to_owned()),
            ("cache-control", self.cache_control.to_owned()),
            ("x-content-type-options", "nosniff".to_owned()),
        ];
        if let Some(seconds) = self.retry_after_s {
            headers.push(("retry-after", seconds.to_string()));
        }
        headers
    }
}

/// `Cache-Control` for anything personal or one-off.
pub const NO_STORE: &str = "no-store";
/// `Cache-Control` for a sale's public state: a crowd polling it costs the origin once a second.
pub const SALE_CACHE: &str = "public, max-age=1";

impl From<Refusal> for Response {
    fn from(refusal: Refusal) -> Self {
        Response {
            status: refusal.status(),
            body: refusal.to_json(),
            retry_after_s: refusal.retry_after_secs(),
            cache_control: NO_STORE,
            hold: None,
        }
    }
}

pub(super) fn ok_json(status: u16, body: &impl Serialize, cache_control: &'static str) -> Response {
    Response {
        status,
        body: serde_json::to_string(body).expect("plain structs serialise"),
        retry_after_s: None,
        cache_control,
        hold: None,
    }
}

pub(super) fn sale_response(sale: &SaleView, now: i64) -> Response {
    #[derive(Serialize)]
    struct View<'a> {
        #[serde(flatten)]
        sale: &'a SaleView,
        status: &'static str,
        server_time_ms: i64,
    }
    let status = if now < sale.start_ms {
        "upcoming"
    } else if now >= sale.end_ms {
        "ended"
    } else if sale.sold_out {
        "sold_out"
    } else {
        "running"
    };
    ok_json(
        200,
        &View {
            sale,
            status,
            server_time_ms: now,
        },
        SALE_CACHE,
    )
}

pub(super) fn buy_response(reply: &BuyReply) -> Response {
    let outcome = BuyOutcome::try_from(reply.outcome).unwrap_or(BuyOutcome::Unspecified);
    let reason = match outcome {
        BuyOutcome::Queued => {
            #[derive(Serialize)]
            struct Queued<'a> {
                outcome: &'static str,
                order_no: &'a str,
                remaining: i32,
            }
            let body = Queued {
                outcome: "queued",
                order_no: &reply.order_no,
                remaining: reply.remaining,
            };
            return ok_json(202, &body, NO_STORE);
        }
        BuyOutcome::SoldOut => Reason::SoldOut,
        BuyOutcome::LimitReached => Reason::LimitReached,
        BuyOutcome::NotStarted => Reason::TooEarly,
        BuyOutcome::Ended => Reason::SaleEnded,
        BuyOutcome::UnknownEvent => Reason::UnknownResource,
        BuyOutcome::Unspecified => Reason::Unavailable,
    };
    Refusal::new(reason).into()
}

/// An order as the client sees it: what it is, what it costs, and where it stands. The payment
/// provider's reference (`payment_id`) stays between the payment side and the warehouse: the
/// buyer learns that and when the order was paid (`status`, `paid_ms`), not the reference.
#[derive(Debug, Serialize)]
pub(super) struct OrderView<'a> {
    order_no: &'a str,
    event_id: i64,
    sku_id: i64,
    qty: i32,
    status: &'static str,
    deadline_ms: i64,
    created_ms: i64,
    /// `qty × price`, in minor units of `currency`.
    amount: i64,
    currency: &'a str,
    /// 0 until paid.
    paid_ms: i64,
}

impl<'a> From<&'a Order> for OrderView<'a> {
    fn from(o: &'a Order) -> Self {
        let status = match OrderStatus::try_from(o.status).unwrap_or(OrderStatus::Unspecified) {
            OrderStatus::Queued => "queued",
            OrderStatus::PendingPayment => "pending_payment",
            OrderStatus::Paid => "paid",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Expired => "expired",
            OrderStatus::Unspecified => "unknown",
        };
        OrderView {
            order_no: &o.order_no,
            event_id: o.event_id,
            sku_id: o.sku_id,
            qty: o.qty,
            status,
            deadline_ms: o.deadline_ms,
            created_ms: o.created_ms,
            amount: o.amount,
            currency: &o.currency,
            paid_ms: o.paid_ms,
        }
    }
}
