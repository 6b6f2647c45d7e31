//! Numbering: order numbers (`EVENT-N`, on one track per sub-pool), the directory entry of a
//! sale (`SKU` or `SKU/SUBPOOLS`) and a buyer's home sub-pool (where the buyer's per-sale count
//! and request ids live, see [`super::record`]).
//!
//! These are the names the scripts and the stores agree on; each is a pure function of its
//! inputs, so any store (and the audit) can tell a sale's shard from an order number alone.
//!
//! What it does not do: allocate numbers (the scripts count wins in each shard).

/// A directory entry `SKU` or `SKU/SUBPOOLS` → (SKU, sub-pools).
pub fn parse_event_entry(entry: &str) -> Option<(i64, u32)> {
    match entry.split_once('/') {
        None => Some((entry.parse().ok()?, 1)),
        Some((sku, k)) => Some((sku.parse().ok()?, k.parse().ok().filter(|k| *k >= 1)?)),
    }
}

/// The tombstone of a retired sale in [`Keys::retired_events`](super::Keys::retired_events):
/// `RETIRED_AT_MS SEQ_0 SEQ_1 …`.
pub fn retired_entry(retired_ms: i64, seqs: &[i64]) -> String {
    std::iter::once(retired_ms)
        .chain(seqs.iter().copied())
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads a tombstone of [`Keys::retired_events`](super::Keys::retired_events): when the sale
/// retired, and its wins per sub-pool.
pub fn parse_retired_entry(entry: &str) -> Option<(i64, Vec<i64>)> {
    let mut numbers = entry.split(' ').map(|n| n.parse::<i64>().ok());
    let at = numbers.next()??;
    let seqs = numbers.collect::<Option<Vec<_>>>()?;
    (!seqs.is_empty()).then_some((at, seqs))
}

/// The directory entry of a sale of `sku` split in `subpools`.
pub fn event_entry(sku: i64, subpools: u32) -> String {
    if subpools <= 1 {
        sku.to_string()
    } else {
        format!("{sku}/{subpools}")
    }
}

/// FNV-1a of a user id: stable across processes and versions (it names shards).
fn user_hash(user_id: &str) -> u64 {
    user_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The sub-pool a user buys from first: a stable hash (FNV-1a) of the user id, so a user's
/// per-sale count and request ids stay in one shard.
pub fn home_subpool(user_id: &str, subpools: u32) -> u32 {
    if subpools <= 1 {
        return 0;
    }
    (user_hash(user_id) % u64::from(subpools)) as u32
}

/// The number of the `seq`-th win of sub-pool `sub` of a sale split in `subpools`: sub-pools
/// number their wins on interleaved tracks (`(seq - 1) * subpools + sub + 1`), so order numbers
/// stay `EVENT-N`, unique, and name their shard. With one pool it is `seq`.
pub fn order_seq(seq: i64, sub: u32, subpools: u32) -> i64 {
    (seq - 1) * i64::from(subpools) + i64::from(sub) + 1
}

/// The sub-pool whose track order number `EVENT-N` is on.
pub fn subpool_of_order(order_no: &str, subpools: u32) -> Option<u32> {
    event_of_order(order_no)?;
    let n: i64 = order_no.split_once('-')?.1.parse().ok()?;
    // (event_of_order accepts any u64; numbers past i64 are no order of ours.)
    Some(((n - 1) % i64::from(subpools.max(1))) as u32)
}

/// The order number of the `seq`-th win of a sale.
pub fn order_no(event_id: i64, seq: i64) -> String {
    format!("{event_id}-{seq}")
}

/// The sale an order number belongs to, or `None` when it is not one of ours.
pub fn event_of_order(order_no: &str) -> Option<i64> {
    let (event, seq) = order_no.split_once('-')?;
    let event: i64 = event.parse().ok().filter(|e| *e > 0)?;
    seq.parse::<u64>().ok().filter(|s| *s > 0)?;
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_pools_number_orders_on_interleaved_tracks() {
        for k in 1..=5u32 {
            let mut seen = std::collections::BTreeSet::new();
            for sub in 0..k {
                for seq in 1..=20 {
                    let no = order_no(9, order_seq(seq, sub, k));
                    assert!(seen.insert(no.clone()), "{no} twice");
                    assert_eq!(subpool_of_order(&no, k), Some(sub), "{no}");
                }
            }
        }
        assert_eq!(order_seq(5, 0, 1), 5);
        assert_eq!(subpool_of_order("4-18446744073709551615", 4), None);
        assert_eq!(retired_entry(5000, &[3, 2]), "5000 3 2");
        assert_eq!(parse_retired_entry("5000 3 2"), Some((5000, vec![3, 2])));
        assert_eq!(parse_retired_entry("5000"), None);
        assert_eq!(parse_retired_entry("5000 x"), None);
        assert_eq!(parse_event_entry("12"), Some((12, 1)));
        assert_eq!(parse_event_entry("12/4"), Some((12, 4)));
        assert_eq!(parse_event_entry(&event_entry(12, 4)), Some((12, 4)));
        assert_eq!(parse_event_entry("12/0"), None);
        assert_eq!(event_entry(12, 1), "12");
        let homes: std::collections::BTreeSet<u32> = (0..100)
            .map(|u| home_subpool(&format!("user-{u}"), 4))
            .collect();
        assert_eq!(homes.len(), 4, "a hundred users spread over every sub-pool");
        assert_eq!(home_subpool("anyone", 1), 0);
    }

    #[test]
    fn order_numbers_name_their_sale() {
        assert_eq!(order_no(12, 5), "12-5");
        assert_eq!(event_of_order("12-5"), Some(12));
        for bad in [
            "", "12", "-5", "12-", "x-1", "0-1", "12-0", "12-5-1", "-12-5",
        ] {
            assert_eq!(event_of_order(bad), None, "{bad}");
        }
    }
}
