//! `flashgate-load`: plays a flash-sale crowd — buyers and bots — against the warehouse (gRPC)
//! or an edge (HTTP, the Worker's or the Spin component's API), shows progress while it runs,
//! and ends with a table (or `--json`): requests, outcomes by kind, throughput, latency
//! percentiles, origin calls per edge request, and oversold units, which must be 0.
//!
//! Buyers: in warehouse mode one `Seckill.Buy` each (retried with the same request id when the
//! call fails, as a real client would); in edge mode the whole browser path — guest identity,
//! proof-of-work challenge solved here, purchase link, buy. Bots: in warehouse mode a user firing
//! several buys with different request ids (the per-user limit must hold); in edge mode an
//! automation client posting forged purchase links (the edge must refuse it).
//!
//! Arrival: `spike` lets everyone in at once (bounded by `--concurrency`), `steady` admits
//! `--rate` actors per second.
//!
//! Several targets (`--target` with a comma-separated list) share one crowd: actor `i` (in
//! arrival order) plays against target `i mod n`, as a load balancer in front of several
//! warehouses or edges would spread it. `--put-sale` creates the sale first, so a benchmark needs
//! nothing but a running warehouse. `--scalper` plays a scalper's attacks after the crowd (see
//! [`scalper`]).
//!
//! `--waiting-room MS` (edge mode, with `--put-sale`) sells through the sale's waiting room with
//! a pre-queue of MS milliseconds: buyers and a bot farm join the line and poll as [`queue`]
//! describes, and the report adds what the room did (bots' share of units against their share of
//! the crowd, admission order against join order, how soon the last waiting buyer learned the
//! sale was sold out).

mod edge;
mod queue;
mod report;
mod scalper;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use flashgate_core::proto::flashsale::{
    admin_client::AdminClient, seckill_client::SeckillClient, BuyOutcome, BuyReq, Event, EventReq,
    PutSkuStockReq, SkuLedgerReq,
};
use flashgate_core::warehouse::service::now_ms;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;
use tonic::transport::Channel;

use edge::{HttpClient, Session};
use report::Tally;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Arrival {
    /// Everyone arrives at once.
    Spike,
    /// `--rate` actors per second.
    Steady,
}

/// Plays a flash-sale crowd against the warehouse or an edge.
#[derive(Debug, Parser)]
#[command(name = "flashgate-load", version)]
struct Args {
    /// `grpc://HOST:PORT` (the warehouse's internal listener, native gRPC, no token) or
    /// `http://HOST:PORT` (an edge); several of one kind, separated by commas, share the crowd
    /// (actor i goes to target i mod n).
    #[arg(long, default_value = "grpc://127.0.0.1:50051")]
    target: String,
    /// The sale to buy from.
    #[arg(long, default_value_t = 1)]
    event: i64,
    /// Buyers in the crowd.
    #[arg(long, default_value_t = 1000)]
    buyers: usize,
    /// Bots in the crowd.
    #[arg(long, default_value_t = 100)]
    bots: usize,
    /// Requests a bot fires.
    #[arg(long, default_value_t = 5)]
    bot_requests: usize,
    /// How the crowd arrives.
    #[arg(long, value_enum, default_value_t = Arrival::Spike)]
    arrival: Arrival,
    /// Actors admitted per second with `--arrival steady`.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Actors in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The warehouse's internal listener (native gRPC), for the sale's ledger (oversold units).
    /// In warehouse mode it defaults to the (first) target.
    #[arg(long)]
    admin: Option<String>,
    /// Before the crowd, create sale `--event` through the admin API: `SKU:POOL:SUBPOOLS` puts
    /// POOL units of SKU on sale now, for an hour, one per user, split in SUBPOOLS sub-pools
    /// (1: one pool). The SKU's on-hand total is set to POOL.
    #[arg(long, value_parser = parse_put_sale)]
    put_sale: Option<PutSale>,
    /// The warehouse's metrics URL, for origin calls per edge request.
    #[arg(long)]
    warehouse_metrics: Option<String>,
    /// Edge mode against a local `wrangler dev`: give buyers this many distinct client addresses
    /// (`CF-Connecting-IP` from the benchmarking range 198.18.0.0/15), as a real crowd comes from
    /// many networks; 0 sends none (every buyer is this machine, one per-IP limit for all).
    #[arg(long, default_value_t = 0)]
    client_ips: u32,
    /// A run label: user ids are `LABEL-buyer-N`, so runs against one sale do not collide.
    #[arg(long, default_value = "crowd")]
    label: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Edge mode: after the crowd, play a scalper's attacks (reused answers, stockpiled
    /// challenges, buy-cancel-rebuy, self-payment, random sale ids, direct calls to the edge
    /// listener) and report per attack the units obtained beyond an honest share and the origin
    /// calls caused. Needs --admin; fails the run when an attack gains anything.
    #[arg(long)]
    scalper: bool,
    /// The warehouse's edge listener (`grpc://HOST:PORT`), for the scalper's direct calls.
    #[arg(long)]
    scalper_origin: Option<String>,
    /// Edge mode with `--put-sale` and `--admin`: the sale has a waiting room whose pre-queue
    /// opens now and lasts this many milliseconds (the sale starts then); the crowd plays the
    /// line (see the `queue` module), winners are paid through `--admin` as the payment side.
    #[arg(long)]
    waiting_room: Option<u64>,
    /// With `--waiting-room`: how long after the start a buyer keeps waiting.
    #[arg(long, default_value_t = 120)]
    patience_s: u64,
    /// With `--waiting-room`: how long a buyer's poll asks to be held until its news changes,
    /// ms, as the storefront asks (0: polls that ask for no hold).
    #[arg(long, default_value_t = 20_000)]
    hold_ms: u64,
    /// With `--waiting-room`: the longest a buyer takes to buy once admitted, ms (each buyer a
    /// fixed share of it, as people read and click; bots buy at once).
    #[arg(long, default_value_t = 0)]
    buyer_think_ms: u64,
}

