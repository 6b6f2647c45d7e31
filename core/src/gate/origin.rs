//! The gate's side of the warehouse: which calls the edge makes ([`Rpc`], [`Call`]), the ready,
//! origin-signed [`Forward`], where it goes ([`OriginUrl`]), what came back ([`OriginResponse`],
//! [`OriginReply`]), and [`Gate::complete`], which feeds the breaker, the sale cache and the
//! directory of sale ids from the reply and maps it to the client's answer.
//!
//! Both adapters send a forward the same way because everything but the sending is here: the
//! URL is validated once in the configuration, the response headers the gate needs are named
//! once, and the reply is one owned type whatever the platform's HTTP client returns.
//!
//! What it deliberately does not do: send anything, or time a call out (the adapter does both,
//! and reports a call that got no answer as [`OriginReply::Failed`]).

use super::response::{buy_response, ok_json, sale_response, OrderView, Response, NO_STORE};
use super::state::{GateState, SaleEntry, SaleView};
use super::{Gate, Verdict};
use crate::breaker::{Admission, Outcome};
use crate::grpc_web::{self, Code, Reply, StatusHeaders};
use crate::proto::flashsale::{
    BuyManyReply, BuyOutcome, BuyReply, EventList, EventState, Order, QueuePlace, QueuePlaces,
    QueueSnapshot,
};
use crate::refusal::{Reason, Refusal};

/// A warehouse method the edge may call. The warehouse's gRPC-Web gate lets exactly these
/// through ([`Rpc::ALL`]), so the two lists cannot drift apart.
///
/// `Seckill/PayOrder` is deliberately not one of them: payment is the payment side's word, on
/// the warehouse's internal listener, never the buyer's through the edge. The demo's
/// [`Rpc::DemoPayOrder`] pays only where the warehouse runs with `--demo-payments`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rpc {
    /// `flashsale.Seckill/Buy`.
    Buy,
    /// `flashsale.Seckill/BuyMany`: the buys an instance gathered for a sale.
    BuyMany,
    /// `flashsale.Seckill/GetOrder`.
    GetOrder,
    /// `flashsale.Seckill/CancelOrder`.
    CancelOrder,
    /// `flashsale.Seckill/DemoPayOrder` (the gate sends it in demo mode only).
    DemoPayOrder,
    /// `flashsale.Admin/GetEvent`.
    GetEvent,
    /// `flashsale.Admin/ListEvents`: the directory of sale ids.
    ListEvents,
    /// `flashsale.Queue/JoinQueue`: a place in a waiting-room sale's line.
    JoinQueue,
    /// `flashsale.Queue/JoinQueueMany`: the places of the joins an instance gathered.
    JoinQueueMany,
    /// `flashsale.Queue/GetQueue`: the sale's line, for the instance's cache.
    GetQueue,
    /// `flashsale.Queue/ClaimAdmission`: an admitted place's right to a purchase link.
    ClaimAdmission,
}

impl Rpc {
    /// Every method the edge calls.
    pub const ALL: [Rpc; 11] = [
        Rpc::Buy,
        Rpc::BuyMany,
        Rpc::GetOrder,
        Rpc::CancelOrder,
        Rpc::DemoPayOrder,
        Rpc::GetEvent,
        Rpc::ListEvents,
        Rpc::JoinQueue,
        Rpc::JoinQueueMany,
        Rpc::GetQueue,
        Rpc::ClaimAdmission,
    ];

    /// The gRPC method path.
    pub const fn path(self) -> &'static str {
        match self {
            Rpc::GetEvent => "/flashsale.Admin/GetEvent",
            Rpc::ListEvents => "/flashsale.Admin/ListEvents",
            Rpc::Buy => "/flashsale.Seckill/Buy",
            Rpc::BuyMany => "/flashsale.Seckill/BuyMany",
            Rpc::GetOrder => "/flashsale.Seckill/GetOrder",
            Rpc::CancelOrder => "/flashsale.Seckill/CancelOrder",
            Rpc::DemoPayOrder => "/flashsale.Seckill/DemoPayOrder",
            Rpc::JoinQueue => "/flashsale.Queue/JoinQueue",
            Rpc::JoinQueueMany => "/flashsale.Queue/JoinQueueMany",
            Rpc::GetQueue => "/flashsale.Queue/GetQueue",
            Rpc::ClaimAdmission => "/flashsale.Queue/ClaimAdmission",
        }
    }
}

