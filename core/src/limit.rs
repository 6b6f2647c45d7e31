//! GCRA rate limiting as pure arithmetic over a stored theoretical arrival time.
//!
//! A [`Quota`] of `rate` per `period` with a `burst` is an emission interval `T = period / rate`
//! and a tolerance of `burst × T`. The only state per key is the theoretical arrival time
//! ([`Tat`]): the moment the key's allowance would be back to full if no more requests came.
//! A request at `now` conforms if `max(tat, now) + T − now ≤ burst × T`; if it does, the new
//! TAT is `max(tat, now) + T`, and if not, the refusal says how long to wait. Over any window of
//! length `d` at most `burst + d / T` requests conform (the property tests hold it to that).
//! This is governor's `gcra.rs` without the atomics and the clock: [`check`] takes the state and
//! `now` and returns the decision and the next state, and storage is the caller's.
//!
//! Quotas read like `"20/s burst 40"`, `"600/min"` (burst defaults to one period's worth).
//! [`LimitKey`] names the buckets the gate uses: per user, per IP (IPv6 by /64, since one
//! subscriber holds a whole /64; requests with no address share one "unknown network" bucket),
//! per sale, global, and the hot SKU under sale. [`RateMeter`]
//! measures the recent request rate the same way: a small stored value, `now` passed in.
//!
//! What it deliberately does not do: share state between edge instances (the caller stores TATs
//! where its runtime can, e.g. a Durable Object), or read a clock.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

const NS_PER_MS: u64 = 1_000_000;

/// A rate with a burst allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Nanoseconds between conforming requests at the sustained rate, rounded up.
    interval_ns: u64,
    /// Requests that may arrive at once after a quiet spell.
    burst: u32,
}

/// Why a quota did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quota {0:?} is not of the form `N/UNIT [burst B]` (UNIT: ms, s, min, h, d)")]
pub struct BadQuota(pub String);

impl Quota {
    /// `rate` requests per `period_ms`, with `burst` at once. `None` if any is zero.
    pub fn new(rate: u32, period_ms: u64, burst: u32) -> Option<Quota> {
        if rate == 0 || period_ms == 0 || burst == 0 {
            return None;
        }
        let interval_ns = (period_ms.checked_mul(NS_PER_MS)?).div_ceil(u64::from(rate));
        Some(Quota { interval_ns, burst })
    }

    /// `rate` per second, with `burst`.
    pub fn per_second(rate: u32, burst: u32) -> Option<Quota> {
        Quota::new(rate, 1_000, burst)
    }

    /// The burst size.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The emission interval in nanoseconds.
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    fn tolerance_ns(&self) -> u64 {
        self.interval_ns.saturating_mul(u64::from(self.burst))
    }
}

impl FromStr for Quota {
    type Err = BadQuota;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadQuota(text.to_owned());
        let mut words = text.split_whitespace();
        let (rate, unit) = words
            .next()
            .and_then(|w| w.split_once('/'))
            .ok_or_else(bad)?;
        let rate: u32 = rate.parse().map_err(|_| bad())?;
        let period_ms = match unit {
            "ms" => 1,
            "s" | "sec" | "second" => 1_000,
            "m" | "min" | "minute" => 60_000,
            "h" | "hour" => 3_600_000,
            "d" | "day" => 86_400_000,
            _ => return Err(bad()),
        };
        let burst = match (words.next(), words.next(), words.next()) {
            (None, _, _) => rate,
            (Some("burst"), Some(b), None) => b.parse().map_err(|_| bad())?,
            _ => return Err(bad()),
        };
        Quota::new(rate, period_ms, burst).ok_or_else(bad)
    }
}

/// The stored state of one bucket: the theoretical arrival time, nanoseconds since the epoch.
/// `Tat::default()` is a fresh bucket; a TAT at or before `now` is equivalent to a fresh one, so
/// callers may drop such entries.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Tat(pub u64);

impl Tat {
    /// Whether this state still constrains anything at `now_ms` (if not, it can be forgotten).
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.0 > ns(now_ms)
    }
}

