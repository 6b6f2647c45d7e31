//! The crowd through a sale's waiting room (`--waiting-room`), played as the storefront plays it:
//! guest identity, challenge, proof of work, a place in line (`POST /api/events/{id}/queue`),
//! polls (`GET …/queue` with the place token) until admitted, sold out or ended, then the buy
//! with the purchase link the admitted poll carries, and the payment side's confirmation.
//!
//! Who arrives when: buyers join at a moment of their own in the first four fifths of the
//! pre-queue window (a fixed spread by buyer number, so runs repeat), and poll as they are told
//! (`poll_after_ms`), asking, as the page does, for each poll to be held until its news changes
//! (`x-flashgate-wait-ms`, [`Room::hold`]; an edge that cannot hold answers at once). Bots are a farm that does what a scalper would: every bot joins the moment
//! the line opens and polls every [`BOT_POLL`], whatever it is told. A fair room gives both the
//! same chance per person: the report sets the bots' share of the units won beside their share
//! of the crowd, and the rank correlation of buyers' admission order with their join order (near
//! 0: joining early bought nothing).
//!
//! Payments: a winner's order is paid through `Seckill/PayOrder` on the warehouse's internal
//! listener (`--admin`), as the shop's payment side would, so held units turn sold and the
//! sale can be told sold out (a sale is sold out only when nothing held could come back).
//!
//! What it deliberately does not do: decode place tokens or read the line from the warehouse.
//! Everything it reports is what a buyer could see from the outside, plus the origin's metrics.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use flashgate_core::place;
use flashgate_core::proto::flashsale::{seckill_client::SeckillClient, PayOrderReq};
use serde::Serialize;
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::edge::{Answer, HttpClient, Reply, Session};
use crate::report::Tally;

/// How often a bot polls, whatever the edge advises.
pub const BOT_POLL: Duration = Duration::from_millis(100);
/// The header the place token travels in.
const PLACE_HEADER: &str = "x-flashgate-place";
/// The header a poll asks to be held with.
const WAIT_HEADER: &str = "x-flashgate-wait-ms";

/// One run's fixed facts.
pub struct Room {
    /// The sale.
    pub event: i64,
    /// When the line opened (the run's start) and when the sale starts.
    pub opened: Instant,
    /// How long the pre-queue lasts.
    pub prequeue: Duration,
    /// A buyer gives up waiting after this long.
    pub patience: Duration,
    /// The payment side (the warehouse's internal listener).
    pub payments: Channel,
    /// The unit price the payment side confirms.
    pub price: i64,
    /// How long a buyer's poll asks to be held (`None`: polls that ask for no hold).
    pub hold: Option<Duration>,
    /// The longest a buyer takes to buy once admitted (each takes a fixed share of it, as a
    /// person reads the page and clicks); bots buy at once.
    pub think: Duration,
}

/// Who an actor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A person at the storefront.
    Buyer,
    /// A scalper's bot.
    Bot,
}

/// One member of the crowd.
pub struct Member {
    /// A buyer or a bot.
    pub kind: Kind,
    /// Its number (spreads buyers' joins).
    pub n: usize,
    /// Its client address (`CF-Connecting-IP`), if the run gives one.
    pub client_ip: Option<String>,
}

/// What one actor lived through, in time since the line opened.
#[derive(Debug, Clone)]
struct Journey {
    kind: Kind,
    /// When the join that got the place was sent, after the line opened.
    joined: Option<Duration>,
    /// Whether the place was drawn (a pre-queue place), as its token's ticket says.
    drawn: bool,
    /// The place's ticket, as its token says: its place in the line, which admissions and
    /// openings follow.
    ticket: Option<u64>,
    admitted: Option<Duration>,
    won: bool,
    /// When the payment side confirmed its order: the last one is the sell-out.
    paid: Option<Duration>,
    told_sold_out: Option<Duration>,
    polls: u64,
    /// Answers `429`/`503` tried again after their `retry_after`.
    retries: u64,
    /// Each poll's round trip at the edge, of polls that asked for no hold.
    poll_latencies: Vec<Duration>,
    /// Each poll's round trip, of polls that asked to be held.
    held_latencies: Vec<Duration>,
}

