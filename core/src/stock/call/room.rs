//! The calls of a sale's waiting room: its settings (`room_put.lua`), a join, a move of the line
//! and a claim (`room_join.lua`, `room_move.lua`, `room_claim.lua`), all in the sale's slot (a
//! room sale has one pool, so its shard is the SKU's own).

use super::{malformed, num, status, Call, ReplyResult};
use super::{ROOM_CLAIM, ROOM_JOIN, ROOM_MOVE, ROOM_PUT};
use crate::admission::{Rules, Ticket, RATE_WINDOW_MS};
use crate::stock::room::ROOM_RETAIN_MS;
use crate::stock::room::{Joined, Moved, Place, PlaceState, Snapshot, MOVE_MAX_ADMITS};
use crate::stock::{Keys, Sale};

/// `room_put.lua`: a sale's room settings (`None`: the sale has no waiting room).
pub fn put_room(keys: &Keys, sale: &Sale, rules: Option<&Rules>) -> Call {
    let args = match rules {
        Some(r) => [
            r.prequeue_ms.to_string(),
            r.admit_factor.to_string(),
            r.admission_ttl_ms.to_string(),
        ],
        None => [String::new(), "0".into(), "0".into()],
    };
    let mut args = args.to_vec();
    args.push(sale.end_ms.saturating_add(ROOM_RETAIN_MS).to_string());
    Call::new(
        &ROOM_PUT,
        vec![
            keys.room(sale.sku, sale.id),
            keys.room_places(sale.sku, sale.id),
            keys.room_pending(sale.sku, sale.id),
        ],
        args,
    )
}

/// The settings as `HMGET room prequeue factor ttl` reads them back; `None` without a room.
pub fn parse_room_rules(fields: &[Option<String>]) -> ReplyResult<Option<Rules>> {
    let [Some(prequeue), Some(factor), Some(ttl)] = fields else {
        return Ok(None);
    };
    Ok(Some(Rules {
        prequeue_ms: num(prequeue)?,
        admit_factor: u32::try_from(num(factor)?).map_err(|_| malformed("room factor"))?,
        admission_ttl_ms: num(ttl)?,
    }))
}

/// The KEYS join and claim share.
fn place_keys(keys: &Keys, (sku, event): (i64, i64)) -> Vec<String> {
    vec![
        keys.event(sku, event),
        keys.room(sku, event),
        keys.room_places(sku, event),
        keys.room_pending(sku, event),
    ]
}

/// `room_join.lua`: `user` joins sale `event` of `sku`, with the drawn ticket the caller
/// computed under the draw secret (used only in the pre-queue).
pub fn join_room(
    keys: &Keys,
    (sku, event): (i64, i64),
    user: &str,
    drawn: Ticket,
    now_ms: i64,
) -> Call {
    Call::new(
        &ROOM_JOIN,
        place_keys(keys, (sku, event)),
        vec![
            event.to_string(),
            user.to_owned(),
            drawn.score().to_string(),
            now_ms.to_string(),
            ROOM_RETAIN_MS.to_string(),
        ],
    )
}

/// `room_claim.lua`: where `user`'s place in sale `event` of `sku` stands.
pub fn claim_room(keys: &Keys, (sku, event): (i64, i64), user: &str, now_ms: i64) -> Call {
    Call::new(
        &ROOM_CLAIM,
        place_keys(keys, (sku, event)),
        vec![event.to_string(), user.to_owned(), now_ms.to_string()],
    )
}

/// The reply of a join or a claim: `{state, score, rank, detail, new, from}`.
pub fn parse_place(reply: &[String]) -> ReplyResult<Joined> {
    let state = status(reply)?;
    let [_, score, rank, detail, new, from] = reply else {
        return Err(malformed(format!("room place reply {reply:?}")));
    };
    let detail = num(detail)?;
    let state = match state {
        "WAITING" => PlaceState::Waiting,
        "ADMITTED" => PlaceState::Admitted {
            from_ms: num(from)?,
            until_ms: detail,
        },
        "SOLD_OUT" => PlaceState::SoldOut,
        "ENDED" => PlaceState::Ended,
        "TOO_EARLY" => PlaceState::TooEarly { opens_ms: detail },
        "LAPSED" => PlaceState::Lapsed,
        "NO_PLACE" => PlaceState::NoPlace,
        other => return Err(malformed(format!("room place state {other:?}"))),
    };
    let unsigned = |s: &str| -> ReplyResult<Option<u64>> {
        match s {
            "" => Ok(None),
            s => u64::try_from(num(s)?)
                .map(Some)
                .map_err(|_| malformed(format!("room reply number {s:?}"))),
        }
    };
    Ok(Joined {
        place: Place {
            state,
            ticket: unsigned(score)?.map(Ticket::from_score),
            rank: unsigned(rank)?,
        },
        new: new == "1",
    })
}

/// `room_move.lua`: one move of sale `event`'s line at `now_ms`.
pub fn move_room(keys: &Keys, (sku, event): (i64, i64), now_ms: i64) -> Call {
    Call::new(
        &ROOM_MOVE,
        vec![
            keys.event(sku, event),
            keys.room(sku, event),
            keys.room_places(sku, event),
            keys.room_pending(sku, event),
            keys.event_users(sku, event),
            keys.orderbook(sku),
        ],
        vec![
            event.to_string(),
            now_ms.to_string(),
            MOVE_MAX_ADMITS.to_string(),
            ROOM_RETAIN_MS.to_string(),
            RATE_WINDOW_MS.to_string(),
        ],
    )
}

