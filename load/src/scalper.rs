//! `--scalper`: after the crowd, a motivated scalper plays every attack flashgate must defeat,
//! one after another against the same edge and sale, and the report says per attack how many
//! units it obtained beyond an honest buyer's share (the goal: none) and how many calls it
//! caused at the warehouse (read from its metrics before and after each attack, so the figure is
//! the attack's own).
//!
//! The attacks, each with fresh guest accounts:
//!
//! - `reused-answer`: one solved challenge, many links minted from it, a buy with each;
//! - `stockpiled-challenges`: many challenges fetched and solved up front, then spent;
//! - `buy-cancel-rebuy`: a buy, its cancellation, a new challenge and a buy again, repeatedly;
//! - `self-payment`: the buyer pays its own order through the edge (the old pay route and the
//!   demo one) and the order is checked for `paid`;
//! - `random-sale-ids`: sale views of ids that are not sales;
//! - `direct-edge-listener`: `Seckill/Buy` in native gRPC straight at the warehouse's edge
//!   listener (`--scalper-origin`), for a user of the scalper's choosing, no edge at all.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use anyhow::Context;
use flashgate_core::proto::flashsale::{seckill_client::SeckillClient, BuyOutcome, BuyReq};
use serde::Serialize;
use serde_json::Value;
use tonic::transport::Channel;

use crate::edge::{Answer, HttpClient, Session};

/// How many tries each attack makes.
const TRIES: usize = 5;
/// Sale views of made-up ids in `random-sale-ids`.
const RANDOM_IDS: usize = 200;

/// Where the scalper plays.
pub struct Arena<'a> {
    /// The shared HTTP client.
    pub client: &'a HttpClient,
    /// The edge's base URL.
    pub edge: &'a str,
    /// The sale.
    pub event: i64,
    /// Units one user may get in the sale (an honest buyer's share).
    pub per_user_limit: u64,
    /// The warehouse's metrics URL (origin calls per attack).
    pub metrics: Option<&'a str>,
    /// The warehouse's edge listener, for `direct-edge-listener`.
    pub origin: Option<&'a str>,
    /// The run label, so accounts of several runs do not meet.
    pub label: &'a str,
}

/// What one attack achieved.
#[derive(Debug, Serialize)]
pub struct AttackReport {
    /// The attack's name.
    pub attack: &'static str,
    /// Requests it sent.
    pub requests: u64,
    /// Accounts it used.
    pub accounts: u64,
    /// Units it obtained (won, or paid without a payment).
    pub units: u64,
    /// Units beyond an honest buyer's share for those accounts (the goal: 0).
    pub beyond_share: u64,
    /// Calls the warehouse counted while it ran; `None` without `--warehouse-metrics`.
    pub origin_calls: Option<f64>,
    /// How the edge or the warehouse answered, by kind.
    pub answers: BTreeSet<String>,
}

#[derive(Default)]
struct Outcome {
    requests: u64,
    accounts: u64,
    units: u64,
    answers: BTreeSet<String>,
}

impl Outcome {
    fn saw(&mut self, answer: String) {
        self.requests += 1;
        self.answers.insert(answer);
    }
}

/// Runs every attack in turn.
pub async fn run(arena: &Arena<'_>) -> anyhow::Result<Vec<AttackReport>> {
    let mut reports = Vec::new();
    for attack in [
        "reused-answer",
        "stockpiled-challenges",
        "buy-cancel-rebuy",
        "self-payment",
        "random-sale-ids",
        "direct-edge-listener",
    ] {
        let before = origin_calls(arena).await?;
        let outcome = match attack {
            "reused-answer" => reused_answer(arena).await?,
            "stockpiled-challenges" => stockpiled_challenges(arena).await?,
            "buy-cancel-rebuy" => buy_cancel_rebuy(arena).await?,
            "self-payment" => self_payment(arena).await?,
            "random-sale-ids" => random_sale_ids(arena).await?,
            _ => match arena.origin {
                Some(origin) => direct_edge_listener(arena, origin).await?,
                None => continue,
            },
        };
        let after = origin_calls(arena).await?;
        let share = outcome.accounts * arena.per_user_limit;
        let beyond_share = if attack == "self-payment" {
            // Nothing paid without a payment is anyone's share.
            outcome.units
        } else {
            outcome.units.saturating_sub(share)
        };
        reports.push(AttackReport {
            attack,
            requests: outcome.requests,
            accounts: outcome.accounts,
            units: outcome.units,
            beyond_share,
            origin_calls: before.zip(after).map(|(b, a)| a - b),
            answers: outcome.answers,
        });
    }
    Ok(reports)
}