/// Which warehouse call a [`Forward`] is, with what [`Gate::complete`] needs to read its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `flashsale.Admin/GetEvent`; `answer`: whether the reply answers the client (the event
    /// route) or only refreshes the cache before deciding again.
    GetEvent {
        /// The sale.
        event_id: i64,
        /// Answer the client with it.
        answer: bool,
    },
    /// `flashsale.Admin/ListEvents`: refreshes the directory, then the request is decided again.
    ListEvents,
    /// `flashsale.Seckill/Buy`.
    Buy {
        /// The sale (for the sold-out flag).
        event_id: i64,
    },
    /// `flashsale.Seckill/BuyMany`: the reply answers every buy of the batch (see
    /// [`BuyWait`](super::BuyWait)).
    BuyMany {
        /// The sale.
        event_id: i64,
        /// The buys' keys (user and request id), in the request's order.
        keys: Vec<String>,
    },
    /// `flashsale.Seckill/GetOrder`.
    GetOrder,
    /// `flashsale.Seckill/CancelOrder`.
    CancelOrder,
    /// `flashsale.Seckill/DemoPayOrder`.
    DemoPayOrder,
    /// `flashsale.Queue/JoinQueue`: the reply's place is answered with a place token.
    JoinQueue(Box<Seat>),
    /// `flashsale.Queue/JoinQueueMany`: the reply answers every join of the batch (see
    /// [`JoinWait`](super::JoinWait)).
    JoinQueueMany {
        /// The sale.
        event_id: i64,
        /// The users joined, in the request's order.
        users: Vec<String>,
    },
    /// `flashsale.Queue/GetQueue`: refreshes the sale's cached waiting room, then the request
    /// is decided again.
    GetQueue {
        /// The sale.
        event_id: i64,
    },
    /// `flashsale.Queue/ClaimAdmission`: an admitted reply is answered with a purchase link.
    ClaimAdmission(Box<Seat>),
}

/// Whose place a queue call is about, with what answering its reply takes: the sale as the
/// gate saw it (for the place token's expiry and the link's binding) and the link nonce of the
/// challenge the place was joined with. Boxed in its [`Call`], which stays small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    /// The sale.
    pub sale: SaleView,
    /// The user.
    pub user_id: String,
    /// The nonce the place's purchase link carries.
    pub link_nonce: [u8; 16],
}

impl Call {
    /// The method called.
    pub fn rpc(&self) -> Rpc {
        match self {
            Call::GetEvent { .. } => Rpc::GetEvent,
            Call::ListEvents => Rpc::ListEvents,
            Call::Buy { .. } => Rpc::Buy,
            Call::BuyMany { .. } => Rpc::BuyMany,
            Call::GetOrder => Rpc::GetOrder,
            Call::CancelOrder => Rpc::CancelOrder,
            Call::DemoPayOrder => Rpc::DemoPayOrder,
            Call::JoinQueue(_) => Rpc::JoinQueue,
            Call::JoinQueueMany { .. } => Rpc::JoinQueueMany,
            Call::GetQueue { .. } => Rpc::GetQueue,
            Call::ClaimAdmission(_) => Rpc::ClaimAdmission,
        }
    }

    /// The gRPC method path.
    pub fn path(&self) -> &'static str {
        self.rpc().path()
    }

    /// For a call that carries gathered requests (every one's, not the sender's: an adapter
    /// sends it so that the sender going away cannot cancel it), how soon its sender looks for
    /// its own answer after sending it.
    pub fn gathered_tick_ms(&self) -> Option<i64> {
        match self {
            Call::JoinQueueMany { .. } => Some(super::JOIN_TICK_MS),
            Call::BuyMany { .. } => Some(super::BUY_TICK_MS),
            _ => None,
        }
    }
}

/// A ready gRPC-Web call to the warehouse: `POST {origin}{path}` with these headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// What it is.
    pub call: Call,
    /// The gRPC method path, appended to the origin's base URL.
    pub path: &'static str,
    /// Request headers: gRPC-Web's and the origin signature.
    pub headers: Vec<(&'static str, String)>,
    /// The framed request body.
    pub body: Vec<u8>,
}

