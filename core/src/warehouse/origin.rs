//! The edge listener's gate (`--edge-listen`): the only way into the warehouse from the internet.
//!
//! A tower layer placed outside tonic-web, in front of every service the edge listener routes
//! to. It lets through exactly one kind of call: gRPC-Web (content type
//! `application/grpc-web…`) carrying a valid [`crate::origin_auth`] signature over its method,
//! path, timestamp and body, for one of the edge's methods ([`EDGE_METHODS`]). Native gRPC, and
//! anything else that is not gRPC-Web, is `UNAUTHENTICATED` (the shop's back office uses the
//! internal listener, see [`super::internal`]); a missing, malformed, stale or wrong signature is
//! `UNAUTHENTICATED`; a signed call of any other method (administration, the seed contract,
//! health, reflection) is `PERMISSION_DENIED`. Every refusal is answered here, before
//! a service runs, and counted in `flashgate_origin_refusals_total{reason}`. The body is read
//! once, bounded, to digest it.
//!
//! What it does not do: replay protection inside the signature's clock-skew window (the services'
//! idempotency keys cover a replayed buy), or TLS (terminate it in front of this listener).

use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::{BodyExt, Full, Limited};
use tonic::body::Body;
use tonic::Status;
use tower::{Layer, Service};

use super::metrics::Metrics;
use super::service::now_ms;
use crate::gate::Rpc;
use crate::origin_auth::{self, OriginAuthError};

/// Largest gRPC-Web request body accepted (the edge sends one small message).
pub const MAX_GRPC_WEB_BODY: usize = 64 * 1024;

/// The only methods the edge may call: the gate's [`Rpc::ALL`], so what the edge sends and what
/// this layer lets through are one list. Even with a valid signature, gRPC-Web cannot reach the
/// seed contract or sale administration: a leaked edge key cannot put stock or define sales.
pub const EDGE_METHODS: [&str; Rpc::ALL.len()] = {
    let mut paths = [""; Rpc::ALL.len()];
    let mut i = 0;
    while i < paths.len() {
        paths[i] = Rpc::ALL[i].path();
        i += 1;
    }
    paths
};

/// Adds the edge listener's check to a service stack.
#[derive(Clone)]
pub struct OriginAuthLayer {
    key: Arc<[u8]>,
    max_skew_ms: i64,
    metrics: Metrics,
}

impl OriginAuthLayer {
    /// Checks calls against `key`, tolerating `max_skew_ms` of clock difference. An empty key
    /// refuses every call (no signature verifies against it).
    pub fn new(key: &[u8], max_skew_ms: i64, metrics: Metrics) -> Self {
        Self {
            key: key.into(),
            max_skew_ms,
            metrics,
        }
    }
}

impl<S> Layer<S> for OriginAuthLayer {
    type Service = OriginAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OriginAuth {
            inner,
            config: self.clone(),
        }
    }
}

/// The service [`OriginAuthLayer`] makes.
#[derive(Clone)]
pub struct OriginAuth<S> {
    inner: S,
    config: OriginAuthLayer,
}

/// Whether a request is gRPC-Web (the content type the edge sends).
pub(super) fn is_grpc_web(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc-web"))
}

/// Counts a refusal under `reason` and answers `status` in gRPC-Web form.
fn refuse<B: Default>(
    metrics: &Metrics,
    reason: &'static str,
    status: Status,
) -> http::Response<B> {
    metrics.origin_refusals.with_label_values(&[reason]).inc();
    grpc_web_status(status)
}

/// A trailers-only gRPC-Web answer carrying `status`.
pub(super) fn grpc_web_status<B: Default>(status: Status) -> http::Response<B> {
    let mut response = status.into_http::<B>();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc-web+proto"),
    );
    response
}

impl<S, ResBody> Service<http::Request<Body>> for OriginAuth<S>
where
    S: Service<http::Request<Body>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if !is_grpc_web(request.headers()) {
            // A native gRPC client reads a native answer: trailers-only, `application/grpc`.
            self.config
                .metrics
                .origin_refusals
                .with_label_values(&["not_grpc_web"])
                .inc();
            let status = Status::unauthenticated(
                "this is the edge listener: only origin-signed gRPC-Web is served here",
            );
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        // The ready service must be the one called; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = match Limited::new(body, MAX_GRPC_WEB_BODY).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    let status = Status::unauthenticated("request body unreadable or too large");
                    return Ok(refuse(&config.metrics, "body", status));
                }
            };
            let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
            let verdict = origin_auth::verify(
                &config.key,
                parts.method.as_str(),
                parts.uri.path(),
                header(origin_auth::TIMESTAMP_HEADER),
                header(origin_auth::SIGNATURE_HEADER),
                &bytes,
                now_ms(),
                config.max_skew_ms,
            );
            if let Err(e) = verdict {
                let reason = match e {
                    OriginAuthError::Missing => "missing",
                    OriginAuthError::Malformed => "malformed",
                    OriginAuthError::Stale { .. } => "stale",
                    OriginAuthError::BadSignature => "bad_signature",
                };
                let status = Status::unauthenticated(format!("gRPC-Web call refused: {e}"));
                return Ok(refuse(&config.metrics, reason, status));
            }
            let path = parts.uri.path();
            if !EDGE_METHODS.contains(&path) {
                let status = Status::permission_denied(format!(
                    "{path} is not callable on the edge listener"
                ));
                return Ok(refuse(&config.metrics, "method", status));
            }
            let request = http::Request::from_parts(parts, Body::new(Full::new(bytes)));
            inner.call(request).await
        })
    }
}
