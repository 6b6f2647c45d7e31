//! gRPC-Web framing: how the edge calls the warehouse over plain HTTP/1.1.
//!
//! Cloudflare Workers cannot read HTTP/2 trailers, so the edge speaks gRPC-Web (binary,
//! `application/grpc-web+proto`): the request body is one frame — a flag byte `0x00`, the
//! message length as 4 bytes big-endian, the protobuf message — and the response body is data
//! frames followed by one trailer frame (flag `0x80`) whose payload is `name: value\r\n` lines
//! carrying `grpc-status` and the percent-encoded `grpc-message`. A "trailers-only" response has
//! no body at all and carries the status in its HTTP headers.
//!
//! [`encode_request`] builds the request body; [`parse_response`] turns the response into the
//! message or the gRPC status. Truncated frames, frames over the size limit, compressed frames,
//! a missing status, or an unexpected number of messages are [`GrpcWebError`]s, never panics.
//!
//! What it deliberately does not do: streaming, compression, the base64 `grpc-web-text`
//! variant, or sending anything (the adapter's fetch does).

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use prost::Message;

/// The request and response content type.
pub const CONTENT_TYPE: &str = "application/grpc-web+proto";
/// Largest response message accepted by default, in bytes.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;

const DATA: u8 = 0x00;
const TRAILER: u8 = 0x80;
const COMPRESSED: u8 = 0x01;
/// What gRPC percent-encodes in `grpc-message`: anything outside printable ASCII, and `%`; and
/// spaces too, since HTTP strips them from the ends of header values.
const GRPC_MESSAGE: &AsciiSet = &CONTROLS.add(b'%').add(b' ');

/// The headers a gRPC-Web request needs besides the origin signature.
pub const REQUEST_HEADERS: [(&str, &str); 3] = [
    ("content-type", CONTENT_TYPE),
    ("x-grpc-web", "1"),
    ("te", "trailers"),
];

/// Frames `message` as a gRPC-Web request body.
pub fn encode_request<M: Message>(message: &M) -> Vec<u8> {
    let len = message.encoded_len();
    let mut body = Vec::with_capacity(5 + len);
    body.push(DATA);
    body.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    message.encode(&mut body).expect("a Vec grows as needed");
    body
}

/// A gRPC status code; each variant's discriminant is its numeric value in the gRPC spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Code {
    /// 0
    Ok = 0,
    /// 1
    Cancelled = 1,
    /// 2
    Unknown = 2,
    /// 3
    InvalidArgument = 3,
    /// 4
    DeadlineExceeded = 4,
    /// 5
    NotFound = 5,
    /// 6
    AlreadyExists = 6,
    /// 7
    PermissionDenied = 7,
    /// 8
    ResourceExhausted = 8,
    /// 9
    FailedPrecondition = 9,
    /// 10
    Aborted = 10,
    /// 11
    OutOfRange = 11,
    /// 12
    Unimplemented = 12,
    /// 13
    Internal = 13,
    /// 14
    Unavailable = 14,
    /// 15
    DataLoss = 15,
    /// 16
    Unauthenticated = 16,
}

impl Code {
    /// Every code, in numeric order.
    pub const ALL: [Code; 17] = {
        use Code::*;
        [
            Ok,
            Cancelled,
            Unknown,
            InvalidArgument,
            DeadlineExceeded,
            NotFound,
            AlreadyExists,
            PermissionDenied,
            ResourceExhausted,
            FailedPrecondition,
            Aborted,
            OutOfRange,
            Unimplemented,
            Internal,
            Unavailable,
            DataLoss,
            Unauthenticated,
        ]
    };

    /// The code for a numeric value; values outside the spec are `Unknown`, as the spec says.
    pub fn from_i32(value: i32) -> Code {
        Code::ALL
            .into_iter()
            .find(|code| *code as i32 == value)
            .unwrap_or(Code::Unknown)
    }
}

/// A non-OK gRPC status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The code.
    pub code: Code,
    /// The message, percent-decoded (lossy UTF-8).
    pub message: String,
}

/// What the call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<M> {
    /// Status OK with the message.
    Message(M),
    /// A non-OK status.
    Status(Status),
}

