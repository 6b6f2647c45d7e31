//! What a crowd run saw: a tally shared by the actors while they run, and the report it becomes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

#[derive(Default)]
struct Inner {
    requests: u64,
    outcomes: BTreeMap<String, u64>,
    latencies_us: Vec<u64>,
    won: u64,
}

/// Counts shared by every actor of a run.
#[derive(Clone, Default)]
pub struct Tally(Arc<Mutex<Inner>>);

impl Tally {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One request and its latency; `last` marks the answer that decides the actor's outcome.
    pub fn record(&self, outcome: &str, latency: Duration, last: bool) {
        let mut inner = self.inner();
        if latency > Duration::ZERO {
            inner.requests += 1;
            inner.latencies_us.push(latency.as_micros() as u64);
        }
        if last {
            *inner.outcomes.entry(outcome.to_owned()).or_default() += 1;
        }
    }

    /// An intermediate request of an edge buyer (guest, challenge, link).
    pub fn record_step(&self, latency: Duration) {
        let mut inner = self.inner();
        inner.requests += 1;
        inner.latencies_us.push(latency.as_micros() as u64);
    }

    /// Units won.
    pub fn won(&self, units: u64) {
        self.inner().won += units;
    }

    /// Units won so far.
    pub fn wins(&self) -> u64 {
        self.inner().won
    }

    /// The report of the run.
    pub fn report(
        &self,
        elapsed: Duration,
        buyers: usize,
        bots: usize,
        origin_calls: Option<f64>,
    ) -> Report {
        let mut inner = self.inner();
        inner.latencies_us.sort_unstable();
        let pct = |p: f64| -> f64 {
            let l = &inner.latencies_us;
            if l.is_empty() {
                0.0
            } else {
                l[((l.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
            }
        };
        Report {
            buyers,
            bots,
            requests: inner.requests,
            elapsed_s: elapsed.as_secs_f64(),
            throughput_rps: inner.requests as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_ms: pct(0.50),
            p95_ms: pct(0.95),
            p99_ms: pct(0.99),
            outcomes: inner.outcomes.clone(),
            won: inner.won,
            origin_calls,
            origin_calls_per_request: origin_calls.map(|c| c / (inner.requests.max(1) as f64)),
            oversold: None,
            sale: None,
            actors_by_target: BTreeMap::new(),
        }
    }
}

/// The end-of-run report (`--json` prints it as is).
#[derive(Debug, Serialize)]
pub struct Report {
    /// Buyers in the crowd.
    pub buyers: usize,
    /// Bots in the crowd.
    pub bots: usize,
    /// Requests sent.
    pub requests: u64,
    /// Wall time of the run.
    pub elapsed_s: f64,
    /// Requests per second.
    pub throughput_rps: f64,
    /// Latency percentiles over every request.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Each actor's final outcome, by kind.
    pub outcomes: BTreeMap<String, u64>,
    /// Units won.
    pub won: u64,
    /// Requests the warehouse counted during the run (edge mode with --warehouse-metrics).
    pub origin_calls: Option<f64>,
    /// Origin calls per request sent.
    pub origin_calls_per_request: Option<f64>,
    /// Units won beyond what the sale gave away (must be 0); `None` without --admin.
    pub oversold: Option<i64>,
    /// The sale's figures after the run.
    pub sale: Option<BTreeMap<String, i64>>,
    /// Actors each target played against (the crowd is spread over the targets).
    pub actors_by_target: BTreeMap<String, u64>,
}

impl Report {
    /// The report as a table.
    pub fn render(&self, target: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "flashgate crowd against {target}: {} buyers, {} bots",
            self.buyers, self.bots
        );
        let _ = writeln!(
            out,
            "  requests        {:>10}   in {:.2} s = {:.0} req/s",
            self.requests, self.elapsed_s, self.throughput_rps
        );
        let _ = writeln!(
            out,
            "  latency ms      p50 {:.2}   p95 {:.2}   p99 {:.2}",
            self.p50_ms, self.p95_ms, self.p99_ms
        );
        let _ = writeln!(out, "  outcomes");
        for (outcome, n) in &self.outcomes {
            let _ = writeln!(out, "    {outcome:<32} {n:>8}");
        }
        if self.actors_by_target.len() > 1 {
            let split: Vec<String> = self
                .actors_by_target
                .iter()
                .map(|(t, n)| format!("{t} {n}"))
                .collect();
            let _ = writeln!(out, "  actors          {}", split.join(", "));
        }
        let _ = writeln!(out, "  units won       {:>10}", self.won);
        if let (Some(calls), Some(per)) = (self.origin_calls, self.origin_calls_per_request) {
            let _ = writeln!(
                out,
                "  origin calls    {calls:>10}   ({per:.3} per edge request)"
            );
        }
        if let Some(sale) = &self.sale {
            let figures: Vec<String> = sale.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(out, "  sale after      {}", figures.join(", "));
        }
        match self.oversold {
            Some(n) => {
                let _ = writeln!(out, "  oversold units  {n:>10}   (must be 0)");
            }
            None => {
                let _ = writeln!(
                    out,
                    "  oversold units         n/a   (pass --admin to check the ledger)"
                );
            }
        }
        out
    }
}