/// A rate-limit decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Conforming: let it through.
    Allow,
    /// Not conforming: refuse; a retry after `retry_after_ms` will conform.
    Deny {
        /// Milliseconds to wait, rounded up.
        retry_after_ms: u64,
    },
}

fn ns(now_ms: i64) -> u64 {
    u64::try_from(now_ms).unwrap_or(0).saturating_mul(NS_PER_MS)
}

/// Checks one request against `quota` at `now_ms`, given the bucket's stored state.
pub fn check(state: Tat, now_ms: i64, quota: &Quota) -> (Decision, Tat) {
    check_ns(state, ns(now_ms), quota)
}

/// [`check`] at nanosecond resolution.
pub fn check_ns(state: Tat, now_ns: u64, quota: &Quota) -> (Decision, Tat) {
    let next = state.0.max(now_ns).saturating_add(quota.interval_ns);
    let allowed_until = now_ns.saturating_add(quota.tolerance_ns());
    if next <= allowed_until {
        (Decision::Allow, Tat(next))
    } else {
        let wait_ns = next - allowed_until;
        (
            Decision::Deny {
                retry_after_ms: wait_ns.div_ceil(NS_PER_MS),
            },
            state,
        )
    }
}

/// A rate-limit bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKey<'a> {
    /// One user, across sales.
    User(&'a str),
    /// One client network: the IPv4 address, or the IPv6 /64.
    Ip(IpAddr),
    /// Every request whose client address the platform did not report (or reported unparsable),
    /// as one network: an address-less request is limited like any other, never waved through.
    UnknownNetwork,
    /// One sale.
    Event(i64),
    /// The SKU under sale: the hot key the warehouse's shard can take only so fast.
    Sku(i64),
    /// One user's place in one sale's waiting room: how often it may be polled.
    Place(i64, &'a str),
    /// Everything.
    Global,
}

impl LimitKey<'_> {
    /// The bucket of a client network: its address's, or the shared unknown one.
    pub fn network(client_ip: Option<IpAddr>) -> LimitKey<'static> {
        client_ip.map_or(LimitKey::UnknownNetwork, LimitKey::Ip)
    }
}

impl fmt::Display for LimitKey<'_> {
    /// The storage key, e.g. `rl:user:alice`, `rl:ip:2001:db8:1:2::/64`, `rl:event:7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKey::User(user) => write!(f, "rl:user:{user}"),
            LimitKey::Ip(IpAddr::V4(v4)) => write!(f, "rl:ip:{v4}"),
            LimitKey::Ip(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => write!(f, "rl:ip:{v4}"),
                None => {
                    let prefix = u128::from(*v6) & !((1u128 << 64) - 1);
                    write!(f, "rl:ip:{}/64", std::net::Ipv6Addr::from(prefix))
                }
            },
            // `unknown` is no address's rendering, so this bucket is no real network's.
            LimitKey::UnknownNetwork => f.write_str("rl:ip:unknown"),
            LimitKey::Event(id) => write!(f, "rl:event:{id}"),
            LimitKey::Sku(id) => write!(f, "rl:sku:{id}"),
            LimitKey::Place(event, user) => write!(f, "rl:place:{event}:{user}"),
            LimitKey::Global => f.write_str("rl:global"),
        }
    }
}

/// Recent request rate, from two one-second windows: what the proof-of-work difficulty reads
/// as "load". Like the buckets above, it is a value the caller stores and `now` is passed in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateMeter {
    window_start_ms: i64,
    current: u32,
    previous: u32,
}

impl RateMeter {
    /// Counts one request at `now_ms`.
    pub fn tick(&mut self, now_ms: i64) {
        self.roll(now_ms);
        self.current = self.current.saturating_add(1);
    }

    fn roll(&mut self, now_ms: i64) {
        let elapsed = now_ms.saturating_sub(self.window_start_ms);
        if elapsed >= 2_000 {
            *self = RateMeter {
                window_start_ms: now_ms,
                current: 0,
                previous: 0,
            };
        } else if elapsed >= 1_000 {
            *self = RateMeter {
                window_start_ms: self.window_start_ms + 1_000,
                current: 0,
                previous: self.current,
            };
        }
    }

