//! One request as the gate sees it: the [`Request`] an adapter builds from its platform's
//! request, the [`Headers`] that matter (read by name through the platform's own lookup), the
//! [`BoundedBody`] rule for how much of the body to read, and the typed [`Route`].
//!
//! The adapters differ only in how they ask their platform for a header or a body chunk; which
//! headers, how much body and how a path parses are decided here, once.
//!
//! What it deliberately does not do: read the client's address (each platform reports it in its
//! own header) or any I/O; an adapter feeds it what it read.

use crate::link;
use crate::refusal::Reason;
use std::net::IpAddr;

/// The request headers the gate reads (`None` when absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Headers<'a> {
    /// `Authorization` (a `Bearer` user token).
    pub authorization: Option<&'a str>,
    /// `User-Agent`.
    pub user_agent: Option<&'a str>,
    /// `Accept-Language`.
    pub accept_language: Option<&'a str>,
    /// `Sec-Fetch-Site`.
    pub sec_fetch_site: Option<&'a str>,
    /// `Sec-Fetch-Mode`.
    pub sec_fetch_mode: Option<&'a str>,
    /// [`PLACE_HEADER`]: a place token, on a waiting-room poll.
    pub place: Option<&'a str>,
    /// [`WAIT_HEADER`]: how long a waiting-room poll may be held, ms.
    pub wait: Option<&'a str>,
}

/// The header a waiting-room poll carries its place token in.
pub const PLACE_HEADER: &str = "x-flashgate-place";

/// The header a waiting-room poll asks to be held with: at most this many ms, until its news
/// changes (see [`Hold`](super::Hold)).
pub const WAIT_HEADER: &str = "x-flashgate-wait-ms";

impl<'a> Headers<'a> {
    /// The names of the headers the gate reads, lower case, in field order.
    pub const NAMES: [&'static str; 7] = [
        "authorization",
        "user-agent",
        "accept-language",
        "sec-fetch-site",
        "sec-fetch-mode",
        PLACE_HEADER,
        WAIT_HEADER,
    ];

    /// The headers, each looked up by its lower-case name with `get`.
    pub fn from_lookup(get: impl Fn(&'static str) -> Option<&'a str>) -> Self {
        let [authorization, user_agent, accept_language, sec_fetch_site, sec_fetch_mode, place, wait] =
            Self::NAMES.map(get);
        Headers {
            authorization,
            user_agent,
            accept_language,
            sec_fetch_site,
            sec_fetch_mode,
            place,
            wait,
        }
    }
}

/// The values of [`Headers::NAMES`], copied out of a platform whose header lookup returns owned
/// strings (workerd's `Headers.get`), so that a borrowed [`Headers`] can be made from them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderValues([Option<String>; 7]);

impl HeaderValues {
    /// Reads each header the gate needs with `get`.
    pub fn read(get: impl Fn(&'static str) -> Option<String>) -> Self {
        HeaderValues(Headers::NAMES.map(get))
    }

    /// The headers, borrowed from the copies.
    pub fn headers(&self) -> Headers<'_> {
        Headers::from_lookup(|name| {
            let i = Headers::NAMES.iter().position(|n| *n == name)?;
            self.0[i].as_deref()
        })
    }
}

/// How much of a request body an adapter reads: nothing for `GET`/`HEAD`, otherwise up to one
/// byte past the largest accepted body, enough for the gate to refuse it as too large without
/// buffering whatever a client cares to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundedBody {
    limit: usize,
    bytes: Vec<u8>,
}

impl BoundedBody {
    /// An empty body for a request with `method`, accepting up to `max_body` bytes.
    pub fn new(method: &str, max_body: usize) -> Self {
        let skip = matches!(method, "GET" | "HEAD");
        BoundedBody {
            limit: if skip { 0 } else { max_body.saturating_add(1) },
            bytes: Vec::new(),
        }
    }

    /// Whether another chunk should be read.
    pub fn wants_more(&self) -> bool {
        self.bytes.len() < self.limit
    }

