//! The split-sale policy: how a buy on a sale split in sub-pools falls over to the other
//! sub-pools, what it answers as `remaining`, when it may answer SOLD_OUT, how a pool is spread
//! evenly, and from which sub-pools units are fetched — as pure plans over numbers read from the
//! shards, with property tests and no Redis.
//!
//! A buyer buys in their home sub-pool ([`super::home_subpool`]). Short there, they fetch the
//! units they lack from the other sub-pools (fullest first) and buy at home again, for at most
//! [`MAX_BUY_ROUNDS`] rounds. SOLD_OUT is answered once a round fetched nothing and no units are
//! passing between two sub-pools (another buyer's transfer), so a buyer never sees SOLD_OUT while
//! the sale still has the units they asked for at rest in some sub-pool.
//!
//! What it does not do: read or move anything. The Redis store reads the pools, runs the
//! transfers these plans ask for and feeds back what they moved; the memory store has one pool
//! and needs none of this.

use super::BuyDecision;

/// How many times a buy on a split sale fetches units into its home sub-pool (or waits out
/// units passing between two others) before it gives up to buyers who keep taking them first.
pub const MAX_BUY_ROUNDS: usize = 4;

/// What a buy answers as `remaining` on a split sale, from what its home sub-pool has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remaining {
    /// An estimate that costs no read and is never 0: the home sub-pool's units times the
    /// sub-pools (the pool is spread evenly).
    Estimate(i64),
    /// The home sub-pool is empty: read every sub-pool's and answer the sum, so 0 means sold out.
    Sum,
}

/// [`Remaining`] for a home sub-pool with `home_left` units of a sale split in `subpools`.
pub fn remaining(home_left: i64, subpools: u32) -> Remaining {
    if home_left > 0 {
        Remaining::Estimate(home_left.saturating_mul(i64::from(subpools)))
    } else {
        Remaining::Sum
    }
}

/// What to do after one buy at home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterBuy {
    /// Answer this decision as it is (one pool, or no `remaining` to correct).
    Answer(BuyDecision),
    /// Answer this decision with `remaining` replaced as [`Remaining`] says.
    AnswerWithRemaining(BuyDecision, Remaining),
    /// Short at home by `short` units: fetch them from the other sub-pools.
    Fetch {
        /// Units the home sub-pool lacks for this buy.
        short: i64,
    },
    /// Rounds spent while others kept taking what was fetched: SOLD_OUT with the sum of every
    /// sub-pool's units.
    GiveUp,
}

/// The next step after the buy of `qty` units at home answered `decision`, in round `round`
/// (from 0) of a sale split in `subpools`.
pub fn after_buy(decision: BuyDecision, qty: i64, round: usize, subpools: u32) -> AfterBuy {
    if subpools <= 1 {
        return AfterBuy::Answer(decision);
    }
    match decision {
        BuyDecision::SoldOut { .. } if round >= MAX_BUY_ROUNDS => AfterBuy::GiveUp,
        BuyDecision::SoldOut { remaining } => AfterBuy::Fetch {
            short: qty - remaining,
        },
        BuyDecision::Queued { remaining, .. } | BuyDecision::LimitReached { remaining } => {
            AfterBuy::AnswerWithRemaining(decision, self::remaining(remaining, subpools))
        }
        other => AfterBuy::Answer(other),
    }
}

/// `decision` with its `remaining` set to `left` (decisions without one are unchanged).
pub fn with_remaining(decision: BuyDecision, left: i64) -> BuyDecision {
    match decision {
        BuyDecision::Queued { order_no, .. } => BuyDecision::Queued {
            order_no,
            remaining: left,
        },
        BuyDecision::LimitReached { .. } => BuyDecision::LimitReached { remaining: left },
        BuyDecision::SoldOut { .. } => BuyDecision::SoldOut { remaining: left },
        other => other,
    }
}

/// The sub-pools to fetch from, in order: every other sub-pool with units, fullest first
/// (`others` is `(sub-pool, pool)` as read; a sub-pool that could not be read counts as empty).
/// The store asks each, in turn, for what is still short, and stops once nothing is.
pub fn fetch_order(mut others: Vec<(u32, i64)>) -> Vec<(u32, i64)> {
    others.retain(|(_, pool)| *pool > 0);
    others.sort_by_key(|(_, pool)| std::cmp::Reverse(*pool));
    others
}

/// After a round that fetched nothing: SOLD_OUT when no units are in flight between two
/// sub-pools, with what was seen (home's, the others', in flight); `None`: look again.
pub fn after_empty_fetch(
    home_left: i64,
    others: &[(u32, i64)],
    in_flight: i64,
) -> Option<BuyDecision> {
    if in_flight != 0 {
        return None;
    }
    let seen = home_left + others.iter().map(|(_, pool)| pool).sum::<i64>() + in_flight;
    Some(BuyDecision::SoldOut {
        remaining: seen.min(i64::from(i32::MAX)),
    })
}

/// What each sub-pool (from 1) must receive from the SKU's own shard (sub-pool 0, which gives)
/// so a pool of `pools` (every sub-pool's units, by number) is spread evenly: `(sub-pool,
/// units)`, only where units are needed. The first `total % n` sub-pools get one unit more.
pub fn spread(pools: &[i64]) -> Vec<(u32, i64)> {
    let total: i64 = pools.iter().sum();
    let n = pools.len() as i64;
    (1..pools.len())
        .filter_map(|sub| {
            let target = total / n + i64::from((sub as i64) < total % n);
            let need = target - pools[sub];
            (need > 0).then_some((sub as u32, need))
        })
        .collect()
}