/// The warehouse's gRPC-Web base URL, checked once when the configuration is read: `https://`
/// anywhere, plain `http://` only to this machine (127.0.0.0/8, `::1`, `localhost`), since the
/// calls carry the shop's users' ids and the origin signature and must not cross a network in
/// the clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginUrl {
    https: bool,
    authority: String,
    /// Path prefix without a trailing slash (usually empty).
    base_path: String,
}

/// Why an origin URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadOriginUrl {
    /// Neither `http://` nor `https://`.
    #[error("must start with http:// or https://")]
    Scheme,
    /// Nothing between the scheme and the path.
    #[error("has no host")]
    NoHost,
    /// `http://` to a host that is not this machine.
    #[error(
        "uses plain http:// to {0}; use https://, or http:// only to a loopback host \
         (127.0.0.0/8, ::1, localhost)"
    )]
    PlainHttp(String),
}

/// Whether `authority` (`host[:port]`, an IPv6 host in brackets) names this machine.
fn is_loopback(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(v6, |(host, _)| host),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl OriginUrl {
    /// Parses `https://authority[/base/path][/]`, or `http://` with a loopback authority
    /// (surrounding whitespace ignored).
    pub fn parse(url: &str) -> Result<Self, BadOriginUrl> {
        let url = url.trim();
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(BadOriginUrl::Scheme);
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(BadOriginUrl::NoHost);
        }
        if !https && !is_loopback(authority) {
            return Err(BadOriginUrl::PlainHttp(authority.to_owned()));
        }
        Ok(OriginUrl {
            https,
            authority: authority.to_owned(),
            base_path: format!("/{path}").trim_end_matches('/').to_owned(),
        })
    }

    /// Whether the scheme is `https`.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// Host and port.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The path and query to request for a call's `path`: the base path, then it.
    pub fn path_for(&self, path: &str) -> String {
        format!("{}{path}", self.base_path)
    }

    /// The whole URL for a call's `path`.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority, self.path_for(path))
    }
}

/// What the warehouse answered to a [`Forward`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginReply<'a> {
    /// An HTTP response.
    Http {
        /// HTTP status.
        status: u16,
        /// `grpc-status` / `grpc-message` response headers (trailers-only responses).
        grpc: StatusHeaders<'a>,
        /// The body.
        body: &'a [u8],
    },
    /// No response: connection failure or timeout.
    Failed,
}

/// The warehouse's HTTP response, owned, as every adapter reads it: the status, the two
/// status headers of a trailers-only reply, and the whole body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginResponse {
    /// HTTP status.
    pub status: u16,
    /// `grpc-status`.
    pub grpc_status: Option<String>,
    /// `grpc-message`.
    pub grpc_message: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl OriginResponse {
    /// A response's status and headers (looked up by lower-case name with `header`), before
    /// its body is read.
    pub fn head(status: u16, header: impl Fn(&str) -> Option<String>) -> Self {
        OriginResponse {
            status,
            grpc_status: header("grpc-status"),
            grpc_message: header("grpc-message"),
            body: Vec::new(),
        }
    }

    /// The reply for the gate: this response, or [`OriginReply::Failed`] for none.
    pub fn reply(response: Option<&OriginResponse>) -> OriginReply<'_> {
        match response {
            Some(r) => OriginReply::Http {
                status: r.status,
                grpc: StatusHeaders {
                    grpc_status: r.grpc_status.as_deref(),
                    grpc_message: r.grpc_message.as_deref(),
                },
                body: &r.body,
            },
            None => OriginReply::Failed,
        }
    }
}

/// What to do after [`Gate::complete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Send this to the client.
    Respond(Response),
    /// The directory or a sale view was refreshed: decide the same request again with
    /// [`Gate::decide_again`].
    Retry,
    /// A batch of gathered requests was answered: look for this request's answer
    /// ([`Exchange::check`](super::Exchange::check)).
    Check,
}