/// Every actor's journey, shared while they run.
#[derive(Clone, Default)]
pub struct Journeys(Arc<Mutex<Vec<Journey>>>);

/// When buyer `n` joins: a fixed point in the first four fifths of the window.
fn buyer_delay(n: usize, prequeue: Duration) -> Duration {
    // Knuth's multiplicative hash: evenly spread, repeatable.
    let spread = (n as u64).wrapping_mul(2_654_435_761) % 10_000;
    prequeue.mul_f64(0.8 * spread as f64 / 10_000.0)
}

/// How long buyer `n` takes to buy once admitted: a fixed share of `think`, spread evenly over
/// the crowd and independent of when it joined.
fn think_time(n: usize, think: Duration) -> Duration {
    // A second multiplicative hash (Fibonacci's), so the think time does not follow the join
    // time of `buyer_delay`.
    let spread = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54;
    think.mul_f64(spread as f64 / 1_024.0)
}

/// Plays one actor through the room.
pub async fn play(
    room: &Room,
    client: &HttpClient,
    base: &str,
    member: &Member,
    tally: &Tally,
    journeys: &Journeys,
) {
    let kind = member.kind;
    let mut journey = Journey {
        kind,
        joined: None,
        drawn: false,
        ticket: None,
        admitted: None,
        won: false,
        paid: None,
        told_sold_out: None,
        polls: 0,
        retries: 0,
        poll_latencies: Vec::new(),
        held_latencies: Vec::new(),
    };
    let session = Session::browser(client, base, member.client_ip.as_deref());
    let outcome = match walk(room, session, member.n, tally, &mut journey).await {
        Ok(outcome) => outcome,
        Err(e) => format!("error: {e}"),
    };
    let who = match kind {
        Kind::Buyer => "",
        Kind::Bot => "bot ",
    };
    tally.record(&format!("{who}{outcome}"), Duration::ZERO, true);
    journeys
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(journey);
}

/// The steps; returns the outcome the actor is tallied under.
async fn walk(
    room: &Room,
    mut session: Session,
    n: usize,
    tally: &Tally,
    journey: &mut Journey,
) -> anyhow::Result<String> {
    let guest = session.sign_in_as_guest().await?;
    tally.record_step(guest.latency);
    if !guest.ok() {
        return Ok(guest.refusal("guest"));
    }
    if journey.kind == Kind::Buyer {
        tokio::time::sleep_until((room.opened + buyer_delay(n, room.prequeue)).into()).await;
    }
    // A busy shop (503) or a limit (429) is tried again after the wait it asks for, as a
    // person at the page would, until the actor's patience runs out.
    let give_up = room.opened + room.prequeue + room.patience;
    let joined = loop {
        let challenge = session.challenge(room.event).await?;
        tally.record_step(challenge.latency);
        let answered = if challenge.ok() {
            let answer = Session::solve(&challenge).await?;
            let asked = room.opened.elapsed();
            let joined = join(&session, room.event, &answer).await?;
            tally.record_step(joined.latency);
            if joined.ok() {
                journey.joined = Some(asked);
                break joined;
            }
            (joined, "join")
        } else {
            (challenge, "challenge")
        };
        let (refused, step) = answered;
        match refused.try_again_after() {
            Some(wait) if Instant::now() + wait < give_up => {
                journey.retries += 1;
                tokio::time::sleep(wait).await;
            }
            _ => return Ok(refused.refusal(step)),
        }
    };
    let place = joined.text("place")?.to_owned();
    let ticket = place::ticket_of(&place);
    journey.drawn = ticket.is_some_and(|t| t.is_drawn());
    journey.ticket = ticket.map(|t| t.get());
    let mut seen = joined;
    loop {
        match seen.text("state")? {
            "admitted" => {
                journey.admitted = Some(room.opened.elapsed());
                if journey.kind == Kind::Buyer {
                    tokio::time::sleep(think_time(n, room.think)).await;
                }
                return buy(room, &session, &seen, tally, journey).await;
            }
            "sold_out" => {
                journey.told_sold_out = Some(room.opened.elapsed());
                return Ok("queue sold_out".into());
            }
            "waiting" => {}
            other => return Ok(format!("queue {other}")),
        }
        if Instant::now() >= give_up {
            return Ok("gave up waiting".into());
        }
        let wait = match journey.kind {
            Kind::Bot => BOT_POLL,
            Kind::Buyer => {
                Duration::from_millis(seen.body["poll_after_ms"].as_u64().unwrap_or(1_000))
            }
        };
        tokio::time::sleep(wait).await;
        // Bots ask for no hold: an answer at once, as often as they dare, is what they want.
        let hold = room.hold.filter(|_| journey.kind == Kind::Buyer);
        let mut polled = poll(&session, room.event, &place, hold).await?;
        journey.polls += 1;
        journey.record_poll(&polled, hold, tally);
        while let Some(wait) = polled.try_again_after() {
            if Instant::now() + wait >= give_up {
                return Ok(polled.refusal("poll"));
            }
            journey.retries += 1;
            tokio::time::sleep(wait).await;
            polled = poll(&session, room.event, &place, hold).await?;
            journey.polls += 1;
            journey.record_poll(&polled, hold, tally);
        }
        if !polled.ok() {
            return Ok(polled.refusal("poll"));
        }
        seen = polled;
    }
}

