use super::*;
use crate::stock::call::ReplyError;

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn a_sale_is_defined_with_one_argument_list_in_every_shard() {
    let k = Keys::new("fg");
    let sale = Sale {
        id: 7,
        sku: 5,
        pool: 40,
        start_ms: 1,
        end_ms: 2,
        per_user_limit: 3,
        pay_window_ms: 4,
        subpools: 4,
        price: 1999,
        currency: Currency::parse("EUR").unwrap(),
        limit_counts_held: false,
    };
    let main = put_sale(&k, &sale, 4, 0);
    let sub = put_sale(&k, &sale, 4, 2);
    assert_eq!(main.script.name, "put_event");
    assert_eq!(sub.script.name, "put_subpool");
    assert_eq!(main.args[..9], sub.args[..9]);
    assert_eq!((main.args[9].as_str(), sub.args[9].as_str()), ("0", "2"));
    assert_eq!(main.args[10..], sub.args[10..]);
    assert_eq!(main.args[10..], strings(&["1999", "EUR", "0"]));
    assert_eq!(sub.keys[1], "fg:{sku:5:2}:ev:7");
}

#[test]
fn a_buy_names_its_shard_and_parses_its_outcome() {
    let k = Keys::new("fg");
    let req = BuyRequest {
        event_id: 7,
        user_id: "u".into(),
        qty: 1,
        request_id: "r".into(),
    };
    let call = buy(&k, Shard::new(5, 3), 4, &req, 99);
    assert!(call.keys.iter().all(|key| key.contains("{sku:5:3}")));
    assert_eq!(call.args, strings(&["7", "4", "3", "u", "1", "r", "99"]));
    assert_eq!(
        parse_buy_reply(&req, &strings(&["QUEUED", "7-4", "2"])),
        Ok(BuyDecision::Queued {
            order_no: "7-4".into(),
            remaining: 2
        })
    );
    assert!(parse_buy_reply(&req, &strings(&["QUEUED", "7-4"])).is_err());
    assert_eq!(
        parse_buy_reply(&req, &strings(&["REUSED", "3", "2"])),
        Err(ReplyError::Refused(StockError::request_reused("r", (7, 3))))
    );
}

#[test]
fn a_batch_packs_its_buys_in_order_and_parses_one_decision_each() {
    let k = Keys::new("fg");
    let req = |user: &str, qty, request: &str| BuyRequest {
        event_id: 7,
        user_id: user.into(),
        qty,
        request_id: request.into(),
    };
    let (a, b, c) = (
        req("ann", 1, "r1"),
        req("ann", 2, "r1"),
        req("bob", 1, "r9"),
    );
    let buys = [(&a, 10), (&b, 11), (&c, 12)];
    let call = buy_batch(&k, Shard::from(5), 1, &buys);
    assert_eq!(call.script.name, "buy_batch");
    assert_eq!(
        call.args,
        strings(&[
            "7", "1", "0", "ann", "1", "r1", "10", "ann", "2", "r1", "11", "bob", "1", "r9", "12"
        ])
    );
    assert_eq!(call.args.len(), call.script.args + call.script.each * 3);
    assert_eq!(call.keys[2], "fg:{sku:5}:ev:7:req");
    let reply = strings(&[
        "QUEUED", "7-1", "4", "REUSED", "1", "4", "SOLD_OUT", "", "0",
    ]);
    assert_eq!(
        parse_buy_batch(&buys, &reply),
        Ok(vec![
            Ok(BuyDecision::Queued {
                order_no: "7-1".into(),
                remaining: 4
            }),
            Err(StockError::request_reused("r1", (7, 1))),
            Ok(BuyDecision::SoldOut { remaining: 0 }),
        ])
    );
    assert!(
        parse_buy_batch(&buys, &reply[..6]).is_err(),
        "one reply short"
    );
    let mut odd = reply.clone();
    odd[3] = "MAYBE".into();
    assert!(parse_buy_batch(&buys, &odd).is_err());
    odd[3] = "REUSED".into();
    odd[4] = "x".into();
    assert!(
        parse_buy_batch(&buys, &odd).is_err(),
        "a quantity that is no number"
    );
}

#[test]
#[should_panic(expected = "1 to 64 buys")]
fn a_batch_has_a_cap() {
    let k = Keys::new("fg");
    let req = BuyRequest {
        event_id: 7,
        user_id: "u".into(),
        qty: 1,
        request_id: "r".into(),
    };
    let buys = vec![(&req, 0); BUY_BATCH_MAX + 1];
    buy_batch(&k, Shard::from(5), 1, &buys);
}

#[test]
fn the_wins_of_a_batch_are_created_and_acknowledged_by_one_call() {
    let k = Keys::new("fg");
    let wins = [("7-1", "5-0"), ("7-2", "5-1")];
    let call = create_orders(&k, Shard::new(5, 1), &wins, true, true, 99);
    assert!(call.keys.iter().all(|key| key.contains("{sku:5:1}")));
    assert_eq!(call.keys[2], k.order_stream(Shard::new(5, 1)));
    assert_eq!(call.keys[3], k.changes(Shard::new(5, 1)));
    assert_eq!(
        call.args,
        strings(&[
            "99",
            "fg:{sku:5:1}:ev:",
            ORDER_GROUP,
            "7-1 7-2",
            "5-0 5-1",
            "1"
        ])
    );
    let unacked = create_orders(&k, Shard::from(5), &wins[..1], false, false, 99);
    assert_eq!(unacked.args[2..], strings(&["", "7-1", "", "0"]));
    assert_eq!(
        parse_create_orders(&strings(&["CREATED", "ALREADY", "NOT_FOUND"]), 3),
        Ok(vec![Created::Created, Created::Already, Created::NotFound])
    );
    assert!(parse_create_orders(&strings(&["CREATED"]), 2).is_err());
    assert!(parse_create_orders(&strings(&["QUEUED"]), 1).is_err());
}

