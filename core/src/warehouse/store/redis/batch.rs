//! Batched buy decisions: concurrent buys of one sale in one shard wait in a lane and are decided
//! by one `buy_batch.lua` call, up to [`BUY_BATCH_MAX`] at a time, in arrival order.
//!
//! One call is in flight per lane. A buy that finds its lane idle starts a drain task; while a
//! call is out, later buys queue, and the next call takes everything queued meanwhile (no timer:
//! a lone buy is sent at once, and a batch grows only as long as Redis is busy with the one
//! before). The drain is a task of its own, not the first buyer's future, so a caller that gives
//! up (a cancelled request) neither stalls its lane nor loses the buys queued behind it; a buy
//! whose caller has gone is still decided, as a single EVALSHA already sent would be. An error of
//! the call (Redis unreachable, a timeout) is every buy's of that batch.
//!
//! What it does not do: decide (the script does, with the semantics of single buys in sequence)
//! or fall over on a split sale (each buy's rounds are [`super::buy`]'s; a buy short at home
//! comes back here for its next round like any other).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::oneshot;

use super::RedisStore;
use crate::stock::call::{self, BUY_BATCH_MAX};
use crate::stock::{BuyDecision, BuyRequest, Shard, StockError};
use crate::warehouse::store::{StoreError, StoreResult};

/// One buy's answer: its decision, or its refusal.
type Answer = StoreResult<Result<BuyDecision, StockError>>;

/// The lanes of every (sale, shard) with buys waiting or in flight.
#[derive(Default)]
pub(super) struct Lanes {
    lanes: Mutex<HashMap<(i64, Shard), Lane>>,
}

#[derive(Default)]
struct Lane {
    queue: VecDeque<Waiting>,
    /// A drain task owns the lane (one call in flight at most).
    busy: bool,
}

struct Waiting {
    req: BuyRequest,
    now_ms: i64,
    subpools: u32,
    answer: oneshot::Sender<Answer>,
}

impl RedisStore {
    /// One buy at `shard` (the buyer's home): batched with the concurrent buys of its sale there,
    /// or alone when batching is off.
    pub(super) async fn decide(
        &self,
        shard: Shard,
        subpools: u32,
        req: &BuyRequest,
        now_ms: i64,
    ) -> StoreResult<BuyDecision> {
        if !self.buy_batch {
            let call = call::buy(&self.keys, shard, subpools, req, now_ms);
            let reply: Vec<String> = self.run(&call).await?;
            return Ok(call::parse_buy_reply(req, &reply)?);
        }
        let (answer, answered) = oneshot::channel();
        let key = (req.event_id, shard);
        let start = {
            let mut lanes = self.lanes.lanes.lock().expect("not poisoned");
            let lane = lanes.entry(key).or_default();
            lane.queue.push_back(Waiting {
                req: req.clone(),
                now_ms,
                subpools,
                answer,
            });
            !std::mem::replace(&mut lane.busy, true)
        };
        if start {
            tokio::spawn(self.clone().drain(key));
        }
        match answered.await {
            Ok(answer) => Ok(answer??),
            Err(_) => Err(StoreError::Unavailable(
                "the buy's batch was dropped".into(),
            )),
        }
    }

    /// Sends the lane's queue, [`BUY_BATCH_MAX`] at a time, until it is empty.
    async fn drain(self, key: (i64, Shard)) {
        loop {
            let batch: Vec<Waiting> = {
                let mut lanes = self.lanes.lanes.lock().expect("not poisoned");
                let lane = lanes.get_mut(&key).expect("a busy lane stays");
                if lane.queue.is_empty() {
                    lanes.remove(&key);
                    return;
                }
                let n = lane.queue.len().min(BUY_BATCH_MAX);
                lane.queue.drain(..n).collect()
            };
            let answers = self.send(key.1, &batch).await;
            for (waiting, answer) in batch.into_iter().zip(answers) {
                // A caller that has gone no longer wants its answer.
                let _ = waiting.answer.send(answer);
            }
        }
    }

    /// One `buy_batch.lua` call: an answer per buy.
    async fn send(&self, shard: Shard, batch: &[Waiting]) -> Vec<Answer> {
        let buys: Vec<call::Buy<'_>> = batch.iter().map(|w| (&w.req, w.now_ms)).collect();
        // Every buy of a lane names the same sale, hence the same split.
        let call = call::buy_batch(&self.keys, shard, batch[0].subpools, &buys);
        let decided = match self.run::<Vec<String>>(&call).await {
            Ok(reply) => call::parse_buy_batch(&buys, &reply).map_err(StoreError::from),
            Err(e) => Err(e),
        };
        match decided {
            Ok(each) => each.into_iter().map(Ok).collect(),
            Err(e) => batch.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}