/// `POST /api/events/{event}/queue` with a solved challenge.
async fn join(session: &Session, event: i64, answer: &Answer) -> anyhow::Result<Reply> {
    let body = json!({ "challenge": answer.challenge, "nonce": answer.nonce }).to_string();
    session
        .send("POST", &format!("/api/events/{event}/queue"), &body)
        .await
}

impl Journey {
    /// Counts a poll's round trip among the held or the unheld ones.
    fn record_poll(&mut self, polled: &Reply, hold: Option<Duration>, tally: &Tally) {
        match hold {
            Some(_) => self.held_latencies.push(polled.latency),
            None => {
                self.poll_latencies.push(polled.latency);
                tally.record_step(polled.latency);
            }
        }
    }
}

/// `GET /api/events/{event}/queue` with the place token, asking to be held for `hold`.
async fn poll(
    session: &Session,
    event: i64,
    place: &str,
    hold: Option<Duration>,
) -> anyhow::Result<Reply> {
    let wait = hold.map(|h| h.as_millis().to_string());
    let mut headers = vec![(PLACE_HEADER, place)];
    if let Some(wait) = &wait {
        headers.push((WAIT_HEADER, wait));
    }
    session
        .send_with("GET", &format!("/api/events/{event}/queue"), "", &headers)
        .await
}

/// The admitted buy, then the payment side's confirmation.
async fn buy(
    room: &Room,
    session: &Session,
    admitted: &Reply,
    tally: &Tally,
    journey: &mut Journey,
) -> anyhow::Result<String> {
    let path = admitted.body["link"]["path"]
        .as_str()
        .with_context(|| format!("an admitted place without a link: {}", admitted.body))?;
    // A busy answer may hide a buy the warehouse took: the same link again is the same
    // purchase (its request id is the link's nonce), as the page retries it.
    let give_up = room.opened + room.prequeue + room.patience;
    let mut bought = session.send("POST", path, "{}").await?;
    tally.record_step(bought.latency);
    while let Some(wait) = bought.try_again_after() {
        if Instant::now() + wait >= give_up {
            break;
        }
        journey.retries += 1;
        tokio::time::sleep(wait).await;
        bought = session.send("POST", path, "{}").await?;
        tally.record_step(bought.latency);
    }
    if bought.status != 202 {
        if bought.code() == "sold_out" {
            journey.told_sold_out = Some(room.opened.elapsed());
        }
        return Ok(bought.refusal("buy"));
    }
    journey.won = true;
    tally.won(1);
    let order_no = bought.text("order_no")?.to_owned();
    pay(room, &order_no).await?;
    journey.paid = Some(room.opened.elapsed());
    Ok("QUEUED, paid".into())
}

/// Confirms the order's payment as the payment side does, retrying while the order worker has
/// not created it yet (`FAILED_PRECONDITION` "still being created").
async fn pay(room: &Room, order_no: &str) -> anyhow::Result<()> {
    let mut payments = SeckillClient::new(room.payments.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let request = PayOrderReq {
            order_no: order_no.to_owned(),
            user_id: String::new(),
            payment_id: format!("load-{order_no}"),
            amount: room.price,
        };
        match payments.pay_order(request).await {
            Ok(_) => return Ok(()),
            Err(status)
                if status.code() == tonic::Code::FailedPrecondition
                    && status.message().contains("being created")
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => anyhow::bail!("paying {order_no}: {status}"),
        }
    }
}