/// The other sub-pools of a sale split in `subpools`, by steps after `home` (so each buyer
/// looks at them in their own order): `(steps, sub-pool)`.
pub fn others(home: u32, subpools: u32) -> impl Iterator<Item = (u32, u32)> {
    (1..subpools).map(move |step| (step, (home + step) % subpools))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_pool_answers_as_it_is() {
        let sold_out = BuyDecision::SoldOut { remaining: 0 };
        assert_eq!(
            after_buy(sold_out.clone(), 1, 0, 1),
            AfterBuy::Answer(sold_out)
        );
        assert_eq!(
            after_buy(BuyDecision::SoldOut { remaining: 1 }, 3, 0, 4),
            AfterBuy::Fetch { short: 2 }
        );
        assert_eq!(
            after_buy(BuyDecision::SoldOut { remaining: 1 }, 3, MAX_BUY_ROUNDS, 4),
            AfterBuy::GiveUp
        );
        assert_eq!(
            after_buy(BuyDecision::Ended, 3, 0, 4),
            AfterBuy::Answer(BuyDecision::Ended)
        );
        assert_eq!(spread(&[10, 0, 0, 0]), vec![(1, 3), (2, 2), (3, 2)]);
        assert_eq!(
            others(2, 4).collect::<Vec<_>>(),
            vec![(1, 3), (2, 0), (3, 1)]
        );
    }

    proptest! {
        #[test]
        fn a_spread_from_the_own_shard_leaves_every_sub_pool_within_one_unit(
            pools in prop::collection::vec(0i64..1_000, 1..12),
        ) {
            let total: i64 = pools.iter().sum();
            let plan = spread(&pools);
            let mut after = pools.clone();
            for &(sub, n) in &plan {
                prop_assert!(n > 0 && sub >= 1);
                after[sub as usize] += n;
                after[0] -= n;
            }
            prop_assert_eq!(after.iter().sum::<i64>(), total, "units conserved");
            // Sub-pools that had more than their share keep it (nothing is taken back); every
            // other sub-pool holds its share exactly.
            let n = pools.len() as i64;
            for sub in 1..pools.len() {
                let share = total / n + i64::from((sub as i64) < total % n);
                prop_assert_eq!(after[sub], pools[sub].max(share));
            }
            if pools[1..].iter().all(|p| *p == 0) {
                let (most, least) = (after.iter().max().unwrap(), after.iter().min().unwrap());
                prop_assert!(most - least <= 1, "{:?}", after);
                prop_assert!(after[0] >= 0);
            }
        }

        #[test]
        fn fetching_asks_the_fullest_sub_pools_first_and_never_an_empty_one(
            others in prop::collection::vec((0u32..64, -3i64..100), 0..10),
        ) {
            let order = fetch_order(others.clone());
            prop_assert!(order.iter().all(|(_, pool)| *pool > 0));
            prop_assert!(order.windows(2).all(|w| w[0].1 >= w[1].1));
            prop_assert_eq!(order.len(), others.iter().filter(|(_, p)| *p > 0).count());
        }

        #[test]
        fn sold_out_is_answered_only_with_nothing_in_flight(
            home_left in 0i64..100,
            others in prop::collection::vec((0u32..8, 0i64..100), 0..8),
            in_flight in 0i64..50,
        ) {
            match after_empty_fetch(home_left, &others, in_flight) {
                None => prop_assert!(in_flight > 0),
                Some(BuyDecision::SoldOut { remaining }) => {
                    prop_assert_eq!(in_flight, 0);
                    let seen = home_left + others.iter().map(|(_, p)| p).sum::<i64>();
                    prop_assert_eq!(remaining, seen.min(i64::from(i32::MAX)));
                }
                Some(other) => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn a_split_sale_with_units_at_home_never_answers_zero_remaining(
            home_left in -5i64..1_000_000, subpools in 2u32..65,
        ) {
            match remaining(home_left, subpools) {
                Remaining::Estimate(n) => {
                    prop_assert!(home_left > 0 && n >= home_left && n > 0);
                }
                Remaining::Sum => prop_assert!(home_left <= 0),
            }
        }

        #[test]
        fn a_buy_gives_up_only_after_its_rounds_and_fetches_only_what_it_lacks(
            qty in 1i64..10, home_left in 0i64..10, round in 0usize..=MAX_BUY_ROUNDS,
            subpools in 2u32..8,
        ) {
            let home_left = home_left.min(qty - 1);
            match after_buy(BuyDecision::SoldOut { remaining: home_left }, qty, round, subpools) {
                AfterBuy::GiveUp => prop_assert_eq!(round, MAX_BUY_ROUNDS),
                AfterBuy::Fetch { short } => {
                    prop_assert!(round < MAX_BUY_ROUNDS);
                    prop_assert_eq!(short, qty - home_left);
                    prop_assert!(short > 0);
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn every_other_sub_pool_is_looked_at_once(home in 0u32..64, subpools in 1u32..65) {
            let home = home % subpools;
            let mut seen: Vec<u32> = others(home, subpools).map(|(_, sub)| sub).collect();
            prop_assert!(!seen.contains(&home));
            seen.sort_unstable();
            seen.dedup();
            prop_assert_eq!(seen.len() as u32, subpools - 1);
        }
    }
}