/// Calls the warehouse counted so far: served requests and those refused before any service.
async fn origin_calls(arena: &Arena<'_>) -> anyhow::Result<Option<f64>> {
    match arena.metrics {
        Some(url) => Ok(Some(
            crate::warehouse_calls(arena.client, url)
                .await
                .context("reading the warehouse's metrics")?,
        )),
        None => Ok(None),
    }
}

/// A signed-in guest account of the scalper's.
async fn account(arena: &Arena<'_>, out: &mut Outcome) -> anyhow::Result<Session> {
    let n = out.accounts;
    out.accounts += 1;
    // Each account from its own network, as a bot farm would: per-network limits do not meet,
    // and a later run (another label) starts from other networks, so its sign-ins do not meet
    // the per-network limits an earlier run's accounts left behind.
    let run = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        arena.label.hash(&mut h);
        h.finish()
    };
    let ip = format!("198.19.{}.{}", 200 + (run + n / 250) % 50, n % 250 + 1);
    let mut session = Session::browser(arena.client, arena.edge, Some(&ip));
    let guest = session.sign_in_as_guest().await?;
    out.requests += 1;
    anyhow::ensure!(guest.ok(), "guest sign-in refused: {}", guest.body);
    Ok(session)
}

/// The order number of a `202` buy, recorded.
fn won(out: &mut Outcome, bought: &crate::edge::Reply) -> Option<String> {
    out.saw(match bought.status {
        202 => "buy 202 QUEUED".to_owned(),
        _ => bought.refusal("buy"),
    });
    (bought.status == 202)
        .then(|| bought.body["order_no"].as_str().map(str::to_owned))
        .flatten()
}

async fn reused_answer(arena: &Arena<'_>) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let session = account(arena, &mut out).await?;
    let challenge = session.challenge(arena.event).await?;
    out.saw(challenge.refusal("challenge"));
    if !challenge.ok() {
        return Ok(out);
    }
    let answer = Session::solve(&challenge).await?;
    let mut orders = BTreeSet::new();
    for _ in 0..TRIES {
        orders.extend(spend(arena, &session, &answer, &mut out).await?);
    }
    out.units = orders.len() as u64;
    Ok(out)
}

async fn stockpiled_challenges(arena: &Arena<'_>) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let session = account(arena, &mut out).await?;
    let mut answers = Vec::new();
    for _ in 0..TRIES {
        let challenge = session.challenge(arena.event).await?;
        out.saw(challenge.refusal("challenge"));
        if challenge.ok() {
            answers.push(Session::solve(&challenge).await?);
        }
    }
    let mut orders = BTreeSet::new();
    for answer in &answers {
        orders.extend(spend(arena, &session, answer, &mut out).await?);
    }
    out.units = orders.len() as u64;
    Ok(out)
}

/// A link minted from `answer`, and a buy with it: the order number when it was won.
async fn spend(
    arena: &Arena<'_>,
    session: &Session,
    answer: &Answer,
    out: &mut Outcome,
) -> anyhow::Result<Option<String>> {
    let link = session.link(arena.event, answer).await?;
    out.saw(link.refusal("link"));
    if !link.ok() {
        return Ok(None);
    }
    let bought = session.buy(&link).await?;
    Ok(won(out, &bought))
}