/// The unit price `--put-sale` sets.
const PUT_SALE_PRICE: i64 = 1999;

/// The `--put-sale` setting.
#[derive(Debug, Clone, Copy)]
struct PutSale {
    sku: i64,
    pool: i32,
    subpools: i32,
}

fn parse_put_sale(s: &str) -> Result<PutSale, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [sku, pool, subpools] = parts[..] else {
        return Err("expected SKU:POOL:SUBPOOLS".into());
    };
    let bad = |what: &str| format!("{what} is not a valid number in {s:?}");
    let sale = PutSale {
        sku: sku.parse().map_err(|_| bad("SKU"))?,
        pool: pool.parse().map_err(|_| bad("POOL"))?,
        subpools: subpools.parse().map_err(|_| bad("SUBPOOLS"))?,
    };
    if sale.sku <= 0 || sale.pool < 0 || sale.subpools < 1 {
        return Err("need SKU > 0, POOL >= 0 and SUBPOOLS >= 1".into());
    }
    Ok(sale)
}

/// Creates the sale `--put-sale` describes, open from a second ago for an hour.
async fn put_sale(
    admin: &mut AdminClient<Channel>,
    event: i64,
    sale: PutSale,
    waiting_room: Option<u64>,
) -> anyhow::Result<()> {
    admin
        .put_sku_stock(PutSkuStockReq {
            sku_id: sale.sku,
            num: sale.pool,
        })
        .await
        .context("--put-sale: putting stock")?;
    let start_ms = match waiting_room {
        Some(prequeue_ms) => now_ms() + prequeue_ms as i64,
        None => now_ms() - 1_000,
    };
    admin
        .put_event(Event {
            id: event,
            sku_id: sale.sku,
            pool: sale.pool,
            start_ms,
            end_ms: start_ms + 3_600_000,
            per_user_limit: 1,
            pay_window_ms: 3_600_000,
            subpools: sale.subpools,
            price: PUT_SALE_PRICE,
            currency: "EUR".into(),
            waiting_room: waiting_room.is_some(),
            prequeue_ms: waiting_room.unwrap_or(0) as i64,
            ..Default::default()
        })
        .await
        .context("--put-sale: creating the sale")?;
    Ok(())
}

#[derive(Clone)]
enum Target {
    Warehouse(Channel),
    Edge { base: String, http: Box<HttpClient> },
}

#[derive(Clone, Copy)]
enum Actor {
    Buyer(usize),
    Bot(usize),
}