/// What the room did for the crowd (`queue` in the report).
#[derive(Debug, Serialize)]
pub struct RoomReport {
    /// Actors who got a place, buyers and bots.
    pub joined_buyers: u64,
    /// Bots with a place.
    pub joined_bots: u64,
    /// Actors admitted.
    pub admitted: u64,
    /// Units buyers won.
    pub units_buyers: u64,
    /// Units bots won.
    pub units_bots: u64,
    /// The bots' share of the crowd that got a place.
    pub bot_share_of_crowd: f64,
    /// Places drawn (taken in the pre-queue, as their tokens' tickets say): buyers.
    pub drawn_buyers: u64,
    /// Places drawn: bots.
    pub drawn_bots: u64,
    /// The bots' share of the drawn places: what a fair draw gives them of the units the
    /// drawn places win (a buyer who joined after the start queues behind every drawn place).
    pub bot_share_of_drawn: f64,
    /// The bots' share of the units won.
    pub bot_share_of_units: f64,
    /// Bots among the line's first places, as many as there were units won: what the draw
    /// alone gives the bots when the units go to the front of the line.
    pub front_bots: u64,
    /// Units won by places behind the line's first ones (a place ahead gave up or was too slow
    /// for its admission): 0 when the front bought everything.
    pub won_behind_front: u64,
    /// Spearman's rank correlation of drawn buyers' places in the line (their tickets, which
    /// admissions and openings follow in order) with their join order (near 0 when joining
    /// early buys nothing).
    pub line_vs_join_rho: Option<f64>,
    /// Actors told sold out while waiting (or at the buy).
    pub told_sold_out: u64,
    /// From the sell-out (the last winner's payment confirmed: nothing left, nothing held) to
    /// the last waiting actor told sold out, seconds (0 when everyone knew by then).
    pub sold_out_lag_s: Option<f64>,
    /// Polls sent.
    pub polls: u64,
    /// Busy (`503`) and limited (`429`) answers tried again after their `retry_after`.
    pub retries: u64,
    /// A poll's round trip at the edge, median and 99th percentile, ms, of the polls that
    /// asked for no hold (bots' polls when buyers ask to be held).
    pub poll_p50_ms: Option<f64>,
    /// See `poll_p50_ms`.
    pub poll_p99_ms: Option<f64>,
    /// Polls that asked to be held.
    pub held_polls: u64,
    /// How long a poll that asked to be held took to come back, median and 99th percentile, ms
    /// (the hold's news, or its time).
    pub held_p50_ms: Option<f64>,
    /// See `held_p50_ms`.
    pub held_p99_ms: Option<f64>,
}

