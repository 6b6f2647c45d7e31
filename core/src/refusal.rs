//! The refusal catalogue: every way the edge says "no", as a value both edges serialise the same.
//!
//! Each [`Reason`] has a stable machine code (`"sold_out"`, `"rate_limited"`, …) that clients may
//! switch on, the HTTP status it is answered with, and a short human message. A [`Refusal`] is a
//! reason plus, where waiting helps, how long to wait; [`Refusal::to_json`] renders the body and
//! [`Refusal::retry_after_secs`] the `Retry-After` header, so the Cloudflare Worker and the Spin
//! component answer byte for byte alike.
//!
//! Body form: `{"code":"rate_limited","message":"Too many requests; slow down.","retry_after":2}`
//! (`retry_after`, whole seconds rounded up, only when waiting helps).
//!
//! What it deliberately does not do: carry internal detail (key ids, origin errors, stack
//! traces) to the client, or decide anything; the policy modules decide and map to a reason here.

use serde::Serialize;

/// Why a request was refused. The code, status and message of each variant are stable API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The request is not of the shape the route expects (bad JSON, bad id, bad header).
    BadRequest,
    /// No such route under `/api`.
    NotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The body, path or a header is larger than the edge accepts.
    TooLarge,
    /// No user token, or one that does not verify.
    Unauthenticated,
    /// The user token has expired: sign in again.
    TokenExpired,
    /// The request looks automated, or comes from a denied network.
    Blocked,
    /// A proof-of-work answer is required or the one given is not good enough.
    ChallengeRequired,
    /// The proof-of-work challenge has expired: ask for a new one.
    ChallengeExpired,
    /// The purchase link is malformed, forged, or was minted for someone or something else.
    BadLink,
    /// The purchase link has expired.
    LinkExpired,
    /// More units asked for than the link or the sale allows.
    QtyTooLarge,
    /// The sale has not started yet.
    TooEarly,
    /// The sale is over.
    SaleEnded,
    /// Nothing left to sell.
    SoldOut,
    /// The user already won (or, where the sale counts units held, holds) as many units as the
    /// sale allows.
    LimitReached,
    /// The purchase this link makes was already made with another quantity: every link minted
    /// from one solved challenge is one purchase, whatever quantity it asks for later.
    LinkUsed,
    /// The order cannot change that way (already paid, cancelled or expired).
    Conflict,
    /// No such sale or order (for this user).
    UnknownResource,
    /// Too many requests from this user, network, sale, or overall.
    RateLimited,
    /// The origin is failing or overloaded; the edge fails fast instead of queueing.
    Unavailable,
    /// The sale has a waiting room: a purchase link comes with an admitted place, never for a
    /// solved challenge alone; or the warehouse knows no place of this user (join again).
    QueueRequired,
    /// The sale has no waiting room: there is no line to join or poll.
    NoQueue,
    /// The place token is missing, malformed, forged, or another user's or sale's.
    BadPlace,
}

impl Reason {
    /// Every reason, for catalogue tests and documentation.
    pub const ALL: [Reason; 24] = [
        Reason::BadRequest,
        Reason::NotFound,
        Reason::MethodNotAllowed,
        Reason::TooLarge,
        Reason::Unauthenticated,
        Reason::TokenExpired,
        Reason::Blocked,
        Reason::ChallengeRequired,
        Reason::ChallengeExpired,
        Reason::BadLink,
        Reason::LinkExpired,
        Reason::QtyTooLarge,
        Reason::TooEarly,
        Reason::SaleEnded,
        Reason::SoldOut,
        Reason::LimitReached,
        Reason::LinkUsed,
        Reason::Conflict,
        Reason::UnknownResource,
        Reason::RateLimited,
        Reason::Unavailable,
        Reason::QueueRequired,
        Reason::NoQueue,
        Reason::BadPlace,
    ];

