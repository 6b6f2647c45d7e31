//! The route steps of the decide pipeline, one function per `/api` route, each run after the
//! shared checks (shape, bots, network and global limits, and for all but the sale view and the
//! guest door, the user token and its limit).
//!
//! Each returns the edge's own answer, a refusal, or the forward to the warehouse. What it
//! deliberately does not do: parse paths (see [`route`](super::route)) or read the warehouse's
//! replies (see [`Gate::complete`]).

use super::origin::Call;
use super::response::{ok_json, sale_response, NO_STORE};
use super::state::{GateState, SaleEntry, SaleView};
use super::{refuse, Gate, Request, Shopper, Step, Verdict};
use crate::bot::BotVerdict;
use crate::hex;
use crate::limit::LimitKey;
use crate::link::{self, Expect, LinkClaims, LinkVerdict};
use crate::pow::{self, PowVerdict};
use crate::proto::flashsale::{BuyReq, OrderReq};
use crate::refusal::{Reason, Refusal};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub(super) struct LinkBody<'a> {
    pub(super) challenge: &'a str,
    pub(super) nonce: u64,
}

#[derive(Deserialize, Default)]
struct BuyBody {
    #[serde(default)]
    qty: Option<u32>,
}

/// A purchase link as the client gets it.
#[derive(Debug, Serialize)]
pub(super) struct Minted {
    pub(super) token: String,
    pub(super) path: String,
    pub(super) max_qty: u16,
    pub(super) expires_ms: i64,
}

/// A `200` for this user only.
pub(super) fn private(body: &impl Serialize) -> Step<Verdict> {
    Ok(Verdict::Respond(ok_json(200, body, NO_STORE)))
}

impl Gate {
    /// `GET /api/events/{id}`: the cached view, or a forward that answers with the fresh one.
    pub(super) fn event(&self, state: &mut GateState, id: i64, now: i64) -> Step<Verdict> {
        let sale = self.sale(state, id, now, true)?;
        Ok(Verdict::Respond(sale_response(&sale, now)))
    }