async fn grpc_channel(url: &str) -> anyhow::Result<Channel> {
    let http = url.replace("grpc://", "http://");
    Channel::from_shared(http.clone())?
        .connect()
        .await
        .with_context(|| format!("connect to {http}"))
}

async fn buyer(target: &Target, args: &Args, n: usize, tally: &Tally) {
    let user = format!("{}-buyer-{n}", args.label);
    match target {
        Target::Warehouse(channel) => {
            let mut client = SeckillClient::new(channel.clone());
            let req = BuyReq {
                event_id: args.event,
                user_id: user,
                qty: 1,
                request_id: format!("req-{n}"),
            };
            for attempt in 0..3 {
                let started = Instant::now();
                match client.buy(req.clone()).await {
                    Ok(reply) => {
                        let reply = reply.into_inner();
                        tally.record(outcome_name(reply.outcome()), started.elapsed(), true);
                        if reply.outcome() == BuyOutcome::Queued {
                            tally.won(1);
                        }
                        return;
                    }
                    Err(status) => {
                        tally.record(
                            &format!("grpc {:?}", status.code()),
                            started.elapsed(),
                            attempt == 2,
                        );
                    }
                }
            }
        }
        Target::Edge { base, http: client } => {
            if let Err(e) = edge_buyer(
                client,
                base,
                args.event,
                client_ip(args, n).as_deref(),
                tally,
            )
            .await
            {
                tally.record(&format!("error: {e}"), Duration::ZERO, true);
            }
        }
    }
}

/// Buyer `n`'s client address with `--client-ips`, from 198.18.0.0/15.
fn client_ip(args: &Args, n: usize) -> Option<String> {
    (args.client_ips > 0).then(|| {
        let k = n as u32 % args.client_ips;
        format!(
            "198.{}.{}.{}",
            18 + (k >> 16) % 2,
            (k >> 8) & 0xff,
            k & 0xff
        )
    })
}

/// The browser's path through the edge: guest identity, challenge, proof of work, link, buy.
async fn edge_buyer(
    client: &HttpClient,
    base: &str,
    event: i64,
    client_ip: Option<&str>,
    tally: &Tally,
) -> anyhow::Result<()> {
    let mut session = Session::browser(client, base, client_ip);
    let guest = session.sign_in_as_guest().await?;
    tally.record_step(guest.latency);
    if !guest.ok() {
        tally.record(&guest.refusal("guest"), Duration::ZERO, true);
        return Ok(());
    }
    let challenge = session.challenge(event).await?;
    tally.record_step(challenge.latency);
    if !challenge.ok() {
        tally.record(&challenge.refusal("challenge"), Duration::ZERO, true);
        return Ok(());
    }
    let answer = Session::solve(&challenge).await?;
    let link = session.link(event, &answer).await?;
    tally.record_step(link.latency);
    if !link.ok() {
        tally.record(&link.refusal("link"), Duration::ZERO, true);
        return Ok(());
    }
    let bought = session.buy(&link).await?;
    let name = match bought.status {
        202 => "QUEUED".to_owned(),
        _ => bought.refusal("buy"),
    };
    if bought.status == 202 {
        tally.won(1);
    }
    tally.record(&name, bought.latency, true);
    Ok(())
}

async fn bot(target: &Target, args: &Args, n: usize, tally: &Tally) {
    for r in 0..args.bot_requests {
        let started = Instant::now();
        match target {
            Target::Warehouse(channel) => {
                // One user, many request ids: the per-user limit must hold.
                let req = BuyReq {
                    event_id: args.event,
                    user_id: format!("{}-bot-{n}", args.label),
                    qty: 1,
                    request_id: format!("bot-{r}"),
                };
                match SeckillClient::new(channel.clone()).buy(req).await {
                    Ok(reply) => {
                        let outcome = reply.into_inner().outcome();
                        if outcome == BuyOutcome::Queued {
                            tally.won(1);
                        }
                        tally.record(
                            &format!("bot {}", outcome_name(outcome)),
                            started.elapsed(),
                            true,
                        );
                    }
                    Err(status) => tally.record(
                        &format!("bot grpc {:?}", status.code()),
                        started.elapsed(),
                        true,
                    ),
                }
            }
            Target::Edge { base, http: client } => {
                let forged = format!("/api/buy/AAAA{n}x{r}");
                let script = Session::automation(client, base);
                let name = match script.send("POST", &forged, "{}").await {
                    Ok(reply) => reply.refusal("bot"),
                    Err(e) => format!("bot error: {e}"),
                };
                tally.record(&name, started.elapsed(), true);
            }
        }
    }
}