    /// Appends `chunk`, keeping at most the limit.
    pub fn push(&mut self, chunk: &[u8]) {
        let room = self.limit - self.bytes.len().min(self.limit);
        self.bytes
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    /// What was read.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Who limits requests per client network.
///
/// A platform with a limiter of its own that every instance of a location shares (the Workers
/// rate-limit binding) asks it under the key [`Gate::network_key`](super::Gate::network_key)
/// gives, before deciding, and says what it answered; elsewhere the gate keeps a GCRA bucket per
/// network in its state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NetworkLimit {
    /// No platform limiter: the gate limits networks itself
    /// ([`Limits::ip`](super::Limits::ip)).
    #[default]
    Local,
    /// The platform's limiter let the request through.
    Allowed,
    /// The platform's limiter refused it: answered with a Retry-After of its window
    /// ([`GateConfig::platform_limit_window_ms`](super::GateConfig::platform_limit_window_ms)).
    Exceeded,
}

/// One request, as the adapter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path, without the query string.
    pub path: &'a str,
    /// The headers that matter.
    pub headers: Headers<'a>,
    /// The client's address, as the platform reports it.
    pub client_ip: Option<IpAddr>,
    /// The platform's bot score (1 automated … 99 human), if it gives one.
    pub platform_bot_score: Option<u8>,
    /// What the platform's per-network limiter said, if it has one.
    pub network_limit: NetworkLimit,
    /// The body (read as [`BoundedBody`] says; the gate refuses longer ones).
    pub body: &'a [u8],
    /// Unix ms, read once by the adapter.
    pub now_ms: i64,
    /// Fresh randomness for nonces, seeds and guest ids.
    pub entropy: [u8; 32],
}

