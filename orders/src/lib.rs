//! flashgate's order sink (队列削峰 made real): the process that carries every order change from
//! Redis into the shop's PostgreSQL, exactly once, in batches, at the pace the operator sets.
//!
//! The warehouse's order scripts append each change they make (an order created, paid,
//! cancelled, expired) to their shard's change log `{sku:ID}:changes`, in the same atomic step
//! as the change: the log is exactly as durable as the change, and in order per order. This
//! crate reads those logs ([`sink`]), writes them into `orders` and `order_events` ([`db`]),
//! serves its backlog as metrics and a health verdict ([`metrics`]), and reconciles Redis with
//! PostgreSQL ([`audit`]).
//!
//! What it deliberately does not do: take part in a Buy. The warehouse does not link a
//! PostgreSQL driver at all, so no Buy can wait for the database; a database that is down only
//! lets the change logs grow until the sink drains them.

#![warn(missing_docs)]

pub mod audit;
pub mod change;
pub mod db;
pub mod metrics;
pub mod sink;
