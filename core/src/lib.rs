//! # flashgate-core
//!
//! The one crate every flashgate process is built from.
//!
//! Without features it is the **sans-IO core** the edges share (the Cloudflare Worker and the
//! Spin component): pure functions and small state machines that take the current time and the
//! request's facts as arguments and return a decision or the next state. It does no I/O, reads
//! no clock, spawns nothing and needs no randomness source (callers pass nonces and seeds in), so
//! it builds for `wasm32-unknown-unknown`, `wasm32-wasip2` and native alike, and its tests run
//! with a fake clock.
//!
//! With the `warehouse` feature it also holds the native backend (module `warehouse`): the tonic
//! service over Redis that takes stock, and the `flashgate-warehouse` binary.
//!
//! What the core deliberately does not do: hold storage, talk to a network, or know which
//! runtime it runs on. Adapters read time once per request, load state, ask the core, store
//! state and act.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod origin_auth;
pub mod proto;
pub mod stock;

// The edge's policy modules, composed by `gate`, and the waiting room's rules.
pub mod admission;
pub mod bot;
pub mod breaker;
pub mod gate;
pub mod grpc_web;
pub mod identity;
pub mod limit;
pub mod link;
pub mod place;
pub mod pow;
pub mod refusal;

#[cfg(feature = "warehouse")]
pub mod warehouse;

/// Lower-case hex of `bytes`: the one encoder for digests signed over, ids and idempotency keys.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(super::hex(&[]), "");
    }
}