/// A response that is not valid gRPC-Web.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrpcWebError {
    /// The HTTP status is not 200 and no gRPC status was given.
    #[error("HTTP status {0} without a gRPC status")]
    Http(u16),
    /// A frame header or payload is cut short.
    #[error("truncated frame")]
    Truncated,
    /// A frame is larger than the limit.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    Oversized {
        /// Declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A compressed frame, or an unknown flag.
    #[error("unsupported frame flag {0:#04x}")]
    UnsupportedFlag(u8),
    /// Data after the trailer frame, or a second trailer.
    #[error("data after the trailers")]
    AfterTrailers,
    /// No `grpc-status` in trailers or headers.
    #[error("no grpc-status")]
    MissingStatus,
    /// `grpc-status` is not a number.
    #[error("malformed grpc-status")]
    BadStatus,
    /// Status OK but not exactly one message.
    #[error("expected one message, got {0}")]
    MessageCount(usize),
    /// The message does not decode.
    #[error("message does not decode: {0}")]
    Decode(String),
}

/// The status-bearing HTTP response headers, for trailers-only responses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusHeaders<'a> {
    /// `grpc-status`.
    pub grpc_status: Option<&'a str>,
    /// `grpc-message`.
    pub grpc_message: Option<&'a str>,
}

fn status_from(status: &str, message: Option<&str>) -> Result<Status, GrpcWebError> {
    let code: i32 = status.trim().parse().map_err(|_| GrpcWebError::BadStatus)?;
    let message = message
        .map(|m| {
            percent_decode_str(m.trim())
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    Ok(Status {
        code: Code::from_i32(code),
        message,
    })
}

fn trailer_fields(payload: &[u8]) -> (Option<&str>, Option<&str>) {
    let text = std::str::from_utf8(payload).unwrap_or("");
    let (mut status, mut message) = (None, None);
    for line in text.split("\r\n").flat_map(|l| l.split('\n')) {
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("grpc-status") {
                status = Some(value.trim());
            } else if name.eq_ignore_ascii_case("grpc-message") {
                message = Some(value.trim());
            }
        }
    }
    (status, message)
}

/// Parses a unary gRPC-Web response: `http_status` and the status headers of the HTTP response,
/// and its body; messages larger than `max_message` bytes are refused.
pub fn parse_response<M: Message + Default>(
    http_status: u16,
    headers: StatusHeaders<'_>,
    body: &[u8],
    max_message: usize,
) -> Result<Reply<M>, GrpcWebError> {
    let mut rest = body;
    let mut messages: Vec<&[u8]> = Vec::new();
    let mut status: Option<Status> = None;
    while !rest.is_empty() {
        if status.is_some() {
            return Err(GrpcWebError::AfterTrailers);
        }
        let header: [u8; 5] = rest
            .get(..5)
            .ok_or(GrpcWebError::Truncated)?
            .try_into()
            .expect("5");
        let len = u32::from_be_bytes(header[1..].try_into().expect("4")) as usize;
        let limit = if header[0] == TRAILER {
            8 * 1024
        } else {
            max_message
        };
        if len > limit {
            return Err(GrpcWebError::Oversized { len, max: limit });
        }
        let payload = rest.get(5..5 + len).ok_or(GrpcWebError::Truncated)?;
        rest = &rest[5 + len..];
        match header[0] {
            DATA => messages.push(payload),
            TRAILER => {
                let (code, message) = trailer_fields(payload);
                status = Some(status_from(
                    code.ok_or(GrpcWebError::MissingStatus)?,
                    message,
                )?);
            }
            flag if flag & COMPRESSED != 0 => return Err(GrpcWebError::UnsupportedFlag(flag)),
            flag => return Err(GrpcWebError::UnsupportedFlag(flag)),
        }
    }
    let status = match status {
        Some(status) => status,
        None => match headers.grpc_status {
            Some(code) => status_from(code, headers.grpc_message)?,
            None if http_status != 200 => return Err(GrpcWebError::Http(http_status)),
            None => return Err(GrpcWebError::MissingStatus),
        },
    };
    if status.code != Code::Ok {
        return Ok(Reply::Status(status));
    }
    match messages.as_slice() {
        [one] => M::decode(*one)
            .map(Reply::Message)
            .map_err(|e| GrpcWebError::Decode(e.to_string())),
        other => Err(GrpcWebError::MessageCount(other.len())),
    }
}

/// Builds a response body as a gRPC-Web server would: the message (if any) and the trailers.
/// For tests, fuzzing and the fake origins of the edge tests.
pub fn encode_response<M: Message>(message: Option<&M>, code: i32, grpc_message: &str) -> Vec<u8> {
    let mut body = message.map(encode_request).unwrap_or_default();
    let encoded = utf8_percent_encode(grpc_message, GRPC_MESSAGE);
    let trailer = if grpc_message.is_empty() {
        format!("grpc-status:{code}\r\n")
    } else {
        format!("grpc-status:{code}\r\ngrpc-message:{encoded}\r\n")
    };
    body.push(TRAILER);
    body.extend_from_slice(&(trailer.len() as u32).to_be_bytes());
    body.extend_from_slice(trailer.as_bytes());
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::flashsale::{BuyOutcome, BuyReply, BuyReq};

    fn reply() -> BuyReply {
        BuyReply {
            outcome: BuyOutcome::Queued as i32,
            order_no: "O-1".into(),
            remaining: 9,
        }
    }

    fn parse(body: &[u8]) -> Result<Reply<BuyReply>, GrpcWebError> {
        parse_response(200, StatusHeaders::default(), body, DEFAULT_MAX_MESSAGE)
    }

    #[test]
    fn a_request_is_one_length_prefixed_frame() {
        let req = BuyReq {
            event_id: 7,
            user_id: "alice".into(),
            qty: 1,
            request_id: "r".into(),
        };
        let body = encode_request(&req);
        assert_eq!(body[0], 0);
        assert_eq!(
            u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize,
            body.len() - 5
        );
        assert_eq!(BuyReq::decode(&body[5..]).unwrap(), req);
    }

    #[test]
    fn data_then_trailers_parse_to_the_message() {
        let body = encode_response(Some(&reply()), 0, "");
        assert_eq!(parse(&body), Ok(Reply::Message(reply())));
    }

    #[test]
    fn error_trailers_are_percent_decoded() {
        let body = encode_response::<BuyReply>(None, 14, "warehouse down: 100% busy\r\n");
        assert_eq!(
            parse(&body),
            Ok(Reply::Status(Status {
                code: Code::Unavailable,
                message: "warehouse down: 100% busy\r\n".into()
            }))
        );
        let raw = b"\x80\x00\x00\x00\x2dgrpc-status: 5\r\ngrpc-message: no%20such%20order\r\n";
        let mut framed = raw.to_vec();
        framed[4] = (raw.len() - 5) as u8;
        assert_eq!(
            parse(&framed),
            Ok(Reply::Status(Status {
                code: Code::NotFound,
                message: "no such order".into()
            }))
        );
    }

    #[test]
    fn trailers_only_responses_take_the_status_from_headers() {
        let headers = StatusHeaders {
            grpc_status: Some("16"),
            grpc_message: Some("bad%20signature"),
        };
        assert_eq!(
            parse_response::<BuyReply>(200, headers, b"", 1024),
            Ok(Reply::Status(Status {
                code: Code::Unauthenticated,
                message: "bad signature".into()
            }))
        );
        assert_eq!(
            parse_response::<BuyReply>(502, StatusHeaders::default(), b"", 1024),
            Err(GrpcWebError::Http(502))
        );
        assert_eq!(parse(b""), Err(GrpcWebError::MissingStatus));
    }

    #[test]
    fn malformed_bodies_are_clean_errors() {
        let good = encode_response(Some(&reply()), 0, "");
        for cut in 1..good.len() {
            assert!(parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(
            parse(&[0, 0xff, 0xff, 0xff, 0xff]),
            Err(GrpcWebError::Oversized {
                len: u32::MAX as usize,
                max: DEFAULT_MAX_MESSAGE
            })
        );
        assert_eq!(
            parse(&[1, 0, 0, 0, 0]),
            Err(GrpcWebError::UnsupportedFlag(1))
        );
        let mut twice = good.clone();
        twice.extend_from_slice(&good);
        assert_eq!(parse(&twice), Err(GrpcWebError::AfterTrailers));
        let no_message = encode_response::<BuyReply>(None, 0, "");
        assert_eq!(parse(&no_message), Err(GrpcWebError::MessageCount(0)));
        let bad_status = b"\x80\x00\x00\x00\x11grpc-status: ok\r\n";
        assert_eq!(parse(bad_status), Err(GrpcWebError::BadStatus));
        assert_eq!(Code::from_i32(99), Code::Unknown);
        assert_eq!(Code::from_i32(-1), Code::Unknown);
    }

    #[test]
    fn codes_round_trip_through_their_numbers() {
        for (i, code) in Code::ALL.into_iter().enumerate() {
            assert_eq!(code as i32, i as i32);
            assert_eq!(Code::from_i32(code as i32), code);
        }
    }
}
