//! A circuit breaker over origin outcomes, as a pure state machine.
//!
//! While **closed**, calls go through and outcomes are counted in a fixed window; too many
//! consecutive failures, or a failure ratio over a minimum number of calls, **opens** it. While
//! open, calls fail fast with a Retry-After instead of piling onto a struggling warehouse. After
//! the cooldown it is **half-open**: at most `probes` calls go through; if they all succeed it
//! closes, and the first failure opens it again. Probes whose outcome never comes back (the
//! edge instance died) are written off after another cooldown, so it cannot stay stuck.
//!
//! [`Breaker::admit`] and [`Breaker::record`] take the state by value with `now` and return the
//! next state; storing it (per isolate, or shared) is the caller's business.
//!
//! What it deliberately does not do: classify outcomes (the gate decides that a sold-out reply is
//! a success and a timeout a failure), time out calls, or retry them.

/// Tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Length of the closed-state counting window.
    pub window_ms: i64,
    /// Calls in a window before the failure ratio is trusted.
    pub min_calls: u32,
    /// Failure ratio that opens the breaker, in per mille of the window's calls.
    pub failure_permille: u32,
    /// Consecutive failures that open the breaker regardless of the ratio.
    pub consecutive_failures: u32,
    /// How long it stays open.
    pub cooldown_ms: i64,
    /// Calls let through while half-open.
    pub probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window_ms: 10_000,
            min_calls: 20,
            failure_permille: 500,
            consecutive_failures: 5,
            cooldown_ms: 5_000,
            probes: 3,
        }
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Breaker {
    /// Calls flow; outcomes are counted.
    Closed {
        /// Start of the counting window.
        window_start_ms: i64,
        /// Calls recorded in the window.
        calls: u32,
        /// Failures recorded in the window.
        failures: u32,
        /// Failures since the last success.
        consecutive: u32,
    },
    /// Calls fail fast until `until_ms`.
    Open {
        /// When probing may begin.
        until_ms: i64,
    },
    /// A few probes test the origin.
    HalfOpen {
        /// When probing began (or was last restarted).
        since_ms: i64,
        /// Probes let through so far.
        admitted: u32,
        /// Probes that succeeded.
        succeeded: u32,
    },
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker::Closed {
            window_start_ms: 0,
            calls: 0,
            failures: 0,
            consecutive: 0,
        }
    }
}

/// Whether a call may go to the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: call.
    Forward,
    /// Half-open: call, as one of the probes.
    Probe,
    /// Open, or half-open with all probes out: answer at once.
    FailFast {
        /// Milliseconds until the breaker may let calls through.
        retry_after_ms: u64,
    },
}

impl Admission {
    /// Whether the call goes through.
    pub fn forwards(&self) -> bool {
        !matches!(self, Admission::FailFast { .. })
    }
}

/// How an origin call ended, as far as the origin's health goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The origin answered (any business answer, sold-out included).
    Success,
    /// The origin failed, timed out, or was unreachable.
    Failure,
}

fn wait(until_ms: i64, now_ms: i64) -> u64 {
    until_ms.saturating_sub(now_ms).max(1) as u64
}

impl Breaker {
    /// Whether the breaker lets calls through without asking (for display and metrics).
    pub fn is_closed(&self) -> bool {
        matches!(self, Breaker::Closed { .. })
    }

    /// Asks to make a call at `now_ms`.
    pub fn admit(self, now_ms: i64, config: &BreakerConfig) -> (Admission, Breaker) {
        match self {
            Breaker::Closed { .. } => (Admission::Forward, self),
            Breaker::Open { until_ms } if now_ms < until_ms => (
                Admission::FailFast {
                    retry_after_ms: wait(until_ms, now_ms),
                },
                self,
            ),
            Breaker::Open { .. } => Breaker::HalfOpen {
                since_ms: now_ms,
                admitted: 0,
                succeeded: 0,
            }
            .admit(now_ms, config),
            Breaker::HalfOpen {
                since_ms, admitted, ..
            } if admitted >= config.probes
                && now_ms >= since_ms.saturating_add(config.cooldown_ms) =>
            {
                // The probes' outcomes were lost: write them off and probe afresh.
                Breaker::HalfOpen {
                    since_ms: now_ms,
                    admitted: 0,
                    succeeded: 0,
                }
                .admit(now_ms, config)
            }
            Breaker::HalfOpen {
                since_ms,
                admitted,
                succeeded,
            } => {
                if admitted < config.probes {
                    let next = Breaker::HalfOpen {
                        since_ms,
                        admitted: admitted + 1,
                        succeeded,
                    };
                    (Admission::Probe, next)
                } else {
                    let until = since_ms.saturating_add(config.cooldown_ms);
                    (
                        Admission::FailFast {
                            retry_after_ms: wait(until, now_ms),
                        },
                        self,
                    )
                }
            }
        }
    }

