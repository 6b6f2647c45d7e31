//! The warehouse: flashgate's native backend (feature `warehouse`).
//!
//! A tonic server that keeps the seed's `warehouse.Warehouse` contract and adds `flashsale.Admin`
//! and `flashsale.Seckill`, over a [`store::Store`]: Redis in production (every stock movement one
//! Lua script, so nothing is ever oversold), or the in-process memory store for a local run and as
//! the oracle of the Redis store's tests. Wins go through an order stream to the order worker;
//! the sweeper expires unpaid orders and closes ended sales.
//!
//! It listens twice ([`server`]): an internal listener for the shop's own back office (native
//! gRPC, optionally behind a bearer token, [`internal`]) and an edge listener that takes only
//! origin-signed gRPC-Web of the edge's methods ([`origin`]).
//!
//! What it does not do: decide edge policy (bots, rate limits per user, links) — that is the
//! edge's, in the sans-IO core — or trust a gRPC-Web caller without the origin signature.

pub mod audit;
pub mod env;
pub mod internal;
pub mod metrics;
pub mod origin;
pub mod server;
pub mod service;
pub mod store;
pub mod worker;