    /// The stable machine code.
    pub const fn code(self) -> &'static str {
        match self {
            Reason::BadRequest => "bad_request",
            Reason::NotFound => "not_found",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::TooLarge => "too_large",
            Reason::Unauthenticated => "unauthenticated",
            Reason::TokenExpired => "token_expired",
            Reason::Blocked => "blocked",
            Reason::ChallengeRequired => "challenge_required",
            Reason::ChallengeExpired => "challenge_expired",
            Reason::BadLink => "bad_link",
            Reason::LinkExpired => "link_expired",
            Reason::QtyTooLarge => "qty_too_large",
            Reason::TooEarly => "too_early",
            Reason::SaleEnded => "sale_ended",
            Reason::SoldOut => "sold_out",
            Reason::LimitReached => "limit_reached",
            Reason::LinkUsed => "link_used",
            Reason::Conflict => "conflict",
            Reason::UnknownResource => "unknown",
            Reason::RateLimited => "rate_limited",
            Reason::Unavailable => "unavailable",
            Reason::QueueRequired => "queue_required",
            Reason::NoQueue => "no_queue",
            Reason::BadPlace => "bad_place",
        }
    }

    /// The HTTP status the reason is answered with.
    pub const fn status(self) -> u16 {
        match self {
            Reason::BadRequest | Reason::QtyTooLarge => 400,
            Reason::Unauthenticated | Reason::TokenExpired => 401,
            // An expired link is refused like a forged one: every link that does not verify is
            // 403; its own code tells the client to fetch a new one.
            Reason::Blocked
            | Reason::ChallengeRequired
            | Reason::BadLink
            | Reason::LinkExpired
            | Reason::BadPlace => 403,
            Reason::NotFound | Reason::UnknownResource => 404,
            Reason::MethodNotAllowed => 405,
            Reason::LimitReached
            | Reason::LinkUsed
            | Reason::Conflict
            | Reason::QueueRequired
            | Reason::NoQueue => 409,
            Reason::ChallengeExpired | Reason::SaleEnded | Reason::SoldOut => 410,
            Reason::TooLarge => 413,
            Reason::TooEarly => 425,
            Reason::RateLimited => 429,
            Reason::Unavailable => 503,
        }
    }

    /// A short human message, safe to show to the shopper.
    pub const fn message(self) -> &'static str {
        match self {
            Reason::BadRequest => "The request is malformed.",
            Reason::NotFound => "No such endpoint.",
            Reason::MethodNotAllowed => "Method not allowed on this endpoint.",
            Reason::TooLarge => "The request is too large.",
            Reason::Unauthenticated => "Sign in to take part in the sale.",
            Reason::TokenExpired => "Your session has expired; sign in again.",
            Reason::Blocked => "This request was blocked.",
            Reason::ChallengeRequired => "Solve the challenge to continue.",
            Reason::ChallengeExpired => "The challenge has expired; request a new one.",
            Reason::BadLink => "This purchase link is not valid for you.",
            Reason::LinkExpired => "This purchase link has expired; request a new one.",
            Reason::QtyTooLarge => "That quantity exceeds what this sale allows.",
            Reason::TooEarly => "The sale has not started yet.",
            Reason::SaleEnded => "The sale has ended.",
            Reason::SoldOut => "Sold out.",
            Reason::LimitReached => "You already have the most this sale allows.",
            Reason::LinkUsed => "This purchase was already made with another quantity.",
            Reason::Conflict => "The order cannot change that way.",
            Reason::UnknownResource => "Not found.",
            Reason::RateLimited => "Too many requests; slow down.",
            Reason::Unavailable => "The shop is busy; try again shortly.",
            Reason::QueueRequired => "This sale has a waiting room: join the line first.",
            Reason::NoQueue => "This sale has no waiting room.",
            Reason::BadPlace => "This place in line is not valid for you; join the line.",
        }
    }
}

/// A refusal: the reason and, where waiting helps, how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub reason: Reason,
    /// How long until a retry can succeed, in milliseconds; `None` when waiting does not help.
    pub retry_after_ms: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
}

impl Refusal {
    /// A refusal for which waiting does not help.
    pub const fn new(reason: Reason) -> Self {
        Refusal {
            reason,
            retry_after_ms: None,
        }
    }

    /// A refusal that a retry after `wait_ms` may get past.
    pub const fn after(reason: Reason, wait_ms: u64) -> Self {
        Refusal {
            reason,
            retry_after_ms: Some(wait_ms),
        }
    }

    /// The HTTP status.
    pub const fn status(&self) -> u16 {
        self.reason.status()
    }

    /// The `Retry-After` header value in whole seconds, rounded up and at least 1.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after_ms.map(|ms| ms.div_ceil(1000).max(1))
    }

    /// The JSON body.
    pub fn to_json(&self) -> String {
        let body = Body {
            code: self.reason.code(),
            message: self.reason.message(),
            retry_after: self.retry_after_secs(),
        };
        serde_json::to_string(&body).expect("a struct of strings and integers serialises")
    }
}

impl From<Reason> for Refusal {
    fn from(reason: Reason) -> Self {
        Refusal::new(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case_and_statuses_are_from_the_catalogue() {
        let codes: HashSet<_> = Reason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), Reason::ALL.len());
        for r in Reason::ALL {
            assert!(
                r.code()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{r:?}"
            );
            assert!([400, 401, 403, 404, 405, 409, 410, 413, 425, 429, 503].contains(&r.status()));
            assert!(!r.message().is_empty());
        }
    }

    #[test]
    fn json_carries_retry_after_only_when_waiting_helps() {
        assert_eq!(
            Refusal::new(Reason::SoldOut).to_json(),
            r#"{"code":"sold_out","message":"Sold out."}"#
        );
        let limited = Refusal::after(Reason::RateLimited, 1_001);
        assert_eq!(limited.retry_after_secs(), Some(2));
        assert_eq!(
            limited.to_json(),
            r#"{"code":"rate_limited","message":"Too many requests; slow down.","retry_after":2}"#
        );
        assert_eq!(
            Refusal::after(Reason::Unavailable, 0).retry_after_secs(),
            Some(1)
        );
    }
}