    /// Records the outcome of a call made at `now_ms`.
    pub fn record(self, outcome: Outcome, now_ms: i64, config: &BreakerConfig) -> Breaker {
        let open = Breaker::Open {
            until_ms: now_ms.saturating_add(config.cooldown_ms),
        };
        match (self, outcome) {
            (
                Breaker::Closed {
                    window_start_ms,
                    calls,
                    failures,
                    consecutive,
                },
                _,
            ) => {
                let fresh = now_ms.saturating_sub(window_start_ms) >= config.window_ms;
                let (window_start_ms, calls, failures) = if fresh {
                    (now_ms, 0, 0)
                } else {
                    (window_start_ms, calls, failures)
                };
                let calls = calls.saturating_add(1);
                let (failures, consecutive) = match outcome {
                    Outcome::Success => (failures, 0),
                    Outcome::Failure => (failures.saturating_add(1), consecutive.saturating_add(1)),
                };
                let ratio_tripped = calls >= config.min_calls.max(1)
                    && u64::from(failures) * 1000
                        >= u64::from(config.failure_permille) * u64::from(calls);
                if outcome == Outcome::Failure
                    && (consecutive >= config.consecutive_failures.max(1) || ratio_tripped)
                {
                    open
                } else {
                    Breaker::Closed {
                        window_start_ms,
                        calls,
                        failures,
                        consecutive,
                    }
                }
            }
            // Late outcomes of calls made before the breaker opened change nothing.
            (Breaker::Open { .. }, _) => self,
            (Breaker::HalfOpen { .. }, Outcome::Failure) => open,
            (
                Breaker::HalfOpen {
                    since_ms,
                    admitted,
                    succeeded,
                },
                Outcome::Success,
            ) => {
                let succeeded = succeeded.saturating_add(1);
                if succeeded >= config.probes.max(1) {
                    Breaker::Closed {
                        window_start_ms: now_ms,
                        calls: 0,
                        failures: 0,
                        consecutive: 0,
                    }
                } else {
                    Breaker::HalfOpen {
                        since_ms,
                        admitted,
                        succeeded,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: BreakerConfig = BreakerConfig {
        window_ms: 1_000,
        min_calls: 10,
        failure_permille: 500,
        consecutive_failures: 3,
        cooldown_ms: 2_000,
        probes: 2,
    };

    fn fail(b: Breaker, now: i64) -> Breaker {
        b.record(Outcome::Failure, now, &CFG)
    }

    #[test]
    fn consecutive_failures_open_then_half_open_probes_close_it() {
        let mut b = Breaker::default();
        b = fail(fail(b, 0), 1);
        assert!(b.is_closed());
        b = fail(b, 2);
        assert_eq!(b, Breaker::Open { until_ms: 2_002 });
        assert_eq!(
            b.admit(1_000, &CFG).0,
            Admission::FailFast {
                retry_after_ms: 1_002
            }
        );
        let (a1, b1) = b.admit(2_002, &CFG);
        let (a2, b2) = b1.admit(2_003, &CFG);
        let (a3, b3) = b2.admit(2_004, &CFG);
        assert_eq!((a1, a2), (Admission::Probe, Admission::Probe));
        assert_eq!(
            a3,
            Admission::FailFast {
                retry_after_ms: 2_000 - 2
            }
        );
        let b4 = b3.record(Outcome::Success, 2_100, &CFG);
        assert!(matches!(b4, Breaker::HalfOpen { succeeded: 1, .. }));
        assert!(b4.record(Outcome::Success, 2_101, &CFG).is_closed());
        assert_eq!(
            b4.record(Outcome::Failure, 2_101, &CFG),
            Breaker::Open { until_ms: 4_101 }
        );
    }

    #[test]
    fn a_failure_ratio_opens_it_only_after_enough_calls() {
        let mut b = Breaker::default();
        for i in 0..9 {
            b = b.record(
                if i % 2 == 0 {
                    Outcome::Failure
                } else {
                    Outcome::Success
                },
                i,
                &CFG,
            );
        }
        assert!(b.is_closed(), "9 calls are below min_calls");
        b = b.record(Outcome::Success, 9, &CFG);
        assert!(b.is_closed(), "a success never opens it");
        b = fail(b, 10);
        assert!(matches!(b, Breaker::Open { .. }), "6 of 11 failed");
    }

    #[test]
    fn the_window_forgets_old_failures() {
        let mut b = Breaker::default();
        for i in 0..9 {
            b = b.record(
                if i % 3 == 0 {
                    Outcome::Success
                } else {
                    Outcome::Failure
                },
                i,
                &CFG,
            );
        }
        b = b.record(Outcome::Success, 1_500, &CFG);
        b = fail(b, 1_501);
        assert!(b.is_closed());
        assert!(matches!(
            b,
            Breaker::Closed {
                calls: 2,
                failures: 1,
                ..
            }
        ));
    }

    #[test]
    fn lost_probes_are_written_off_after_a_cooldown() {
        let b = Breaker::HalfOpen {
            since_ms: 0,
            admitted: 2,
            succeeded: 0,
        };
        assert!(!b.admit(1_999, &CFG).0.forwards());
        assert_eq!(b.admit(2_000, &CFG).0, Admission::Probe);
        assert_eq!(
            Breaker::Open { until_ms: 5 }.record(Outcome::Success, 1, &CFG),
            Breaker::Open { until_ms: 5 }
        );
    }
}