impl Journeys {
    /// The report over every journey.
    pub fn report(&self) -> RoomReport {
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let joined = |k: Kind| {
            all.iter()
                .filter(|j| j.kind == k && j.joined.is_some())
                .count() as u64
        };
        let units = |k: Kind| all.iter().filter(|j| j.kind == k && j.won).count() as u64;
        let (joined_buyers, joined_bots) = (joined(Kind::Buyer), joined(Kind::Bot));
        let drawn = |k: Kind| all.iter().filter(|j| j.kind == k && j.drawn).count() as u64;
        let (drawn_buyers, drawn_bots) = (drawn(Kind::Buyer), drawn(Kind::Bot));
        let (units_buyers, units_bots) = (units(Kind::Buyer), units(Kind::Bot));
        let share = |part: u64, whole: u64| part as f64 / whole.max(1) as f64;
        let sold_out_at = all.iter().filter_map(|j| j.paid).max();
        let last_told = all.iter().filter_map(|j| j.told_sold_out).max();
        let mut poll_latencies: Vec<Duration> = all
            .iter()
            .flat_map(|j| j.poll_latencies.iter().copied())
            .collect();
        let mut held_latencies: Vec<Duration> = all
            .iter()
            .flat_map(|j| j.held_latencies.iter().copied())
            .collect();
        let drawn_buyers_order: Vec<(f64, f64)> = all
            .iter()
            .filter(|j| j.kind == Kind::Buyer && j.drawn)
            .filter_map(|j| Some((j.joined?.as_secs_f64(), j.ticket? as f64)))
            .collect();
        let places: Vec<(u64, Kind, bool)> = all
            .iter()
            .filter_map(|j| Some((j.ticket?, j.kind, j.won)))
            .collect();
        let (front_bots, won_behind_front) = front_of_line(places, units_buyers + units_bots);
        RoomReport {
            front_bots,
            won_behind_front,
            joined_buyers,
            joined_bots,
            admitted: all.iter().filter(|j| j.admitted.is_some()).count() as u64,
            units_buyers,
            units_bots,
            bot_share_of_crowd: share(joined_bots, joined_buyers + joined_bots),
            drawn_buyers,
            drawn_bots,
            bot_share_of_drawn: share(drawn_bots, drawn_buyers + drawn_bots),
            bot_share_of_units: share(units_bots, units_buyers + units_bots),
            line_vs_join_rho: spearman(&drawn_buyers_order),
            told_sold_out: all.iter().filter(|j| j.told_sold_out.is_some()).count() as u64,
            sold_out_lag_s: match (sold_out_at, last_told) {
                (Some(at), Some(told)) => Some(told.saturating_sub(at).as_secs_f64()),
                _ => None,
            },
            polls: all.iter().map(|j| j.polls).sum(),
            retries: all.iter().map(|j| j.retries).sum(),
            poll_p50_ms: percentile_ms(&mut poll_latencies, 0.50),
            poll_p99_ms: percentile_ms(&mut poll_latencies, 0.99),
            held_polls: held_latencies.len() as u64,
            held_p50_ms: percentile_ms(&mut held_latencies, 0.50),
            held_p99_ms: percentile_ms(&mut held_latencies, 0.99),
        }
    }
}

