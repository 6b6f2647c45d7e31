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

// --- edge policy modules (the shared-core issue) ---
// (each `pub mod` line is added once its module compiles)
pub mod bot;
pub mod breaker;
pub mod gate;
pub mod grpc_web;
pub mod identity;
pub mod limit;
pub mod link;
pub mod pow;
pub mod refusal;
// --- end edge policy modules ---

#[cfg(feature = "warehouse")]
pub mod warehouse;
