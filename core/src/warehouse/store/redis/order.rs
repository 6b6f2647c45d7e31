//! An order's life after the buy, in its shard: read it, pay it, cancel it (or, for the
//! sweeper, expire it) — each one script — and send units released in a sub-pool shard after the
//! sale's end back home.
//!
//! What it does not do: create orders (the order worker's, see [`super::stream`]).

use redis::AsyncCommands;

use super::{unavailable, RedisStore};
use crate::stock::call;
use crate::stock::{Order, OrderStatus, PayRequest, StockError};
use crate::warehouse::store::{StoreError, StoreResult};

fn not_found(order_no: &str) -> StoreError {
    StoreError::Refused(StockError::NotFound(format!("order {order_no}")))
}

impl RedisStore {
    /// `Orders::order`.
    pub(super) async fn order_of(&self, order_no: &str) -> StoreResult<Option<Order>> {
        let Some((_, shard)) = self.shard_of_order(order_no).await? else {
            return Ok(None);
        };
        let mut conn = self.conn.clone();
        let record: Option<String> = conn
            .hget(self.keys.orderbook(shard), order_no)
            .await
            .map_err(unavailable)?;
        Ok(record
            .map(|r| call::order_record(order_no, &r))
            .transpose()?)
    }

    /// `Orders::pay`.
    pub(super) async fn pay_order(&self, req: &PayRequest, now_ms: i64) -> StoreResult<Order> {
        let (_, shard) = self
            .shard_of_order(&req.order_no)
            .await?
            .ok_or_else(|| not_found(&req.order_no))?;
        let reply: Vec<String> = self
            .run(&call::pay(&self.keys, shard, req, self.order_log, now_ms))
            .await?;
        Ok(call::parse_pay(&req.order_no, &reply)?)
    }

    /// `Orders::cancel`.
    pub(super) async fn cancel_order(
        &self,
        order_no: &str,
        user_id: &str,
        now_ms: i64,
    ) -> StoreResult<Order> {
        // An empty user is how the sweeper asks release_order.lua for any user's order.
        if user_id.is_empty() {
            return Err(StoreError::Refused(StockError::NotYours(
                order_no.to_owned(),
            )));
        }
        Ok(self
            .release(order_no, user_id, now_ms, OrderStatus::Cancelled)
            .await?
            .1)
    }

    /// Releases an order's units (a cancel, or the sweeper's expiry); `true` when this call
    /// released them.
    pub(super) async fn release(
        &self,
        order_no: &str,
        user_id: &str,
        now_ms: i64,
        to: OrderStatus,
    ) -> StoreResult<(bool, Order)> {
        let (event, shard) = self
            .shard_of_order(order_no)
            .await?
            .ok_or_else(|| not_found(order_no))?;
        let release = call::release_order(
            &self.keys,
            (event, shard),
            order_no,
            user_id,
            now_ms,
            to,
            self.order_log,
        );
        let reply: Vec<String> = self.run(&release).await?;
        let (released, order) = call::parse_release_order(order_no, &reply)?;
        if released && shard.sub > 0 {
            // After the sale's end the units went to the sub-pool shard's `available`: send
            // them home now, so the SKU can lock or pool them again (the sweeper would, later).
            self.send_home(shard).await?;
        }
        Ok((released, order))
    }
}