/// An `/api` route, typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `GET /api/events/{id}`: the sale's public state.
    Event(i64),
    /// `POST /api/events/{id}/challenge`: a proof-of-work challenge.
    Challenge(i64),
    /// `POST /api/events/{id}/link`: a PoW answer for a purchase link.
    Link(i64),
    /// `POST /api/events/{id}/queue`: a PoW answer for a place in the sale's waiting room.
    Join(i64),
    /// `GET /api/events/{id}/queue`: where the caller's place stands (its token in
    /// [`PLACE_HEADER`]).
    Queue(i64),
    /// `POST /api/buy/{token}`: buy through a purchase link.
    Buy(&'a str),
    /// `GET /api/orders/{no}`.
    Order(&'a str),
    /// `POST /api/orders/{no}/cancel`.
    Cancel(&'a str),
    /// `POST /api/demo/orders/{no}/pay` (demo mode only): the demo's stand-in for a payment.
    /// There is no route that pays outside demo mode: payment is the payment side's word.
    DemoPay(&'a str),
    /// `POST /api/session/guest` (demo mode only).
    Guest,
}

/// Where the demo's routes live: outside demo mode every path under it is `404 not_found`,
/// whatever its method or shape, like any path that is no route.
pub const DEMO_PREFIX: &str = "/api/demo/";

fn order_no(text: &str) -> Option<&str> {
    let ok = (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(text)
}

fn event_id(text: &str) -> Option<i64> {
    (text.len() <= 19 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
        .filter(|id| *id > 0)
}

/// Parses a method and path into a route, or the refusal for it.
pub fn route<'a>(method: &str, path: &'a str) -> Result<Route<'a>, Reason> {
    let path = path.split('?').next().unwrap_or_default();
    let rest = path.strip_prefix("/api/").ok_or(Reason::NotFound)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let (route, allowed) = match parts.as_slice() {
        ["events", id] => (event_id(id).map(Route::Event), "GET"),
        ["events", id, "challenge"] => (event_id(id).map(Route::Challenge), "POST"),
        ["events", id, "link"] => (event_id(id).map(Route::Link), "POST"),
        ["events", id, "queue"] if method.eq_ignore_ascii_case("GET") => {
            (event_id(id).map(Route::Queue), "GET")
        }
        ["events", id, "queue"] => (event_id(id).map(Route::Join), "POST"),
        ["buy", token] => {
            let ok = !token.is_empty() && token.len() <= link::MAX_TOKEN_LEN;
            (ok.then_some(Route::Buy(token)), "POST")
        }
        ["orders", no] => (order_no(no).map(Route::Order), "GET"),
        ["orders", no, "cancel"] => (order_no(no).map(Route::Cancel), "POST"),
        ["demo", "orders", no, "pay"] => (order_no(no).map(Route::DemoPay), "POST"),
        ["session", "guest"] => (Some(Route::Guest), "POST"),
        _ => return Err(Reason::NotFound),
    };
    if !method.eq_ignore_ascii_case(allowed) {
        return Err(Reason::MethodNotAllowed);
    }
    route.ok_or(Reason::BadRequest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_into_typed_values() {
        assert_eq!(route("GET", "/api/events/7"), Ok(Route::Event(7)));
        assert_eq!(
            route("POST", "/api/events/7/challenge"),
            Ok(Route::Challenge(7))
        );
        assert_eq!(route("post", "/api/events/7/link?x=1"), Ok(Route::Link(7)));
        assert_eq!(route("POST", "/api/events/7/queue"), Ok(Route::Join(7)));
        assert_eq!(route("GET", "/api/events/7/queue"), Ok(Route::Queue(7)));
        assert_eq!(
            route("PUT", "/api/events/7/queue"),
            Err(Reason::MethodNotAllowed)
        );
        assert_eq!(route("POST", "/api/buy/abc"), Ok(Route::Buy("abc")));
        assert_eq!(route("GET", "/api/orders/O-1"), Ok(Route::Order("O-1")));
        assert_eq!(route("POST", "/api/orders/O-1/pay"), Err(Reason::NotFound));
        assert_eq!(
            route("POST", "/api/demo/orders/O-1/pay"),
            Ok(Route::DemoPay("O-1"))
        );
        assert_eq!(
            route("POST", "/api/orders/O-1/cancel"),
            Ok(Route::Cancel("O-1"))
        );
        assert_eq!(route("POST", "/api/session/guest"), Ok(Route::Guest));
        assert_eq!(
            route("POST", "/api/events/7"),
            Err(Reason::MethodNotAllowed)
        );
        assert_eq!(route("GET", "/api/events/x"), Err(Reason::BadRequest));
        assert_eq!(route("GET", "/api/events/0"), Err(Reason::BadRequest));
        assert_eq!(
            route("GET", "/api/events/99999999999999999999"),
            Err(Reason::BadRequest)
        );
        assert_eq!(route("GET", "/api/orders/a b"), Err(Reason::BadRequest));
        assert_eq!(route("GET", "/index.html"), Err(Reason::NotFound));
        assert_eq!(
            route("GET", "/api/events/7/extra/parts"),
            Err(Reason::NotFound)
        );
    }

    #[test]
    fn headers_are_read_by_name_through_the_platforms_lookup() {
        let platform = |name: &str| match name {
            "authorization" => Some("Bearer t"),
            "user-agent" => Some("UA"),
            "sec-fetch-mode" => Some("cors"),
            _ => None,
        };
        let expected = Headers {
            authorization: Some("Bearer t"),
            user_agent: Some("UA"),
            accept_language: None,
            sec_fetch_site: None,
            sec_fetch_mode: Some("cors"),
            place: None,
            wait: None,
        };
        assert_eq!(Headers::from_lookup(platform), expected);
        let copies = HeaderValues::read(|name| platform(name).map(str::to_owned));
        assert_eq!(copies.headers(), expected);
    }

    #[test]
    fn a_body_is_read_to_one_byte_past_the_limit_and_not_at_all_for_get() {
        let mut body = BoundedBody::new("POST", 4);
        for chunk in [&b"ab"[..], b"cd", b"efgh"] {
            assert!(body.wants_more());
            body.push(chunk);
        }
        assert!(!body.wants_more());
        assert_eq!(body.into_bytes(), b"abcde");
        let mut exact = BoundedBody::new("post", 4);
        exact.push(b"abcd");
        assert!(
            exact.wants_more(),
            "a body at the limit may still grow past it"
        );
        for method in ["GET", "HEAD"] {
            let body = BoundedBody::new(method, 4);
            assert!(!body.wants_more(), "{method}");
            assert!(body.into_bytes().is_empty());
        }
    }
}