impl RoomReport {
    /// The report as table lines.
    pub fn render(&self) -> String {
        let rho = self
            .line_vs_join_rho
            .map_or("n/a".to_owned(), |r| format!("{r:+.3}"));
        let lag = self
            .sold_out_lag_s
            .map_or("n/a".to_owned(), |s| format!("{s:.2} s"));
        let ms = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.2}"));
        let (p50, p99) = (ms(self.poll_p50_ms), ms(self.poll_p99_ms));
        let (held50, held99) = (ms(self.held_p50_ms), ms(self.held_p99_ms));
        format!(
            "  waiting room\n    places          {} buyers, {} bots ({:.1} % bots)\n    drawn places    {} buyers, {} bots ({:.1} % bots; drawn, by their tickets)\n    admitted        {}\n    units won       {} buyers, {} bots ({:.1} % bots)\n    line's front    {} bots among its first {} places; units won behind them {}\n    line order vs join order (drawn buyers, Spearman)  {rho}\n    told sold out   {} (the last {lag} after the sell-out)\n    polls           {}   (not held, ms: p50 {p50}, p99 {p99}; {} asked to be held, back after ms: p50 {held50}, p99 {held99}); busy or limited answers tried again {}\n",
            self.joined_buyers,
            self.joined_bots,
            100.0 * self.bot_share_of_crowd,
            self.drawn_buyers,
            self.drawn_bots,
            100.0 * self.bot_share_of_drawn,
            self.admitted,
            self.units_buyers,
            self.units_bots,
            100.0 * self.bot_share_of_units,
            self.front_bots,
            self.units_buyers + self.units_bots,
            self.won_behind_front,
            self.told_sold_out,
            self.polls,
            self.held_polls,
            self.retries,
        )
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Of `places` (ticket, who, whether it won), sorted into the line: the bots among the first `n`,
/// and the places after them that won.
fn front_of_line(mut places: Vec<(u64, Kind, bool)>, n: u64) -> (u64, u64) {
    places.sort_unstable_by_key(|p| p.0);
    let n = (n as usize).min(places.len());
    let (front, behind) = places.split_at(n);
    let bots = front.iter().filter(|p| p.1 == Kind::Bot).count() as u64;
    let won = behind.iter().filter(|p| p.2).count() as u64;
    (bots, won)
}

/// The `p` quantile of `latencies` in ms (sorts them), `None` when there are none.
fn percentile_ms(latencies: &mut [Duration], p: f64) -> Option<f64> {
    latencies.sort_unstable();
    let at = ((latencies.len().checked_sub(1)?) as f64 * p).round() as usize;
    Some(latencies[at].as_secs_f64() * 1_000.0)
}

/// Average ranks (ties share the mean of their positions), 1-based.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = mean;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman's ρ of the pairs (Pearson's correlation of their ranks); `None` under 3 pairs or
/// when one side does not vary.
fn spearman(pairs: &[(f64, f64)]) -> Option<f64> {
    if pairs.len() < 3 {
        return None;
    }
    let xs = ranks(&pairs.iter().map(|p| p.0).collect::<Vec<_>>());
    let ys = ranks(&pairs.iter().map(|p| p.1).collect::<Vec<_>>());
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in xs.iter().zip(&ys) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_front_of_the_line_is_its_lowest_tickets() {
        let places = vec![
            (30, Kind::Bot, false),
            (10, Kind::Buyer, true),
            (20, Kind::Bot, true),
            (40, Kind::Buyer, true),
            (50, Kind::Bot, false),
        ];
        // Three units won: the first three tickets hold two bots, and ticket 40 won behind them.
        assert_eq!(front_of_line(places.clone(), 3), (2, 1));
        assert_eq!(front_of_line(places.clone(), 0), (0, 3));
        assert_eq!(front_of_line(places, 9), (3, 0));
    }

    #[test]
    fn think_times_spread_over_the_window_and_do_not_follow_the_joins() {
        let think = Duration::from_secs(20);
        let times: Vec<Duration> = (0..1_000).map(|n| think_time(n, think)).collect();
        assert!(times.iter().all(|t| *t < think));
        let early = times.iter().filter(|t| **t < think / 2).count();
        assert!(
            (400..600).contains(&early),
            "{early} of 1000 in the first half"
        );
        let pairs: Vec<(f64, f64)> = (0..1_000)
            .map(|n| {
                let joins = buyer_delay(n, Duration::from_secs(20)).as_secs_f64();
                (joins, times[n].as_secs_f64())
            })
            .collect();
        let rho = spearman(&pairs).expect("spread");
        assert!(rho.abs() < 0.1, "think time follows join time: {rho}");
        assert_eq!(think_time(7, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn spearman_is_one_for_the_same_order_and_minus_one_reversed() {
        let same: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, (i * i) as f64)).collect();
        assert!((spearman(&same).unwrap() - 1.0).abs() < 1e-12);
        let reversed: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, -(i as f64))).collect();
        assert!((spearman(&reversed).unwrap() + 1.0).abs() < 1e-12);
    }

    #[test]
    fn poll_percentiles_are_of_the_sorted_latencies() {
        let mut none: Vec<Duration> = Vec::new();
        assert_eq!(percentile_ms(&mut none, 0.99), None);
        let mut some: Vec<Duration> = [40, 10, 30, 20, 50].map(Duration::from_millis).to_vec();
        assert_eq!(percentile_ms(&mut some, 0.5), Some(30.0));
        assert_eq!(percentile_ms(&mut some, 0.99), Some(50.0));
        assert_eq!(percentile_ms(&mut some, 0.0), Some(10.0));
    }

    #[test]
    fn spearman_shares_ranks_between_ties() {
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        // Admissions seen in one poll round tie; a tie on one side is not a correlation.
        let pairs = [(1.0, 5.0), (2.0, 5.0), (3.0, 5.0), (4.0, 6.0)];
        assert!(spearman(&pairs).unwrap() > 0.0);
        assert_eq!(spearman(&[(1.0, 1.0), (2.0, 1.0), (3.0, 1.0)]), None);
    }

    #[test]
    fn buyers_spread_their_joins_over_four_fifths_of_the_window() {
        let window = Duration::from_secs(10);
        let delays: Vec<Duration> = (0..1000).map(|n| buyer_delay(n, window)).collect();
        assert!(delays.iter().all(|d| *d < window.mul_f64(0.8)));
        let early = delays.iter().filter(|d| **d < window.mul_f64(0.4)).count();
        assert!(
            (400..600).contains(&early),
            "{early} of 1000 in the first half"
        );
    }
}