    /// `POST /api/session/guest`: a guest identity, in demo mode only.
    pub(super) fn guest(&self, req: &Request<'_>) -> Step<Verdict> {
        let id = hex(&req.entropy[..12]);
        match self
            .config
            .identity
            .mint_guest(&id, req.now_ms, self.config.guest_ttl_ms)
        {
            Ok((user, token)) => {
                #[derive(Serialize)]
                struct Guest<'a> {
                    token: &'a str,
                    user_id: &'a str,
                    expires_ms: i64,
                }
                let body = Guest {
                    token: &token,
                    user_id: &user.id,
                    expires_ms: user.expires_ms,
                };
                private(&body)
            }
            Err(_) => Err(refuse(Reason::NotFound)),
        }
    }

    /// The per-sale limit, then the sale (cached or fetched first).
    pub(super) fn sale_of(&self, state: &mut GateState, who: &Shopper, id: i64) -> Step<SaleView> {
        let now = who.req.now_ms;
        let quota = &self.config.limits.event;
        self.limit(state, who.pass, LimitKey::Event(id), quota, now)?;
        self.sale(state, id, now, false)
    }

    /// [`Gate::sale_of`], open or (for a challenge) upcoming.
    fn open_sale_of(
        &self,
        state: &mut GateState,
        who: &Shopper,
        id: i64,
        allow_upcoming: bool,
    ) -> Step<SaleView> {
        let sale = self.sale_of(state, who, id)?;
        Self::open_sale(&sale, who.req.now_ms, allow_upcoming)?;
        Ok(sale)
    }

    fn required_bits(&self, bot: BotVerdict) -> u8 {
        let extra = if bot == BotVerdict::Challenge {
            self.config.bot_extra_bits
        } else {
            0
        };
        self.config
            .difficulty
            .floor_bits
            .saturating_add(extra)
            .min(pow::MAX_BITS)
    }

    /// `POST /api/events/{id}/challenge`: a proof-of-work challenge, harder under load. It lives
    /// `challenge_ttl_ms` from now, also before the sale opens: the page may solve it during the
    /// countdown, but nothing solved long before the start is spendable at the start.
    ///
    /// A waiting-room sale whose pool is empty is not sold out while units held by unpaid orders
    /// may come back (the line admits the next places then, and a join needs a challenge): the
    /// instance's copy of the line says when it is, at one `Queue/GetQueue` a refresh.
    pub(super) fn challenge(&self, state: &mut GateState, who: &Shopper, id: i64) -> Step<Verdict> {
        let (req, user) = (who.req, &who.user);
        let now = req.now_ms;
        let mut sale = self.sale_of(state, who, id)?;
        if sale.waiting_room && sale.sold_out && now >= sale.start_ms && now < sale.end_ms {
            let line = self.snapshot(state, id, now)?;
            sale.sold_out = line.sold_out;
        }
        Self::open_sale(&sale, now, true)?;
        let load = self
            .config
            .difficulty
            .bits(state.traffic.rate(now), sale.remaining, sale.pool);
        let bits = load.max(self.required_bits(who.bot));
        let challenge = pow::Challenge {
            event_id: id,
            user_id: user.id.clone(),
            seed: req.entropy[..16].try_into().expect("16 bytes"),
            bits,
            expires_ms: now.saturating_add(self.config.challenge_ttl_ms),
        };
        let token = pow::issue(&self.config.pow_keys, &challenge)
            .ok_or_else(|| refuse(Reason::BadRequest))?;
        #[derive(Serialize)]
        struct Issued<'a> {
            challenge: &'a str,
            bits: u8,
            expires_ms: i64,
            starts_ms: i64,
        }
        let body = Issued {
            challenge: &token,
            bits,
            expires_ms: challenge.expires_ms,
            starts_ms: sale.start_ms,
        };
        private(&body)
    }

    /// `POST /api/events/{id}/link`: a solved challenge for a purchase link. The link's nonce is
    /// the challenge's ([`pow::Challenge::link_nonce`]): every link one answer buys is the same
    /// purchase, however often it is asked for.
    pub(super) fn link(&self, state: &mut GateState, who: &Shopper, id: i64) -> Step<Verdict> {
        let (req, user) = (who.req, &who.user);
        let now = req.now_ms;
        let answer: LinkBody<'_> =
            serde_json::from_slice(req.body).map_err(|_| refuse(Reason::BadRequest))?;
        let sale = self.open_sale_of(state, who, id, false)?;
        // A waiting room's links come with admitted places (`GET …/queue`), never for a solved
        // challenge alone: that is what makes the line the way in.
        if sale.waiting_room {
            return Err(refuse(Reason::QueueRequired));
        }
        let solved = self.solved(who, id, &answer)?;
        let minted = self
            .mint_link(&sale, &user.id, solved.link_nonce(), sale.end_ms, now)
            .map_err(Verdict::Refuse)?;
        private(&minted)
    }

    /// The challenge `answer` solves for this user and sale, or the refusal.
    pub(super) fn solved(
        &self,
        who: &Shopper,
        id: i64,
        answer: &LinkBody<'_>,
    ) -> Step<pow::Challenge> {
        let verdict = pow::verify(
            &self.config.pow_keys,
            answer.challenge,
            answer.nonce,
            &who.user.id,
            id,
            self.required_bits(who.bot),
            who.req.now_ms,
        );
        match verdict {
            PowVerdict::Valid(challenge) => Ok(challenge),
            PowVerdict::Expired => Err(refuse(Reason::ChallengeExpired)),
            _ => Err(refuse(Reason::ChallengeRequired)),
        }
    }

    /// A purchase link for `user` in `sale` carrying `nonce`, expiring after the link lifetime
    /// or at `until_ms`, whichever is first (never past the sale's end).
    pub(super) fn mint_link(
        &self,
        sale: &SaleView,
        user: &str,
        nonce: [u8; 16],
        until_ms: i64,
        now: i64,
    ) -> Result<Minted, Refusal> {
        let claims = LinkClaims {
            event_id: sale.id,
            sku_id: sale.sku_id,
            user_id: user.to_owned(),
            max_qty: sale.per_user_limit.clamp(1, u32::from(u16::MAX)) as u16,
            not_before_ms: sale.start_ms,
            expires_ms: now
                .saturating_add(self.config.link_ttl_ms)
                .min(sale.end_ms)
                .min(until_ms),
            nonce,
        };
        let token = match link::mint(&self.config.link_keys, &claims, now) {
            Ok(token) => token,
            Err(link::MintRefusal::SaleNotStarted { wait_ms }) => {
                return Err(Refusal::after(Reason::TooEarly, wait_ms))
            }
            Err(link::MintRefusal::InvalidClaims) => return Err(Refusal::new(Reason::BadRequest)),
        };
        Ok(Minted {
            path: format!("/api/buy/{token}"),
            token,
            max_qty: claims.max_qty,
            expires_ms: claims.expires_ms,
        })
    }

    /// `POST /api/buy/{token}`: a purchase through a link, forwarded unless the sale is known to
    /// be sold out, over or not yet open.
    pub(super) fn buy(&self, state: &mut GateState, who: &Shopper, token: &str) -> Step<Verdict> {
        let (req, user) = (who.req, &who.user);
        let now = req.now_ms;
        let body: BuyBody = if req.body.iter().all(u8::is_ascii_whitespace) {
            BuyBody::default()
        } else {
            serde_json::from_slice(req.body).map_err(|_| refuse(Reason::BadRequest))?
        };
        let qty = body.qty.unwrap_or(1);
        let expect = Expect {
            user_id: &user.id,
            event_id: None,
            qty,
        };
        let claims = match link::verify(&self.config.link_keys, token, &expect, now) {
            LinkVerdict::Valid(claims) => claims,
            LinkVerdict::NotYetValid { wait_ms } => {
                return Err(Verdict::Refuse(Refusal::after(Reason::TooEarly, wait_ms)))
            }
            LinkVerdict::Expired => return Err(refuse(Reason::LinkExpired)),
            LinkVerdict::QtyTooLarge => return Err(refuse(Reason::QtyTooLarge)),
            _ => return Err(refuse(Reason::BadLink)),
        };
        let limits = &self.config.limits;
        let pass = who.pass;
        self.limit(
            state,
            pass,
            LimitKey::Event(claims.event_id),
            &limits.event,
            now,
        )?;
        self.limit(state, pass, LimitKey::Sku(claims.sku_id), &limits.sku, now)?;
        // The sold-out flag and the window: any remembered view will do (views are dropped
        // after `sale_memory_ms`); with none, fetch it first, so that a sold-out sale is known
        // again from one cheap `GetEvent` and its buyers never reach `Buy`.
        match state.sales.get(&claims.event_id) {
            // A link binds its sale's SKU: one minted for another definition of the sale is
            // not this sale's.
            Some(SaleEntry {
                sale: Some(sale), ..
            }) if sale.sku_id != claims.sku_id => return Err(refuse(Reason::BadLink)),
            // A waiting-room sale's buys are bounded by its admissions, so an empty pool does
            // not stop them here: a buy tried again after a busy answer may be one the
            // warehouse took (its order holds a unit), and only the warehouse can answer it
            // with that order. Sold out for good (nothing held either, as the line's copy
            // says) still does.
            Some(SaleEntry {
                sale: Some(sale), ..
            }) if sale.waiting_room => {
                if state.line_sold_out(claims.event_id) {
                    return Err(refuse(Reason::SoldOut));
                }
                let pool_may_refill = SaleView {
                    sold_out: false,
                    ..*sale
                };
                Self::open_sale(&pool_may_refill, now, false)?
            }
            Some(SaleEntry {
                sale: Some(sale), ..
            }) => Self::open_sale(sale, now, false)?,
            Some(SaleEntry { sale: None, .. }) => return Err(refuse(Reason::UnknownResource)),
            None => {
                self.sale(state, claims.event_id, now, false)?;
            }
        }
        let message = BuyReq {
            event_id: claims.event_id,
            user_id: user.id.clone(),
            qty: qty as i32,
            // One answer, one purchase: every link minted from one solved challenge carries its
            // nonce, so a retried buy returns the same order and one for another quantity is
            // ALREADY_EXISTS at the warehouse.
            request_id: format!("link-{}", hex(&claims.nonce)),
        };
        let message = match self.gather_buy(state, claims.event_id, message, now) {
            Ok(gathered) => return Ok(gathered),
            Err(alone) => alone,
        };
        Ok(self.forward(
            state,
            Call::Buy {
                event_id: claims.event_id,
            },
            &message,
            now,
        ))
    }

    /// `GET /api/orders/{no}`, its `cancel`, and in demo mode its demo payment: forwarded as
    /// the user's own.
    pub(super) fn order(
        &self,
        state: &mut GateState,
        who: &Shopper,
        no: &str,
        call: Call,
    ) -> Step<Verdict> {
        let message = OrderReq {
            order_no: no.to_owned(),
            user_id: who.user.id.clone(),
        };
        Ok(self.forward(state, call, &message, who.req.now_ms))
    }
}
