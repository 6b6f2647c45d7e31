//! Records: the two values the scripts store per buy, in one place — the order record of the
//! orderbook and the request entry of a sale's `req` hash — as compact strings a script reads with
//! one `string.match` and writes with one `table.concat` (no JSON: `cjson` cost more Redis CPU
//! per buy than the rest of the decision).
//!
//! **Order record** (orderbook field `EVENT-N` → record): eleven fields joined by
//! [`FIELD_SEP`] (`\x1f`), in this order:
//!
//! `event sku user qty status deadline created amount currency payment paid`
//!
//! `status` is the stored name of an [`OrderStatus`]; `deadline` is `0` while queued; `payment`
//! and `paid` are both empty until the order is paid. No field can hold the separator: user and
//! payment ids are refused with control characters at the service, the rest are numbers and names.
//! Example: `7\x1f5\x1fann\x1f1\x1fQUEUED\x1f0\x1f1000\x1f1999\x1fEUR\x1f\x1f`.
//!
//! **Request entry** (sale `req` field `USER \x1f REQUEST` → entry): `QTY` once a request id has
//! asked for `QTY` units in the sale and won nothing (yet), `QTY:EVENT-N` once it won order
//! `EVENT-N`. A request id names one buy of one quantity within one sale: asked again with another
//! quantity it is refused; the same buy again answers its order, or is decided again if it won
//! nothing.
//!
//! The Lua side of both formats is [`LUA_DECODE`], [`LUA_ENCODE`] and [`LUA_REQUEST`]: every
//! script that reads or writes them contains those lines verbatim (a unit test checks), so the
//! format changes here and in the scripts together or not at all.
//!
//! What it does not do: decide anything about an order (the scripts and the stores do).

use super::{Currency, Order, OrderStatus, Payment, FIELD_SEP};

/// How many fields an order record has.
pub const ORDER_FIELDS: usize = 11;

/// The line every script reading an order record uses (`raw` is the orderbook's value).
pub const LUA_DECODE: &str = "local event, sku, user, qty, status, deadline, created, amount, currency, payment, paid =\n  string.match(raw, '^([^\\31]*)\\31([^\\31]*)\\31([^\\31]*)\\31([^\\31]*)\\31([^\\31]*)\\31([^\\31]*)\\31([^\\31]*)\\31([^\\31]*)\\31([^\\31]*)\\31([^\\31]*)\\31([^\\31]*)$')";

/// The expression every script writing an order record uses (from the locals [`LUA_DECODE`]
/// names).
pub const LUA_ENCODE: &str = "table.concat({event, sku, user, qty, status, deadline, created, amount, currency, payment, paid}, '\\31')";

/// The line a script uses that rewrites only a record's status and deadline (the order worker's
/// `create_order.lua`): `event`, `status`, and the fields between and after them kept as they
/// stand (`kept`: sku, user, qty with their separators; `rest`: created to paid).
pub const LUA_RESTATUS: &str = "local event, kept, status, rest =\n  string.match(raw, '^([^\\31]*)(\\31[^\\31]*\\31[^\\31]*\\31[^\\31]*\\31)([^\\31]*)\\31[^\\31]*(\\31[^\\31]*\\31[^\\31]*\\31[^\\31]*\\31[^\\31]*\\31[^\\31]*)$')";

/// The expression that puts a record [`LUA_RESTATUS`] split back together, with the new
/// `status` and `deadline`.
pub const LUA_RESTATUS_ENCODE: &str = "event .. kept .. status .. '\\31' .. deadline .. rest";

/// The line every script reading a request entry uses (`entry` is the `req` hash's value):
/// `named` the quantity, `won` the order number or `""`.
pub const LUA_REQUEST: &str = "local named, won = string.match(entry, '^(%d+):?(.*)$')";

/// The record of `order` (its number is the orderbook field, not part of the record).
pub fn encode(order: &Order) -> String {
    let (payment, paid) = match &order.payment {
        Some(p) => (p.id.as_str(), p.paid_ms.to_string()),
        None => ("", String::new()),
    };
    [
        order.event_id.to_string().as_str(),
        &order.sku_id.to_string(),
        &order.user_id,
        &order.qty.to_string(),
        order.status.as_str(),
        &order.deadline_ms.to_string(),
        &order.created_ms.to_string(),
        &order.amount.to_string(),
        order.currency.as_str(),
        payment,
        &paid,
    ]
    .join(&FIELD_SEP.to_string())
}

/// The order `order_no` whose record is `record`, or `None` when it is not one.
pub fn decode(order_no: &str, record: &str) -> Option<Order> {
    let f: Vec<&str> = record.split(FIELD_SEP).collect();
    let [event, sku, user, qty, status, deadline, created, amount, currency, payment, paid] = f[..]
    else {
        return None;
    };
    let payment = match (payment, paid) {
        ("", "") => None,
        (id, paid) if !id.is_empty() => Some(Payment {
            id: id.to_owned(),
            paid_ms: paid.parse().ok()?,
        }),
        _ => return None,
    };
    Some(Order {
        order_no: order_no.to_owned(),
        event_id: event.parse().ok()?,
        sku_id: sku.parse().ok()?,
        user_id: user.to_owned(),
        qty: qty.parse().ok()?,
        status: OrderStatus::parse(status)?,
        deadline_ms: deadline.parse().ok()?,
        created_ms: created.parse().ok()?,
        amount: amount.parse().ok()?,
        currency: Currency::parse(currency)?,
        payment,
    })
}

/// The `req` hash's field of a user's request id.
pub fn request_field(user_id: &str, request_id: &str) -> String {
    format!("{user_id}{FIELD_SEP}{request_id}")
}

