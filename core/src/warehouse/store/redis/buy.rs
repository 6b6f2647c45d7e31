//! `Seckill.Buy` on Redis: one decision in the buyer's home shard (`buy_batch.lua`, batched with
//! the sale's concurrent buys there, see [`super::batch`]; the request id's check is the script's
//! own), and on a split sale the fall-over that
//! [`crate::stock::split`] plans — fetch what the home sub-pool lacks from the others (read
//! concurrently; one that cannot be reached is passed over), buy at home again, and answer
//! SOLD_OUT only when the plan says so.
//!
//! What it does not do: decide when to fetch, how much, or what to answer (the plan does).

use redis::AsyncCommands;

use super::RedisStore;
use crate::stock::call::End;
use crate::stock::split::{self, AfterBuy, Remaining};
use crate::stock::{self, BuyDecision, BuyRequest, Shard};
use crate::warehouse::store::{StoreError, StoreResult};

impl RedisStore {
    /// `Orders::buy`.
    pub(super) async fn buy_falling_over(
        &self,
        req: &BuyRequest,
        now_ms: i64,
    ) -> StoreResult<BuyDecision> {
        let Some((sku, subpools)) = self.sale_entry(req.event_id).await? else {
            return Ok(BuyDecision::UnknownEvent);
        };
        let (k, e) = (&self.keys, req.event_id);
        let home = Shard::new(sku, stock::home_subpool(&req.user_id, subpools));
        for round in 0..=split::MAX_BUY_ROUNDS {
            let decision = self.decide(home, subpools, req, now_ms).await?;
            let short = match split::after_buy(decision, req.qty, round, subpools) {
                AfterBuy::Answer(decision) => return Ok(decision),
                AfterBuy::AnswerWithRemaining(decision, left) => {
                    let left = match left {
                        Remaining::Estimate(n) => n,
                        Remaining::Sum => self.pools_left(sku, e, subpools).await?,
                    };
                    return Ok(split::with_remaining(decision, left));
                }
                AfterBuy::GiveUp => break,
                AfterBuy::Fetch { short } => short,
            };
            let others = split::fetch_order(self.other_pools(home, e, subpools).await);
            let mut moved = 0;
            for &(sub, _) in &others {
                if moved >= short {
                    break;
                }
                let from = End::pool(k, Shard::new(sku, sub), e);
                match self
                    .transfer(&from, &End::pool(k, home, e), short - moved)
                    .await
                {
                    Ok(n) => moved += n,
                    Err(StoreError::Unavailable(why)) => {
                        tracing::warn!(%why, sub, "a sub-pool is unreachable; buying from the others");
                    }
                    Err(other) => return Err(other),
                }
            }
            if moved > 0 {
                continue;
            }
            let in_flight = self.pool_moves_in_flight(sku, e, subpools).await?;
            if let Some(sold_out) = split::after_empty_fetch(req.qty - short, &others, in_flight) {
                return Ok(sold_out);
            }
        }
        // Rounds spent while others kept taking what was fetched: what is left is too little
        // for this buyer right now.
        Ok(BuyDecision::SoldOut {
            remaining: self.pools_left(sku, e, subpools).await?,
        })
    }

    /// The pools of every sub-pool but `home`'s, as `(sub-pool, pool)`, read concurrently; one
    /// that cannot be read counts as empty (and is logged).
    async fn other_pools(&self, home: Shard, event: i64, subpools: u32) -> Vec<(u32, i64)> {
        let reads = split::others(home.sub, subpools).map(|(step, sub)| {
            let mut conn = self.conn.clone();
            let key = self.keys.event(Shard::new(home.sku, sub), event);
            async move {
                match conn.hget::<_, _, Option<i64>>(key, "pool").await {
                    Ok(pool) => (sub, pool.unwrap_or(0)),
                    Err(e) => {
                        tracing::warn!(error = %e, step, "cannot read a sub-pool; passing it over");
                        (sub, 0)
                    }
                }
            }
        });
        futures_util::future::join_all(reads).await
    }
}