#[test]
fn a_closing_sale_retires_once_its_orders_are_final() {
    let k = Keys::new("fg");
    let call = close_event(&k, (7, 4), Shard::new(5, 2), 99);
    assert!(call.keys.iter().all(|key| key.contains("{sku:5:2}")));
    assert_eq!(call.args, strings(&["99", "7", "4", "2", "200"]));
    let closing = |s: &[&str]| parse_close_event(&strings(s));
    assert_eq!(closing(&["OPEN", ""]), Ok(Closing::default()));
    assert!(closing(&["CLOSED", "3"]).unwrap().closed_now);
    assert_eq!(
        closing(&["RETIRED", "2", "3"]),
        Ok(Closing {
            closed_now: true,
            retired: Some(2)
        })
    );
    assert_eq!(
        closing(&["RETIRED", "2", ""]),
        Ok(Closing {
            closed_now: false,
            retired: Some(2)
        })
    );
    assert!(closing(&["RETIRED"]).is_err());
}

#[test]
fn a_retired_sales_orders_are_purged_by_ranges() {
    let k = Keys::new("fg");
    let call = purge_orders(&k, (7, 2), Shard::new(5, 1), (1, 200));
    assert_eq!(
        call.keys,
        vec![k.orderbook(Shard::new(5, 1)), k.stock(Shard::new(5, 1))]
    );
    assert_eq!(call.args, strings(&["7", "2", "1", "1", "200"]));
    assert_eq!(parse_purge_orders(&strings(&["OK", "3"])), Ok(3));
    assert!(parse_purge_orders(&strings(&["OK"])).is_err());
}

#[test]
fn a_sale_hash_parses_with_its_price_and_what_its_limit_counts() {
    let hash = |counts_held: &str, currency: &str| -> BTreeMap<String, String> {
        [
            ("id", "7"),
            ("sku", "5"),
            ("put", "4"),
            ("pool", "3"),
            ("start", "1"),
            ("end", "2"),
            ("limit", "1"),
            ("pay_window", "9"),
            ("price", "250"),
            ("currency", currency),
            ("counts_held", counts_held),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect()
    };
    let state = parse_sale(&hash("0", "USD")).unwrap();
    assert_eq!(
        (state.sale.price, state.sale.currency.as_str()),
        (250, "USD")
    );
    assert!(!state.sale.limit_counts_held);
    assert!(
        parse_sale(&hash("1", "USD"))
            .unwrap()
            .sale
            .limit_counts_held
    );
    assert_eq!(parse_sale(&hash("2", "USD")), None);
    assert_eq!(parse_sale(&hash("0", "US")), None);
}

#[test]
fn a_payment_names_its_user_or_none() {
    let k = Keys::new("fg");
    let mut req = PayRequest {
        order_no: "7-1".into(),
        user_id: None,
        payment_id: "psp-42".into(),
        amount: 1999,
    };
    let call = pay(&k, Shard::from(5), &req, true, 99);
    assert_eq!(
        call.args,
        strings(&["7-1", "", "psp-42", "1999", "99", "1"])
    );
    req.user_id = Some("ann".into());
    assert_eq!(pay(&k, Shard::from(5), &req, false, 99).args[1], "ann");
}

#[test]
fn replies_parse_into_domain_values() {
    assert_eq!(
        parse_buy("DUPLICATE", "1-1", 4),
        Some(BuyDecision::Queued {
            order_no: "1-1".into(),
            remaining: 4
        })
    );
    assert_eq!(
        parse_buy("SOLD_OUT", "", 0),
        Some(BuyDecision::SoldOut { remaining: 0 })
    );
    assert_eq!(parse_buy("???", "", 0), None);
    // Its record's parsing is `record::decode`'s, tested there; here it is only what the
    // snapshot reads back.
    let order = Order {
        order_no: "1-1".into(),
        event_id: 1,
        sku_id: 2,
        user_id: "u".into(),
        qty: 1,
        status: OrderStatus::PendingPayment,
        deadline_ms: 99,
        created_ms: 9,
        amount: 1999,
        currency: Currency::parse("EUR").expect("a currency"),
        payment: None,
    };
    assert_eq!(
        parse_ledger(&strings(&["OK", "10", "4", "3", "2", "1"])),
        Ok(Some(Ledger {
            total: 10,
            available: 4,
            pools: 3,
            locked: 2,
            sold: 1
        }))
    );
    assert_eq!(parse_ledger(&strings(&["NOT_FOUND"])), Ok(None));
    let none = BTreeMap::new();
    assert_eq!(
        assemble_snapshot(Shard::from(1), &none, Vec::new(), &none),
        Ok(None)
    );
    let stock: BTreeMap<String, String> = [("total", "5"), ("available", "4"), ("locked", "1")]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
    let mut orders = BTreeMap::new();
    orders.insert("1-1".to_owned(), record::encode(&order));
    let snap = assemble_snapshot(Shard::from(2), &stock, Vec::new(), &orders)
        .unwrap()
        .unwrap();
    assert_eq!((snap.counters.total, snap.counters.sold), (5, 0));
    assert_eq!(snap.orders, vec![order]);
}