impl Gate {
    /// The forward for `call` with `message`, unless the breaker fails it fast.
    pub(super) fn forward(
        &self,
        state: &mut GateState,
        call: Call,
        message: &impl prost::Message,
        now: i64,
    ) -> Verdict {
        let (admission, breaker) = state.breaker.admit(now, &self.config.breaker);
        state.breaker = breaker;
        if let Admission::FailFast { retry_after_ms } = admission {
            return Verdict::Refuse(Refusal::after(Reason::Unavailable, retry_after_ms));
        }
        let path = call.path();
        let body = grpc_web::encode_request(message);
        let sig = crate::origin_auth::sign(&self.config.origin_key, "POST", path, now, &body);
        let mut headers: Vec<(&'static str, String)> = grpc_web::REQUEST_HEADERS
            .iter()
            .map(|(k, v)| (*k, (*v).to_owned()))
            .collect();
        headers.push((crate::origin_auth::TIMESTAMP_HEADER, sig.timestamp));
        headers.push((crate::origin_auth::SIGNATURE_HEADER, sig.signature));
        Verdict::Forward(Forward {
            call,
            path,
            headers,
            body,
        })
    }

    /// Handles the warehouse's reply to `forward`: updates the breaker and the cached sale, and
    /// says what to send to the client.
    pub fn complete(
        &self,
        state: &mut GateState,
        forward: &Forward,
        reply: OriginReply<'_>,
        now_ms: i64,
    ) -> Completion {
        let max = grpc_web::DEFAULT_MAX_MESSAGE;
        let parsed = match reply {
            OriginReply::Failed => None,
            OriginReply::Http { status, grpc, body } => Some((status, grpc, body)),
        };
        macro_rules! parse {
            ($t:ty) => {
                match parsed.map(|(s, g, b)| grpc_web::parse_response::<$t>(s, g, b, max)) {
                    Some(Ok(Reply::Message(m))) => Ok(m),
                    Some(Ok(Reply::Status(status))) => Err(Some(status)),
                    Some(Err(_)) | None => Err(None),
                }
            };
        }
        let result: Result<Response, Option<grpc_web::Status>> = match &forward.call {
            Call::GetEvent { event_id, answer } => match parse!(EventState) {
                Ok(event) => {
                    let sale = SaleView::from_state(&event);
                    state.learn_sale(*event_id, sale, now_ms);
                    Ok(match sale {
                        Some(sale) if *answer => sale_response(&sale, now_ms),
                        Some(_) => {
                            return self.settle(state, Outcome::Success, now_ms, Completion::Retry)
                        }
                        None => Refusal::new(Reason::UnknownResource).into(),
                    })
                }
                Err(Some(status)) if status.code == Code::NotFound => {
                    state.learn_sale(*event_id, None, now_ms);
                    Err(Some(status))
                }
                Err(e) => {
                    // Failed: the next request reads again.
                    state.sale_reads.remove(event_id);
                    Err(e)
                }
            },
            Call::ListEvents => match parse!(EventList) {
                Ok(list) => {
                    state.directory.learn(&list, now_ms);
                    return self.settle(state, Outcome::Success, now_ms, Completion::Retry);
                }
                Err(e) => Err(e),
            },
            Call::Buy { event_id } => parse!(BuyReply).map(|reply| {
                observe_buy(state, *event_id, &reply);
                buy_response(&reply)
            }),
            Call::BuyMany { event_id, keys } => {
                let outcome = match parse!(BuyManyReply) {
                    Ok(reply) if reply.results.len() == keys.len() => {
                        Self::buys_answered(state, *event_id, keys, Ok(reply.results), now_ms)
                    }
                    // A reply that does not answer every buy counts as none.
                    other => {
                        let (outcome, refusal) = failure(&forward.call, other.err().flatten());
                        Self::buys_answered(state, *event_id, keys, Err(refusal), now_ms);
                        outcome
                    }
                };
                return self.settle(state, outcome, now_ms, Completion::Check);
            }
            Call::GetOrder | Call::CancelOrder | Call::DemoPayOrder => {
                parse!(Order).map(|order| ok_json(200, &OrderView::from(&order), NO_STORE))
            }
            Call::JoinQueue(seat) => {
                parse!(QueuePlace).map(|place| self.joined(state, seat, &place, now_ms))
            }
            Call::JoinQueueMany { event_id, users } => {
                let (outcome, places) = match parse!(QueuePlaces) {
                    Ok(reply) if reply.places.len() == users.len() => {
                        match &reply.line {
                            Some(line) => state.learn_queue(*event_id, line, now_ms),
                            // A warehouse from before batches carried the line: gathered
                            // joins vouch for no view here.
                            None => state.joins.entry(*event_id).or_default().lineless = true,
                        }
                        (Outcome::Success, Ok(reply.places))
                    }
                    // A reply that does not answer every join counts as none.
                    other => {
                        let (outcome, refusal) = failure(&forward.call, other.err().flatten());
                        (outcome, Err(refusal))
                    }
                };
                Self::batch_answered(state, *event_id, users, places, now_ms);
                return self.settle(state, outcome, now_ms, Completion::Check);
            }
            Call::GetQueue { event_id } => match parse!(QueueSnapshot) {
                Ok(snapshot) => {
                    state.learn_queue(*event_id, &snapshot, now_ms);
                    return self.settle(state, Outcome::Success, now_ms, Completion::Retry);
                }
                // The line's refresh stands in for the sale's (`Gate::sale`): it learns the
                // sale gone as `GetEvent` would.
                Err(Some(status)) if status.code == Code::NotFound => {
                    state.learn_sale(*event_id, None, now_ms);
                    state.queues.remove(event_id);
                    Err(Some(status))
                }
                // Refused otherwise (a room turned off answers `FAILED_PRECONDITION`) or not
                // answered: the view is read on its own again until a line carries it.
                Err(e) => {
                    if let Some(line) = state.queues.get_mut(event_id) {
                        line.carries_sale = false;
                    }
                    Err(e)
                }
            },
            Call::ClaimAdmission(seat) => {
                parse!(QueuePlace).map(|place| self.claimed(state, seat, &place, now_ms))
            }
        };
        let (outcome, response) = match result {
            Ok(response) => (Outcome::Success, response),
            Err(status) => {
                let (outcome, refusal) = failure(&forward.call, status);
                (outcome, refusal.into())
            }
        };
        self.settle(state, outcome, now_ms, Completion::Respond(response))
    }

    fn settle(
        &self,
        state: &mut GateState,
        outcome: Outcome,
        now: i64,
        done: Completion,
    ) -> Completion {
        state.breaker = state.breaker.record(outcome, now, &self.config.breaker);
        done
    }
}

/// What a buy's reply says about the sale: units left, and whether it is sold out.
pub(super) fn observe_buy(state: &mut GateState, event_id: i64, reply: &BuyReply) {
    if let Some(SaleEntry {
        sale: Some(sale), ..
    }) = state.sales.get_mut(&event_id)
    {
        sale.remaining = reply.remaining.max(0) as u32;
        let outcome = BuyOutcome::try_from(reply.outcome).unwrap_or(BuyOutcome::Unspecified);
        if outcome == BuyOutcome::SoldOut || (outcome == BuyOutcome::Queued && reply.remaining <= 0)
        {
            sale.sold_out = true;
        }
    }
}

/// What a call without a usable answer tells the breaker and the client: its status's refusal,
/// or, with no reply or none that could be read, a retry after a second.
fn failure(call: &Call, status: Option<grpc_web::Status>) -> (Outcome, Refusal) {
    match status {
        Some(status) => status_refusal(call, status.code),
        None => (Outcome::Failure, Refusal::after(Reason::Unavailable, 1_000)),
    }
}

/// A non-OK gRPC status to `call` as the client's refusal, and whether it counts against the
/// breaker (a business answer does not; an overloaded or failing origin does).
pub(super) fn status_refusal(call: &Call, code: Code) -> (Outcome, Refusal) {
    use Code::*;
    let business = |reason| (Outcome::Success, Refusal::new(reason));
    match code {
        // A buy's request id (its link's nonce, one per solved challenge) already bought an
        // order of another quantity: that order stands, and this is not a second purchase.
        AlreadyExists if matches!(call, Call::Buy { .. } | Call::BuyMany { .. }) => {
            business(Reason::LinkUsed)
        }
        NotFound | PermissionDenied => business(Reason::UnknownResource),
        FailedPrecondition | AlreadyExists | Aborted => business(Reason::Conflict),
        InvalidArgument | OutOfRange => business(Reason::BadRequest),
        ResourceExhausted => (Outcome::Failure, Refusal::after(Reason::RateLimited, 1_000)),
        _ => (Outcome::Failure, Refusal::after(Reason::Unavailable, 1_000)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_urls_are_validated_once_and_joined_with_call_paths() {
        let plain = OriginUrl::parse(" http://127.0.0.1:50051/ ").unwrap();
        assert!(!plain.is_https());
        assert_eq!(plain.authority(), "127.0.0.1:50051");
        assert_eq!(
            plain.path_for("/flashsale.Seckill/Buy"),
            "/flashsale.Seckill/Buy"
        );
        assert_eq!(
            plain.url("/flashsale.Seckill/Buy"),
            "http://127.0.0.1:50051/flashsale.Seckill/Buy"
        );
        let prefixed = OriginUrl::parse("https://origin.example.com/grpc/").unwrap();
        assert!(prefixed.is_https());
        assert_eq!(prefixed.path_for("/a/B"), "/grpc/a/B");
        assert_eq!(prefixed.url("/a/B"), "https://origin.example.com/grpc/a/B");
        assert_eq!(OriginUrl::parse("origin:50051"), Err(BadOriginUrl::Scheme));
        assert_eq!(OriginUrl::parse("ftp://origin"), Err(BadOriginUrl::Scheme));
        assert_eq!(OriginUrl::parse("https:///x"), Err(BadOriginUrl::NoHost));
        assert_eq!(OriginUrl::parse("http://"), Err(BadOriginUrl::NoHost));
    }

    fn seat() -> Seat {
        Seat {
            sale: SaleView {
                id: 1,
                sku_id: 2,
                pool: 3,
                remaining: 3,
                sold_out: false,
                start_ms: 0,
                end_ms: 1,
                per_user_limit: 1,
                price: 0,
                currency: None,
                waiting_room: true,
                prequeue_ms: 0,
                admit_factor: 2,
                admission_ttl_ms: 30_000,
            },
            user_id: "u".into(),
            link_nonce: [0; 16],
        }
    }

    #[test]
    fn every_call_is_one_of_the_edge_methods() {
        let calls = [
            Call::GetEvent {
                event_id: 1,
                answer: true,
            },
            Call::ListEvents,
            Call::Buy { event_id: 1 },
            Call::BuyMany {
                event_id: 1,
                keys: vec!["ann".into()],
            },
            Call::GetOrder,
            Call::CancelOrder,
            Call::DemoPayOrder,
            Call::JoinQueue(Box::new(seat())),
            Call::JoinQueueMany {
                event_id: 1,
                users: vec!["ann".into()],
            },
            Call::GetQueue { event_id: 1 },
            Call::ClaimAdmission(Box::new(seat())),
        ];
        for call in &calls {
            assert!(Rpc::ALL.contains(&call.rpc()), "{call:?}");
        }
        let mut paths: Vec<_> = Rpc::ALL.iter().map(|rpc| rpc.path()).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), Rpc::ALL.len(), "one path per method");
        // Paying is the payment side's, never the edge's.
        assert!(!paths.contains(&"/flashsale.Seckill/PayOrder"));
    }

    #[test]
    fn a_plain_http_origin_is_refused_unless_loopback() {
        for local in [
            "http://127.0.0.1:50051",
            "http://127.8.9.10",
            "http://localhost:50051/grpc",
            "http://LOCALHOST",
            "http://[::1]:50051",
            "http://[::1]",
        ] {
            assert!(OriginUrl::parse(local).is_ok(), "{local}");
        }
        for remote in [
            "http://origin.example.com",
            "http://10.0.0.5:50051",
            "http://0.0.0.0:50051",
            "http://[2001:db8::1]:50051",
            "http://127.0.0.1.example.com",
            "http://localhost.example.com:50051",
            "http://[::ffff:127.0.0.1]",
        ] {
            assert!(
                matches!(OriginUrl::parse(remote), Err(BadOriginUrl::PlainHttp(_))),
                "{remote}"
            );
        }
        assert!(OriginUrl::parse("https://10.0.0.5:50051").is_ok());
    }

    #[test]
    fn an_origin_response_reads_the_status_headers_by_name() {
        let mut response = OriginResponse::head(200, |name| match name {
            "grpc-status" => Some("5".into()),
            "grpc-message" => Some("no%20such".into()),
            _ => None,
        });
        response.body = b"abc".to_vec();
        assert_eq!(
            OriginResponse::reply(Some(&response)),
            OriginReply::Http {
                status: 200,
                grpc: StatusHeaders {
                    grpc_status: Some("5"),
                    grpc_message: Some("no%20such"),
                },
                body: b"abc",
            }
        );
        assert_eq!(OriginResponse::reply(None), OriginReply::Failed);
    }
}