/// A request entry: `QTY`, or `QTY:ORDER` once it won `order_no`.
pub fn request_entry(qty: i64, order_no: Option<&str>) -> String {
    match order_no {
        None => qty.to_string(),
        Some(no) => format!("{qty}:{no}"),
    }
}

/// A request entry → (the quantity it named, the order it won).
pub fn parse_request_entry(entry: &str) -> Option<(i64, Option<&str>)> {
    let (qty, won) = match entry.split_once(':') {
        None => (entry, None),
        Some((qty, no)) => (qty, Some(no).filter(|no| !no.is_empty())?.into()),
    };
    if qty.is_empty() || !qty.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((qty.parse().ok()?, won))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stock::call::ALL;

    fn order() -> Order {
        Order {
            order_no: "7-1".into(),
            event_id: 7,
            sku_id: 5,
            user_id: "ann".into(),
            qty: 2,
            status: OrderStatus::Queued,
            deadline_ms: 0,
            created_ms: 1000,
            amount: 3998,
            currency: Currency::parse("EUR").unwrap(),
            payment: None,
        }
    }

    #[test]
    fn an_order_record_round_trips_paid_or_not() {
        let queued = order();
        let record = encode(&queued);
        assert_eq!(
            record,
            "7\u{1f}5\u{1f}ann\u{1f}2\u{1f}QUEUED\u{1f}0\u{1f}1000\u{1f}3998\u{1f}EUR\u{1f}\u{1f}"
        );
        assert_eq!(record.split(FIELD_SEP).count(), ORDER_FIELDS);
        assert_eq!(decode("7-1", &record), Some(queued.clone()));
        let paid = Order {
            status: OrderStatus::Paid,
            deadline_ms: 61_000,
            payment: Some(Payment {
                id: "psp 42".into(),
                paid_ms: 5000,
            }),
            ..queued
        };
        assert_eq!(decode("7-1", &encode(&paid)), Some(paid));
    }

    #[test]
    fn a_record_that_is_not_one_decodes_to_none() {
        let good = encode(&order());
        let fields: Vec<&str> = good.split(FIELD_SEP).collect();
        let with = |i: usize, v: &str| {
            let mut f = fields.clone();
            f[i] = v;
            f.join("\u{1f}")
        };
        for bad in [
            String::new(),
            good.clone() + "\u{1f}",
            fields[..10].join("\u{1f}"),
            with(0, "x"),
            with(4, "LOST"),
            with(8, "eur"),
            with(9, "p-1"), // a payment without its time
            with(10, "50"), // a time without its payment
            r#"{"event":"7"}"#.into(),
        ] {
            assert_eq!(decode("7-1", &bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_request_entry_names_its_quantity_and_its_order() {
        assert_eq!(request_entry(3, None), "3");
        assert_eq!(request_entry(3, Some("7-12")), "3:7-12");
        assert_eq!(parse_request_entry("3"), Some((3, None)));
        assert_eq!(parse_request_entry("3:7-12"), Some((3, Some("7-12"))));
        for bad in ["", ":7-1", "x", "3:", "-3", "x:7-1"] {
            assert_eq!(parse_request_entry(bad), None, "{bad:?}");
        }
        assert_eq!(request_field("ann", "r1"), "ann\u{1f}r1");
    }

    /// The status rewrite splits a record where the full decode does: as many fields, the
    /// status fifth and the deadline sixth.
    #[test]
    fn the_status_rewrite_splits_a_record_at_the_same_fields() {
        let field = "[^\\31]*";
        let pattern = LUA_RESTATUS.split_once("string.match").unwrap().1;
        assert_eq!(pattern.matches(field).count(), ORDER_FIELDS);
        assert_eq!(LUA_DECODE.matches(field).count(), ORDER_FIELDS);
        let (before_status, after) = pattern.split_once(&format!(")({field})")).unwrap();
        assert_eq!(
            before_status.matches(field).count(),
            4,
            "sku, user, qty after event"
        );
        assert!(
            after.starts_with(&format!("\\31{field}(")),
            "the deadline, dropped: {after}"
        );
        let names: Vec<&str> = LUA_DECODE.split('=').next().unwrap()["local ".len()..]
            .split(',')
            .map(str::trim)
            .collect();
        assert_eq!((names[4], names[5]), ("status", "deadline"));
    }

    /// The scripts carry the Lua side of the formats verbatim (up to indentation); a script that
    /// stores or reads a record any other way would fail here.
    #[test]
    fn every_script_reads_and_writes_records_with_the_same_lines() {
        let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let has = |source: &str, lines: &str| words(source).contains(&words(lines));
        let readers = ["pay", "release_order", "close_event", "purge_orders"];
        let writers = ["pay", "release_order"];
        for lua in ALL {
            let s = lua.source;
            assert!(
                !s.contains("cjson") || lua.name == "move_out",
                "{}: no JSON per order",
                lua.name
            );
            if readers.contains(&lua.name) {
                assert!(has(s, LUA_DECODE), "{} decodes with LUA_DECODE", lua.name);
            }
            if writers.contains(&lua.name) {
                assert!(has(s, LUA_ENCODE), "{} encodes with LUA_ENCODE", lua.name);
            }
        }
        let create = ALL
            .iter()
            .find(|l| l.name == "create_order")
            .unwrap()
            .source;
        assert!(has(create, LUA_RESTATUS) && has(create, LUA_RESTATUS_ENCODE));
        let buy = ALL.iter().find(|l| l.name == "buy_batch").unwrap().source;
        assert!(has(buy, LUA_ENCODE) && has(buy, LUA_REQUEST));
    }
}
