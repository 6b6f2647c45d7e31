//! The internal listener's gate (`--listen`): native gRPC for the shop's own back office.
//!
//! Everything the warehouse serves is on this listener — the seed contract, sale administration,
//! the order side (`PayOrder` from the payment service), health and reflection — so it must
//! never face the internet; the edge has a listener of its own ([`super::origin`]). This tower
//! layer, in front of every service, refuses two things before a service runs, counting each in
//! `flashgate_internal_refusals_total{reason}`:
//!
//! - gRPC-Web, signed or not (`PERMISSION_DENIED`): the edge calls the edge listener, and a
//!   misconfigured edge is told so instead of reaching the back office;
//! - with a token configured (`--internal-token`), a call without `authorization: Bearer
//!   <token>` or with another token (`UNAUTHENTICATED`). Health (`grpc.health.v1.Health/*`)
//!   stays open so probes need no secret. The token is compared in constant time.
//!
//! What it does not do: tell one back-office caller from another (every holder of the token may
//! call everything), or encrypt (bind the listener to a private interface; put TLS in front of it
//! when that network is shared).

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{self, Either, Ready};
use subtle::ConstantTimeEq;
use tonic::Status;
use tower::{Layer, Service};

use super::metrics::Metrics;
use super::origin::{grpc_web_status, is_grpc_web};

/// Shortest accepted `--internal-token`, in bytes.
pub const MIN_TOKEN_LEN: usize = 32;

/// The path prefix of the health service, open without a token.
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

/// Why a call was refused on the internal listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// It is gRPC-Web.
    GrpcWeb,
    /// A token is required and none was sent (or not as `Bearer`).
    MissingToken,
    /// A token was sent and it is not the one.
    BadToken,
}

impl Refusal {
    /// The metric label.
    fn reason(self) -> &'static str {
        match self {
            Refusal::GrpcWeb => "grpc_web",
            Refusal::MissingToken => "missing_token",
            Refusal::BadToken => "bad_token",
        }
    }
}

/// The token in an `authorization` header value: `Bearer <token>`, the scheme in any case.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    let scheme = value.get(..SCHEME.len())?;
    scheme
        .eq_ignore_ascii_case(SCHEME)
        .then(|| value[SCHEME.len()..].trim_ascii())
}

/// What the internal listener decides about a request's headers and path.
fn check(token: Option<&[u8]>, headers: &http::HeaderMap, path: &str) -> Result<(), Refusal> {
    if is_grpc_web(headers) {
        return Err(Refusal::GrpcWeb);
    }
    let Some(token) = token else { return Ok(()) };
    if path.starts_with(HEALTH_PREFIX) {
        return Ok(());
    }
    let sent = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| bearer(v.as_bytes()))
        .ok_or(Refusal::MissingToken)?;
    // `ct_eq` on slices of different lengths is false at once: the length is no secret (every
    // token is at least MIN_TOKEN_LEN), the bytes are.
    if bool::from(sent.ct_eq(token)) {
        Ok(())
    } else {
        Err(Refusal::BadToken)
    }
}

/// Adds the internal listener's check to a service stack.
#[derive(Clone)]
pub struct InternalAuthLayer {
    token: Option<Arc<[u8]>>,
    metrics: Metrics,
}

impl InternalAuthLayer {
    /// Refuses gRPC-Web and, when `token` is set, every call but health without it as a bearer
    /// token. The caller has checked the token's length ([`MIN_TOKEN_LEN`]).
    pub fn new(token: Option<&[u8]>, metrics: Metrics) -> Self {
        Self {
            token: token.map(Arc::from),
            metrics,
        }
    }
}

impl<S> Layer<S> for InternalAuthLayer {
    type Service = InternalAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InternalAuth {
            inner,
            config: self.clone(),
        }
    }
}

/// The service [`InternalAuthLayer`] makes.
#[derive(Clone)]
pub struct InternalAuth<S> {
    inner: S,
    config: InternalAuthLayer,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for InternalAuth<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Self::Response, Self::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let token = self.config.token.as_deref();
        let refusal = match check(token, request.headers(), request.uri().path()) {
            Ok(()) => return Either::Right(self.inner.call(request)),
            Err(refusal) => refusal,
        };
        self.config
            .metrics
            .internal_refusals
            .with_label_values(&[refusal.reason()])
            .inc();
        let response = match refusal {
            // Answered in gRPC-Web form, so the edge that called here by mistake can read it.
            Refusal::GrpcWeb => grpc_web_status(Status::permission_denied(
                "this is the internal listener: gRPC-Web is not served here; the edge calls the \
                 edge listener (--edge-listen)",
            )),
            Refusal::MissingToken => Status::unauthenticated(
                "the internal listener requires `authorization: Bearer <token>` (--internal-token)",
            )
            .into_http(),
            Refusal::BadToken => Status::unauthenticated("bearer token refused").into_http(),
        };
        Either::Left(future::ready(Ok(response)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    http::HeaderName::from_static(n),
                    http::HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    const GRPC: (&str, &str) = ("content-type", "application/grpc");
    const BUY: &str = "/flashsale.Seckill/Buy";

    #[test]
    fn without_a_token_native_grpc_passes_and_grpc_web_never_does() {
        assert_eq!(check(None, &headers(&[GRPC]), BUY), Ok(()));
        let web = headers(&[("content-type", "application/grpc-web+proto")]);
        assert_eq!(check(None, &web, BUY), Err(Refusal::GrpcWeb));
        assert_eq!(check(Some(TOKEN), &web, BUY), Err(Refusal::GrpcWeb));
    }

    #[test]
    fn with_a_token_only_the_bearer_of_it_passes() {
        let right = format!("Bearer {}", std::str::from_utf8(TOKEN).unwrap());
        let lower = format!("bearer {}", std::str::from_utf8(TOKEN).unwrap());
        let wrong = "Bearer 0123456789abcdef0123456789abcdeX";
        let short = "Bearer 0123456789abcdef0123456789abcde";
        let long = format!("{right}f");
        let basic = format!("Basic {}", std::str::from_utf8(TOKEN).unwrap());
        for (value, expected) in [
            (right.as_str(), Ok(())),
            (lower.as_str(), Ok(())),
            (wrong, Err(Refusal::BadToken)),
            (short, Err(Refusal::BadToken)),
            (long.as_str(), Err(Refusal::BadToken)),
            ("Bearer ", Err(Refusal::BadToken)),
            (basic.as_str(), Err(Refusal::MissingToken)),
            ("Bearer", Err(Refusal::MissingToken)),
        ] {
            let h = headers(&[GRPC, ("authorization", value)]);
            assert_eq!(check(Some(TOKEN), &h, BUY), expected, "{value:?}");
        }
        assert_eq!(
            check(Some(TOKEN), &headers(&[GRPC]), BUY),
            Err(Refusal::MissingToken)
        );
    }

    #[test]
    fn health_needs_no_token_and_reflection_does() {
        let none = headers(&[GRPC]);
        assert_eq!(
            check(Some(TOKEN), &none, "/grpc.health.v1.Health/Check"),
            Ok(())
        );
        assert_eq!(
            check(
                Some(TOKEN),
                &none,
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
            ),
            Err(Refusal::MissingToken)
        );
        // A look-alike path is not health.
        assert_eq!(
            check(Some(TOKEN), &none, "/grpc.health.v1.HealthX/Check"),
            Err(Refusal::MissingToken)
        );
    }
}