/// `room_move.lua`'s reply.
pub fn parse_move(reply: &[String]) -> ReplyResult<Moved> {
    status(reply)?;
    if reply.len() != 16 {
        return Err(malformed(format!("room_move reply {reply:?}")));
    }
    let n: Vec<u64> = reply[1..]
        .iter()
        .map(|s| u64::try_from(num(s)?).map_err(|_| malformed(format!("room_move number {s:?}"))))
        .collect::<ReplyResult<_>>()?;
    let [places, drawn, admitted, through, pending, remaining, held, sold_out, rate, admits, lapsed, bought, opened, opened_through, opens] =
        n[..]
    else {
        unreachable!("15 numbers")
    };
    Ok(Moved {
        snapshot: Snapshot {
            places,
            drawn,
            admitted,
            through: (admitted > 0).then(|| Ticket::from_score(through)),
            opened,
            opened_through: (opened > 0).then(|| Ticket::from_score(opened_through)),
            pending,
            remaining,
            held,
            sold_out: sold_out == 1,
            rate_milli_per_s: rate,
        },
        admitted: admits,
        lapsed,
        bought,
        opened: opens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stock::Currency;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn every_room_script_works_in_its_sales_slot() {
        let keys = Keys::new("fg");
        let sale = Sale {
            id: 3,
            sku: 7,
            pool: 1,
            start_ms: 1_000,
            end_ms: 2_000,
            per_user_limit: 1,
            pay_window_ms: 1_000,
            subpools: 1,
            price: 0,
            currency: Currency::parse("EUR").expect("a currency"),
            limit_counts_held: false,
        };
        let rules = Rules {
            prequeue_ms: 500,
            admit_factor: 2,
            admission_ttl_ms: 30_000,
        };
        let calls = [
            put_room(&keys, &sale, Some(&rules)),
            put_room(&keys, &sale, None),
            join_room(&keys, (7, 3), "ann", Ticket::arrival(0), 5),
            claim_room(&keys, (7, 3), "ann", 5),
            move_room(&keys, (7, 3), 5),
        ];
        for call in &calls {
            for key in &call.keys {
                assert_eq!(keys.sku_of(key), Some(7), "{key}");
                assert!(key.contains("{sku:7}"), "{key}");
            }
        }
        assert_eq!(calls[0].args, strings(&["500", "2", "30000", "3602000"]));
        assert_eq!(calls[1].args[0], "");
        assert_eq!(calls[2].args[2], (1u64 << 52).to_string());
    }

    #[test]
    fn a_place_reply_reads_back_its_state_ticket_and_rank() {
        let joined = parse_place(&strings(&["ADMITTED", "77", "3", "31000", "1", "6000"])).unwrap();
        assert_eq!(
            joined.place.state,
            PlaceState::Admitted {
                from_ms: 6_000,
                until_ms: 31_000
            }
        );
        assert_eq!(joined.place.ticket, Some(Ticket::from_score(77)));
        assert_eq!(joined.place.rank, Some(3));
        assert!(joined.new);
        let early = parse_place(&strings(&["TOO_EARLY", "", "", "500", "0", "0"])).unwrap();
        assert_eq!(
            early.place,
            Place::without(PlaceState::TooEarly { opens_ms: 500 })
        );
        assert!(!early.new);
        assert!(parse_place(&strings(&["SOMETHING", "", "", "0", "0", "0"])).is_err());
        assert!(parse_place(&strings(&["WAITING", "", "", "0", "0"])).is_err());
        assert!(parse_place(&strings(&["FAILED_PRECONDITION", "no room"])).is_err());
    }

    #[test]
    fn a_move_reply_reads_back_the_line() {
        let reply = strings(&[
            "OK", "3", "2", "2", "9", "1", "0", "1", "0", "250", "0", "0", "1", "1", "5", "0",
        ]);
        let moved = parse_move(&reply).unwrap();
        assert_eq!(moved.snapshot.places, 3);
        assert_eq!(moved.snapshot.through, Some(Ticket::from_score(9)));
        assert_eq!(moved.snapshot.opened, 1);
        assert_eq!(moved.snapshot.opened_through, Some(Ticket::from_score(5)));
        assert_eq!((moved.snapshot.pending, moved.snapshot.held), (1, 1));
        assert!(!moved.snapshot.sold_out);
        assert_eq!(moved.snapshot.rate_milli_per_s, 250);
        assert_eq!((moved.admitted, moved.lapsed, moved.bought), (0, 0, 1));
        let empty = strings(&[
            "OK", "0", "0", "0", "0", "0", "0", "0", "1", "0", "0", "0", "0", "0", "0", "0",
        ]);
        let moved = parse_move(&empty).unwrap();
        assert_eq!(moved.snapshot.through, None);
        assert_eq!(moved.snapshot.opened_through, None);
        assert!(moved.snapshot.sold_out);
        assert!(parse_move(&reply[..5]).is_err());
    }

    #[test]
    fn settings_read_back_or_say_there_is_no_room() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            parse_room_rules(&[some("300000"), some("2"), some("30000")]).unwrap(),
            Some(Rules {
                prequeue_ms: 300_000,
                admit_factor: 2,
                admission_ttl_ms: 30_000
            })
        );
        assert_eq!(parse_room_rules(&[None, None, None]).unwrap(), None);
        assert!(parse_room_rules(&[some("x"), some("2"), some("1")]).is_err());
    }
}
