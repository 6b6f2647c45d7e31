//! The edge's side of the warehouse's edge listener, for tests: a unary gRPC-Web call over
//! HTTP/1.1 as the edges send it (the core's framing, [`flashgate_core::origin_auth`] signed
//! with [`TEST_ORIGIN_KEY`] or not at all), and its answer read with the core's parser, so a test
//! sees what an edge would see.

use std::net::SocketAddr;

use flashgate_core::grpc_web::{self, Code, Reply, StatusHeaders};
use flashgate_core::origin_auth::{self, OriginSignature, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use prost::Message;

use crate::{http1_request, HttpResponse, TEST_ORIGIN_KEY};

/// The largest reply message the tests read.
const MAX_REPLY: usize = 1 << 20;

/// The origin signature of a POST of `body` to `path` at `at_ms`, with [`TEST_ORIGIN_KEY`].
pub fn sign(path: &str, body: &[u8], at_ms: i64) -> OriginSignature {
    origin_auth::sign(TEST_ORIGIN_KEY, "POST", path, at_ms, body)
}

/// POSTs `body` (an already framed gRPC-Web request) to `path` on `addr`, with `signature`'s two
/// headers when given.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    body: &[u8],
    signature: Option<&OriginSignature>,
) -> HttpResponse {
    let mut headers = vec![
        ("content-type", "application/grpc-web+proto"),
        ("x-grpc-web", "1"),
    ];
    if let Some(s) = signature {
        headers.push((TIMESTAMP_HEADER, &s.timestamp));
        headers.push((SIGNATURE_HEADER, &s.signature));
    }
    http1_request(addr, "POST", path, &headers, body).await
}

/// The reply a gRPC-Web `response` carries (panics if it is not valid gRPC-Web).
pub fn reply<M: Message + Default>(response: &HttpResponse) -> Reply<M> {
    let headers = StatusHeaders {
        grpc_status: response.header("grpc-status"),
        grpc_message: response.header("grpc-message"),
    };
    grpc_web::parse_response(response.status, headers, &response.body, MAX_REPLY)
        .unwrap_or_else(|e| panic!("not a gRPC-Web answer ({e}): {response:?}"))
}

/// Calls `path` on `addr` with `request`, signed at `signed_at` (unix ms) or unsigned.
pub async fn call<Req: Message, Res: Message + Default>(
    addr: SocketAddr,
    path: &str,
    request: &Req,
    signed_at: Option<i64>,
) -> Reply<Res> {
    let body = grpc_web::encode_request(request);
    let signature = signed_at.map(|at| sign(path, &body, at));
    reply(&post(addr, path, &body, signature.as_ref()).await)
}

/// The code of a reply (`Ok` for a message).
pub fn code<M>(reply: &Reply<M>) -> Code {
    match reply {
        Reply::Message(_) => Code::Ok,
        Reply::Status(status) => status.code,
    }
}