    /// Requests per second at `now_ms`: the previous window weighted by how much of it still
    /// overlaps the last second, plus the current one.
    pub fn rate(&self, now_ms: i64) -> u32 {
        let mut m = *self;
        m.roll(now_ms);
        let into = now_ms.saturating_sub(m.window_start_ms).clamp(0, 1_000) as u64;
        (u64::from(m.previous) * (1_000 - into) / 1_000 + u64::from(m.current)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse_from_text() {
        let q: Quota = "20/s burst 40".parse().unwrap();
        assert_eq!((q.interval_ns(), q.burst()), (50_000_000, 40));
        let q: Quota = "600/min".parse().unwrap();
        assert_eq!((q.interval_ns(), q.burst()), (100_000_000, 600));
        let q: Quota = "3/s".parse().unwrap();
        assert_eq!(q.interval_ns(), 333_333_334);
        for bad in [
            "",
            "20",
            "20/fortnight",
            "0/s",
            "20/s burst",
            "20/s burst 0",
            "20/s bust 4",
            "x/s",
        ] {
            assert!(bad.parse::<Quota>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_burst_is_admitted_at_once_then_the_rate() {
        let q: Quota = "10/s burst 3".parse().unwrap();
        let mut tat = Tat::default();
        let now = 1_000_000;
        for _ in 0..3 {
            let (d, next) = check(tat, now, &q);
            assert_eq!(d, Decision::Allow);
            tat = next;
        }
        let (d, same) = check(tat, now, &q);
        assert_eq!(
            d,
            Decision::Deny {
                retry_after_ms: 100
            }
        );
        assert_eq!(same, tat, "a refusal does not consume");
        assert_eq!(
            check(tat, now + 99, &q).0,
            Decision::Deny { retry_after_ms: 1 }
        );
        assert_eq!(check(tat, now + 100, &q).0, Decision::Allow);
        assert!(!tat.is_live(now + 300) && tat.is_live(now + 299));
    }

    #[test]
    fn keys_render_stably_and_group_ipv6_by_64() {
        assert_eq!(LimitKey::User("alice").to_string(), "rl:user:alice");
        assert_eq!(
            LimitKey::Ip("203.0.113.9".parse().unwrap()).to_string(),
            "rl:ip:203.0.113.9"
        );
        let a = LimitKey::Ip("2001:db8:1:2:aaaa::1".parse().unwrap()).to_string();
        let b = LimitKey::Ip("2001:db8:1:2:bbbb::9".parse().unwrap()).to_string();
        assert_eq!(a, "rl:ip:2001:db8:1:2::/64");
        assert_eq!(a, b);
        assert_eq!(
            LimitKey::Ip("::ffff:203.0.113.9".parse().unwrap()).to_string(),
            "rl:ip:203.0.113.9"
        );
        assert_eq!(LimitKey::network(None).to_string(), "rl:ip:unknown");
        assert_eq!(
            LimitKey::network(Some("203.0.113.9".parse().unwrap())),
            LimitKey::Ip("203.0.113.9".parse().unwrap())
        );
        assert_eq!(LimitKey::Event(7).to_string(), "rl:event:7");
        assert_eq!(LimitKey::Place(7, "bob").to_string(), "rl:place:7:bob");
        assert_eq!(LimitKey::Sku(42).to_string(), "rl:sku:42");
        assert_eq!(LimitKey::Global.to_string(), "rl:global");
    }

    #[test]
    fn the_rate_meter_weights_the_previous_second() {
        let mut m = RateMeter::default();
        for i in 0..100 {
            m.tick(10_000 + i * 10);
        }
        assert_eq!(m.rate(10_999), 100);
        assert_eq!(m.rate(11_500), 50);
        assert_eq!(m.rate(12_000), 0);
        assert_eq!(m.rate(20_000), 0);
    }
}