/// Challenge, proof of work, link, buy: the order number when it was won.
async fn purchase(
    arena: &Arena<'_>,
    session: &Session,
    out: &mut Outcome,
) -> anyhow::Result<Option<String>> {
    let challenge = session.challenge(arena.event).await?;
    out.saw(challenge.refusal("challenge"));
    if !challenge.ok() {
        return Ok(None);
    }
    let answer = Session::solve(&challenge).await?;
    spend(arena, session, &answer, out).await
}

async fn buy_cancel_rebuy(arena: &Arena<'_>) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let session = account(arena, &mut out).await?;
    let mut orders = BTreeSet::new();
    for _ in 0..TRIES {
        let Some(order_no) = purchase(arena, &session, &mut out).await? else {
            continue;
        };
        orders.insert(order_no.clone());
        let cancelled = session
            .order_action(&format!("/api/orders/{order_no}/cancel"))
            .await?;
        out.saw(cancelled.refusal("cancel"));
    }
    // Every unit won counts, cancelled or not: cancelling and winning again is what the attack
    // is after (a pool tied up in unpaid orders, rebought as they come back).
    out.units = orders.len() as u64;
    Ok(out)
}

async fn self_payment(arena: &Arena<'_>) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let session = account(arena, &mut out).await?;
    let Some(order_no) = purchase(arena, &session, &mut out).await? else {
        return Ok(out);
    };
    for path in [
        format!("/api/orders/{order_no}/pay"),
        format!("/api/demo/orders/{order_no}/pay"),
    ] {
        let paid = session.order_action(&path).await?;
        out.saw(paid.refusal("pay"));
    }
    let order = session.order(&order_no).await?;
    out.saw(order.refusal("order"));
    if order.body["status"].as_str() == Some("paid") {
        out.units = order.body["qty"].as_u64().unwrap_or(1);
    }
    Ok(out)
}

async fn random_sale_ids(arena: &Arena<'_>) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let session = account(arena, &mut out).await?;
    // A fixed-stride walk over ids far from real ones: random enough, and runs repeat.
    for i in 0..RANDOM_IDS as i64 {
        let id = 7_000_000_000 + i * 7_919;
        let view = session
            .send("GET", &format!("/api/events/{id}"), "")
            .await?;
        out.saw(view.refusal("view"));
    }
    Ok(out)
}

async fn direct_edge_listener(arena: &Arena<'_>, origin: &str) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let channel = Channel::from_shared(origin.replace("grpc://", "http://"))?
        .connect()
        .await
        .with_context(|| format!("connect to {origin}"))?;
    let mut seckill = SeckillClient::new(channel);
    out.accounts = 1;
    for r in 0..TRIES {
        let req = BuyReq {
            event_id: arena.event,
            user_id: format!("{}-scalper-direct", arena.label),
            qty: 1,
            request_id: format!("direct-{r}"),
        };
        match seckill.buy(req).await {
            Ok(reply) => {
                let outcome = reply.into_inner().outcome();
                if outcome == BuyOutcome::Queued {
                    out.units += 1;
                }
                out.saw(format!("grpc OK {}", outcome.as_str_name()));
            }
            Err(status) => out.saw(format!("grpc {:?}", status.code())),
        }
    }
    Ok(out)
}

/// The attacks as a table.
pub fn render(reports: &[AttackReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  scalper           attack                 requests  units  beyond share  origin calls"
    );
    for r in reports {
        let calls = r
            .origin_calls
            .map_or_else(|| "n/a".to_owned(), |c| format!("{c:.0}"));
        let _ = writeln!(
            out,
            "                    {:<22} {:>8} {:>6} {:>13} {:>13}",
            r.attack, r.requests, r.units, r.beyond_share, calls
        );
        let answers: Vec<&str> = r.answers.iter().map(String::as_str).collect();
        let _ = writeln!(out, "                      answers: {}", answers.join(", "));
    }
    out
}

/// Whether any attack obtained more than an honest share.
pub fn any_succeeded(reports: &[AttackReport]) -> bool {
    reports.iter().any(|r| r.beyond_share > 0)
}

/// For the JSON report.
pub fn to_json(reports: &[AttackReport]) -> Value {
    serde_json::to_value(reports).unwrap_or(Value::Null)
}