fn outcome_name(outcome: BuyOutcome) -> &'static str {
    outcome.as_str_name()
}

/// Calls the warehouse counted, from its metrics text: served requests and calls refused
/// before any service (origin signature, listener rules).
pub(crate) async fn warehouse_calls(client: &HttpClient, url: &str) -> anyhow::Result<f64> {
    let request = http::Request::get(url).body(Full::new(Bytes::new()))?;
    let body = client
        .request(request)
        .await?
        .into_body()
        .collect()
        .await?
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    Ok(text
        .lines()
        .filter(|l| {
            [
                "flashgate_requests_total{",
                "flashgate_origin_refusals_total{",
            ]
            .iter()
            .any(|family| l.starts_with(family))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let http_client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let urls: Vec<&str> = args
        .target
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    let warehouse_mode = urls.iter().all(|u| u.starts_with("grpc://"));
    if urls.is_empty() || !(warehouse_mode || urls.iter().all(|u| u.starts_with("http://"))) {
        bail!(
            "--target must be grpc:// URLs (warehouses) or http:// URLs (edges), \
             one or several of one kind separated by commas"
        );
    }
    let mut targets = Vec::with_capacity(urls.len());
    for url in &urls {
        targets.push(if warehouse_mode {
            Target::Warehouse(grpc_channel(url).await?)
        } else {
            Target::Edge {
                base: url.trim_end_matches('/').to_owned(),
                http: Box::new(http_client.clone()),
            }
        });
    }
    let admin_url = args
        .admin
        .clone()
        .or_else(|| warehouse_mode.then(|| urls[0].to_owned()));
    let mut admin = match &admin_url {
        Some(url) => Some(AdminClient::new(grpc_channel(url).await?)),
        None => None,
    };
    if let Some(sale) = args.put_sale {
        let admin = admin
            .as_mut()
            .context("--put-sale needs the warehouse: pass --admin in edge mode")?;
        put_sale(admin, args.event, sale, args.waiting_room).await?;
    }
    let room = match (args.waiting_room, warehouse_mode, &admin_url) {
        (None, ..) => None,
        (Some(_), true, _) => bail!("--waiting-room plays against an edge: pass http:// --target"),
        (Some(_), false, None) => bail!("--waiting-room needs --admin (the payment side)"),
        (Some(prequeue_ms), false, Some(url)) => {
            if args.put_sale.is_none() {
                bail!("--waiting-room needs --put-sale (the run opens the line)");
            }
            Some(Arc::new(queue::Room {
                event: args.event,
                opened: Instant::now(),
                prequeue: Duration::from_millis(prequeue_ms),
                patience: Duration::from_secs(args.patience_s),
                payments: grpc_channel(url).await?,
                price: PUT_SALE_PRICE,
                hold: (args.hold_ms > 0).then(|| Duration::from_millis(args.hold_ms)),
                think: Duration::from_millis(args.buyer_think_ms),
            }))
        }
    };
    let journeys = queue::Journeys::default();
    let origin_before = match &args.warehouse_metrics {
        Some(url) => Some(warehouse_calls(&http_client, url).await?),
        None => None,
    };

    let mut actors: Vec<Actor> = (0..args.buyers).map(Actor::Buyer).collect();
    actors.extend((0..args.bots).map(Actor::Bot));
    // Interleave bots with buyers, as a real crowd would be: a fixed stride, so runs repeat.
    actors.sort_by_key(|a| match a {
        Actor::Buyer(n) => n * (args.bots + 1),
        Actor::Bot(n) => n * (args.buyers + 1) + 1,
    });

    let bar = ProgressBar::new(actors.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} actors  {per_sec}  {msg}",
        )
        .expect("valid template"),
    );
    if args.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let tally = Tally::default();
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut actors_by_target = vec![0u64; targets.len()];
    for (i, actor) in actors.into_iter().enumerate() {
        if args.arrival == Arrival::Steady {
            let due = started + Duration::from_secs_f64(i as f64 / f64::from(args.rate.max(1)));
            tokio::time::sleep_until(due.into()).await;
        }
        // In line, everyone waits at once: the bound on actors in flight is the page's own.
        let permit = match room {
            Some(_) => None,
            None => Some(gate.clone().acquire_owned().await.expect("semaphore open")),
        };
        let lane = i % targets.len();
        actors_by_target[lane] += 1;
        let target = targets[lane].clone();
        let (args, tally, bar) = (args.clone(), tally.clone(), bar.clone());
        let (room, journeys) = (room.clone(), journeys.clone());
        tasks.spawn(async move {
            match (actor, &room, &target) {
                (actor, Some(room), Target::Edge { base, http }) => {
                    let (kind, n) = match actor {
                        Actor::Buyer(n) => (queue::Kind::Buyer, n),
                        Actor::Bot(n) => (queue::Kind::Bot, args.buyers + n),
                    };
                    let member = queue::Member {
                        kind,
                        n,
                        client_ip: client_ip(&args, n),
                    };
                    queue::play(room, http, base, &member, &tally, &journeys).await
                }
                (Actor::Buyer(n), ..) => buyer(&target, &args, n, &tally).await,
                (Actor::Bot(n), ..) => bot(&target, &args, n, &tally).await,
            }
            bar.inc(1);
            bar.set_message(format!("{} won", tally.wins()));
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    bar.finish_and_clear();

    let origin_calls = match (&args.warehouse_metrics, origin_before) {
        (Some(url), Some(before)) => Some(warehouse_calls(&http_client, url).await? - before),
        _ => None,
    };
    let mut report = tally.report(elapsed, args.buyers, args.bots, origin_calls);
    report.actors_by_target = urls
        .iter()
        .map(|u| (*u).to_owned())
        .zip(actors_by_target)
        .collect();
    let mut per_user_limit = None;
    if let Some(mut admin) = admin {
        let event = admin
            .get_event(EventReq { id: args.event })
            .await?
            .into_inner();
        let sale = event.event.context("event definition")?;
        per_user_limit = Some(u64::try_from(sale.per_user_limit).unwrap_or(0));
        let ledger = admin
            .get_sku_ledger(SkuLedgerReq {
                sku_id: sale.sku_id,
            })
            .await?
            .into_inner();
        let conserved =
            ledger.available + ledger.pools + ledger.locked + ledger.sold == ledger.total;
        // Units this run won beyond what the sale had left is overselling; so is a broken ledger.
        let won = report.won as i64;
        let taken = i64::from(sale.pool) - i64::from(event.remaining);
        report.oversold = Some((won - taken).max(0) + i64::from(!conserved) * won.max(1));
        report.sale = Some(BTreeMap::from([
            ("pool".to_owned(), i64::from(sale.pool)),
            ("remaining".to_owned(), i64::from(event.remaining)),
            ("locked".to_owned(), ledger.locked),
            ("sold".to_owned(), ledger.sold),
            ("conserved".to_owned(), i64::from(conserved)),
        ]));
    }
    let attacks = match (&targets[0], args.scalper) {
        (Target::Edge { base, http }, true) => {
            let arena = scalper::Arena {
                client: http,
                edge: base,
                event: args.event,
                per_user_limit: per_user_limit.context("--scalper needs --admin")?,
                metrics: args.warehouse_metrics.as_deref(),
                origin: args.scalper_origin.as_deref(),
                label: &args.label,
            };
            Some(scalper::run(&arena).await?)
        }
        (_, true) => bail!("--scalper plays against an edge: pass an http:// --target"),
        _ => None,
    };
    let room_report = room.as_ref().map(|_| journeys.report());
    if args.json {
        let mut json = serde_json::to_value(&report)?;
        if let Some(attacks) = &attacks {
            json["scalper"] = scalper::to_json(attacks);
        }
        if let Some(room) = &room_report {
            json["queue"] = room.to_json();
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{}", report.render(&args.target));
        if let Some(room) = &room_report {
            print!("{}", room.render());
        }
        if let Some(attacks) = &attacks {
            print!("{}", scalper::render(attacks));
        }
    }
    if report.oversold.unwrap_or(0) != 0 {
        bail!("oversold units: {:?}", report.oversold);
    }
    if attacks.as_deref().is_some_and(scalper::any_succeeded) {
        bail!("a scalper's attack obtained units beyond an honest share");
    }
    Ok(())
}
