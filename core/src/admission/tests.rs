use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

const SECRET: &[u8] = b"a waiting-room secret of 32 bytes";
const START: i64 = 1_000_000;
// Long enough that no generated run of waits reaches it.
const END: i64 = START + 36_000_000;

fn rules(admit_factor: u32) -> Rules {
    Rules {
        prequeue_ms: 300_000,
        admit_factor,
        admission_ttl_ms: 30_000,
    }
}

fn facts(user: &str, now_ms: i64) -> JoinFacts<'_> {
    JoinFacts {
        sale: 7,
        user,
        start_ms: START,
        end_ms: END,
        now_ms,
        existing: None,
        arrivals: 0,
    }
}

#[test]
fn a_join_before_the_pre_queue_opens_is_too_early_and_says_when() {
    assert_eq!(
        join(&rules(2), SECRET, &facts("ann", START - 300_001)),
        Join::TooEarly {
            opens_ms: START - 300_000
        }
    );
}

#[test]
fn a_join_in_the_pre_queue_is_drawn_and_after_the_start_arrives() {
    let drawn = join(&rules(2), SECRET, &facts("ann", START - 300_000));
    assert_eq!(drawn, Join::Drawn(Ticket::draw(SECRET, 7, "ann")));
    let late = JoinFacts {
        arrivals: 41,
        ..facts("bob", START)
    };
    assert_eq!(
        join(&rules(2), SECRET, &late),
        Join::Arrived(Ticket::arrival(41))
    );
    assert_eq!(join(&rules(2), SECRET, &facts("cy", END)), Join::Ended);
}

#[test]
fn joining_again_keeps_the_place_whenever_and_however_often() {
    let first = Ticket::arrival(3);
    for now in [START - 1, START, START + 5_000] {
        let again = JoinFacts {
            existing: Some(first),
            arrivals: 99,
            ..facts("ann", now)
        };
        assert_eq!(join(&rules(2), SECRET, &again), Join::Again(first));
    }
}

#[test]
fn no_pre_queue_means_everyone_arrives_in_order_from_the_start() {
    let rules = Rules {
        prequeue_ms: 0,
        ..rules(2)
    };
    assert_eq!(
        join(&rules, SECRET, &facts("ann", START - 1)),
        Join::TooEarly { opens_ms: START }
    );
    assert_eq!(
        join(&rules, SECRET, &facts("ann", START)),
        Join::Arrived(Ticket::arrival(0))
    );
}

#[test]
fn the_draw_depends_on_the_secret_the_sale_and_the_user_only() {
    let t = Ticket::draw(SECRET, 7, "ann");
    assert_eq!(t, Ticket::draw(SECRET, 7, "ann"));
    assert_ne!(
        t,
        Ticket::draw(b"another secret of thirty-two bytes", 7, "ann")
    );
    assert_ne!(t, Ticket::draw(SECRET, 8, "ann"));
    assert_ne!(t, Ticket::draw(SECRET, 7, "anne"));
    assert!(t.is_drawn());
    assert!(!Ticket::arrival(0).is_drawn());
}

#[test]
fn the_room_admits_k_per_remaining_unit_less_those_pending() {
    let r = rules(2);
    let room = |remaining, held, pending| Room {
        remaining,
        held,
        pending,
    };
    assert_eq!(room(100, 0, 0).admits(&r), 200);
    assert_eq!(room(100, 0, 150).admits(&r), 50);
    assert_eq!(room(1, 0, 5).admits(&r), 0);
    assert_eq!(room(0, 3, 0).admits(&r), 0);
    assert!(!room(0, 3, 0).sold_out(), "held units may come back");
    assert!(room(0, 0, 2).sold_out());
    // A factor of 0 would admit nobody ever: it counts as 1.
    assert_eq!(room(3, 0, 0).admits(&rules(0)), 3);
}

fn view_of(place: Place, room: Room, now_ms: i64) -> QueueView {
    view(&ViewFacts {
        user: "ann",
        place,
        room,
        admit_rate_per_s: 10.0,
        start_ms: START,
        end_ms: END,
        now_ms,
    })
}

#[test]
fn a_waiting_buyer_sees_a_position_an_estimate_and_when_to_ask_again() {
    let room = Room {
        remaining: 10,
        held: 0,
        pending: 20,
    };
    let v = view_of(Place::Waiting { ahead: 49 }, room, START + 1);
    assert_eq!(v.state, QueueState::Waiting);
    assert_eq!((v.position, v.ahead, v.eta_s), (50, 49, Some(5)));
    assert!((POLL_MIN_MS..=POLL_MAX_MS * 6 / 5).contains(&v.poll_after_ms));
    // During the countdown: the wait to the start.
    let v = view_of(Place::Waiting { ahead: 3 }, room, START - 2_500);
    assert_eq!((v.position, v.eta_s), (4, Some(3)));
}

#[test]
fn every_waiting_buyer_learns_sold_out_once_nothing_can_come_back() {
    let gone = Room {
        remaining: 0,
        held: 0,
        pending: 4,
    };
    let v = view_of(Place::Waiting { ahead: 99_999 }, gone, START + 1);
    assert_eq!((v.state, v.poll_after_ms), (QueueState::SoldOut, 0));
    let held = Room { held: 2, ..gone };
    let v = view_of(Place::Waiting { ahead: 3 }, held, START + 1);
    assert_eq!(v.state, QueueState::Waiting, "held units may come back");
    let stalled = view(&ViewFacts {
        user: "ann",
        place: Place::Waiting { ahead: 3 },
        room: held,
        admit_rate_per_s: 0.0,
        start_ms: START,
        end_ms: END,
        now_ms: START + 1,
    });
    assert_eq!(stalled.eta_s, None, "nothing moves: no made-up estimate");
}

#[test]
fn an_admission_lasts_its_ttl_and_a_spent_place_is_ended() {
    let room = Room {
        remaining: 5,
        held: 0,
        pending: 1,
    };
    let until = lapses_at(&rules(2), START + 10);
    assert_eq!(until, START + 30_010);
    assert_eq!(opens_at(&rules(2), until), START + 10);
    let admitted = Place::Admitted {
        from_ms: START + 10,
        until_ms: until,
    };
    let v = view_of(admitted, room, until - 1);
    assert_eq!(
        (v.state, v.admitted_until_ms),
        (QueueState::Admitted, Some(until))
    );
    assert_eq!(view_of(admitted, room, until).state, QueueState::Ended);
    assert_eq!(view_of(Place::Done, room, START).state, QueueState::Ended);
    assert_eq!(
        view_of(Place::Waiting { ahead: 0 }, room, END).state,
        QueueState::Ended
    );
}

#[test]
fn a_move_opens_standby_places_only_for_units_no_open_admission_is_counted_against() {
    // 3 units, 1 admission open, 5 on standby: the next two open, the rest wait.
    assert_eq!(openings(3, 1, 5, 1), 2);
    assert_eq!(openings(3, 3, 5, 1), 0);
    assert_eq!(openings(1, 3, 5, 1), 0);
    assert_eq!(openings(10, 0, 4, 1), 4, "no more than are on standby");
    assert_eq!(openings(0, 0, 4, 1), 0);
    // Buyers may take 2: 5 units open 3 places (the third finds at least one unit however
    // many the first two take), 4 units 2, 1 unit still 1.
    assert_eq!(openings(5, 0, 9, 2), 3);
    assert_eq!(openings(4, 0, 9, 2), 2);
    assert_eq!(openings(1, 0, 9, 2), 1);
    assert_eq!(openings(5, 3, 9, 2), 0);
    // A standby place is told to wait at the front: nobody who has not opened is ahead of it.
    let room = Room {
        remaining: 3,
        held: 0,
        pending: 6,
    };
    let v = view_of(Place::Waiting { ahead: 0 }, room, START + 100);
    assert_eq!((v.state, v.position, v.ahead), (QueueState::Waiting, 1, 0));
    // An open admission that cannot buy yet is told so, and to come back within a second.
    let v = front_view(9_000);
    assert_eq!(
        (v.state, v.position, v.eta_s, v.poll_after_ms),
        (QueueState::Waiting, 1, Some(9), FRONT_POLL_MS)
    );
}

#[test]
fn polls_near_the_start_come_back_by_the_start() {
    assert!(poll_after_ms("ann", 10_000, 300) <= 300 + 300 / 5);
}

/// Spearman's rank correlation of two rankings of the same n items (ranks 0..n, no ties).
fn spearman(a: &[usize], b: &[usize]) -> f64 {
    let n = a.len() as f64;
    let d2: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

/// A small deterministic generator (splitmix64) for shuffles.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn the_pre_queue_draw_does_not_follow_the_join_order() {
    for seed in 1..=6u64 {
        let mut state = seed;
        let mut users: Vec<String> = (0..1_000).map(|i| format!("user-{seed}-{i}")).collect();
        // The order they joined in: a shuffle.
        for i in (1..users.len()).rev() {
            users.swap(i, (splitmix(&mut state) % (i as u64 + 1)) as usize);
        }
        let secret = splitmix(&mut state).to_be_bytes().repeat(4);
        let mut by_ticket: Vec<usize> = (0..users.len()).collect();
        by_ticket.sort_by_key(|&i| Ticket::draw(&secret, 7, &users[i]));
        let mut draw_rank = vec![0; users.len()];
        for (rank, &joined) in by_ticket.iter().enumerate() {
            draw_rank[joined] = rank;
        }
        let join_rank: Vec<usize> = (0..users.len()).collect();
        let rho = spearman(&join_rank, &draw_rank);
        assert!(rho.abs() < 0.1, "seed {seed}: rank correlation {rho}");
    }
}

/// What the holder does, kept as a model: places by ticket, the standby and the open
/// admissions, the room (`pending` counts both).
#[derive(Debug, Default)]
struct Line {
    places: BTreeMap<String, Ticket>,
    waiting: BTreeSet<(Ticket, String)>,
    standby: BTreeSet<(Ticket, String)>,
    /// Open admissions: user → when it lapses.
    open: BTreeMap<String, i64>,
    arrivals: u64,
    room: Room,
    admitted_in_order: Vec<Ticket>,
    opened_in_order: Vec<Ticket>,
    /// The most units one buyer takes.
    per_user: u64,
}

impl Line {
    fn join(&mut self, rules: &Rules, user: &str, now_ms: i64) -> Option<Ticket> {
        let facts = JoinFacts {
            sale: 7,
            user,
            start_ms: START,
            end_ms: END,
            now_ms,
            existing: self.places.get(user).copied(),
            arrivals: self.arrivals,
        };
        let ticket = match join(rules, SECRET, &facts) {
            Join::Again(t) => return Some(t),
            Join::Drawn(t) => t,
            Join::Arrived(t) => {
                self.arrivals += 1;
                t
            }
            Join::TooEarly { .. } | Join::Ended => return None,
        };
        self.places.insert(user.to_owned(), ticket);
        self.waiting.insert((ticket, user.to_owned()));
        Some(ticket)
    }

    /// One move: as many of the first waiting places as the room admits go on standby, then as
    /// many of the first standby places open as [`openings`] says.
    fn admit(&mut self, rules: &Rules, now_ms: i64) {
        if now_ms < START {
            return;
        }
        for _ in 0..self.room.admits(rules) {
            let Some(first) = self.waiting.pop_first() else {
                break;
            };
            assert!(
                self.room.pending < u64::from(rules.admit_factor.max(1)) * self.room.remaining,
                "admitted beyond k × remaining: {:?}",
                self.room
            );
            self.admitted_in_order.push(first.0);
            self.standby.insert(first);
            self.room.pending += 1;
        }
        let n = openings(
            self.room.remaining,
            self.open.len() as u64,
            self.standby.len() as u64,
            self.per_user,
        );
        for _ in 0..n {
            let first = self.standby.pop_first().expect("openings ≤ standby");
            self.opened_in_order.push(first.0);
            self.open.insert(first.1, lapses_at(rules, now_ms));
        }
        assert!(
            n == 0 || self.each_open_finds_a_unit(),
            "opened beyond the units: {} open, {:?}",
            self.open.len(),
            self.room
        );
    }

    /// Whether every open admission finds a unit however many the others take first: all but
    /// one of them taking `per_user` each leaves at least one.
    fn each_open_finds_a_unit(&self) -> bool {
        let open = self.open.len() as u64;
        open == 0 || (open - 1) * self.per_user.max(1) < self.room.remaining
    }

    /// A buy of `qty` (at most `per_user`) by `user` at `now_ms`: `None` if it may not buy
    /// (not open, lapsed), else the units it got — all it asked for, or none when fewer are
    /// left (as `buy_batch.lua` decides: sold out, the link may try a smaller quantity).
    fn buy(&mut self, user: &str, qty: u64, now_ms: i64) -> Option<u64> {
        match self.open.get(user) {
            Some(&until) if until > now_ms => {}
            _ => return None,
        }
        if qty > self.room.remaining {
            return Some(0);
        }
        self.open.remove(user);
        self.room.pending -= 1;
        self.room.remaining -= qty;
        self.room.held += qty;
        Some(qty)
    }

    fn lapse(&mut self, now_ms: i64) {
        let before = self.open.len();
        self.open.retain(|_, until| *until > now_ms);
        self.room.pending -= (before - self.open.len()) as u64;
    }

    /// An unpaid order's units come back (cancel, expiry).
    fn give_back(&mut self, units: u64) {
        let back = units.min(self.room.held);
        self.room.held -= back;
        self.room.remaining += back;
    }
}

#[derive(Debug, Clone)]
enum Step {
    Join(u8),
    Buy(u8, u64),
    GiveBack(u64),
    Pay(u64),
    Wait(i64),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            4 => any::<u8>().prop_map(Step::Join),
            3 => (any::<u8>(), 1..3u64).prop_map(|(u, q)| Step::Buy(u, q)),
            1 => (1..3u64).prop_map(Step::GiveBack),
            1 => (1..3u64).prop_map(Step::Pay),
            2 => (0..40_000i64).prop_map(Step::Wait),
        ],
        1..120,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever joins, buys, lapses and returns happen: no admission is made beyond
    /// k × remaining and no admission opens beyond the units (asserted inside `admit`),
    /// admissions and openings follow ticket order (pre-queue draw first, then arrivals), a
    /// user has one place, units that come back admit the next places at once, and however
    /// many units (up to the per-user limit) the open buyers take, every open admission still
    /// finds one: its one-unit buy never fails.
    #[test]
    fn admissions_follow_the_line_and_never_exceed_k_times_the_remaining_pool(
        k in 1..4u32,
        pool in 1..20u64,
        per_user in 1..4u64,
        prequeue_joins in 0..40u8,
        steps in steps(),
    ) {
        let rules = rules(k);
        let room = Room { remaining: pool, ..Room::default() };
        let mut line = Line { room, per_user, ..Line::default() };
        for u in 0..prequeue_joins {
            let user = format!("u{u}");
            let t = line.join(&rules, &user, START - 1_000).expect("pre-queue is open");
            prop_assert!(t.is_drawn());
        }
        let mut now = START;
        for step in steps {
            match step {
                Step::Join(u) => {
                    let user = format!("u{}", u % 64);
                    let before = line.places.get(&user).copied();
                    let t = line.join(&rules, &user, now).expect("the sale runs");
                    if let Some(before) = before {
                        prop_assert_eq!(before, t, "one place per user");
                    }
                }
                Step::Buy(u, qty) => {
                    let qty = (qty - 1) % per_user + 1;
                    let took = line.buy(&format!("u{}", u % 64), qty, now);
                    if qty == 1 {
                        prop_assert_ne!(took, Some(0), "an open admission has its unit");
                    }
                }
                Step::GiveBack(n) => {
                    let waiting_before = line.waiting.len() as u64;
                    let pending_before = line.room.pending;
                    let remaining_before = line.room.remaining;
                    let back = n.min(line.room.held);
                    line.give_back(n);
                    line.admit(&rules, now);
                    let capacity = u64::from(k) * (remaining_before + back);
                    let expected = capacity.saturating_sub(pending_before).min(waiting_before);
                    prop_assert_eq!(
                        waiting_before - line.waiting.len() as u64,
                        expected,
                        "units that came back admit the next places"
                    );
                }
                Step::Pay(n) => line.room.held -= n.min(line.room.held),
                Step::Wait(ms) => {
                    now += ms;
                    line.lapse(now);
                }
            }
            line.admit(&rules, now);
            prop_assert_eq!(line.room.pending, (line.open.len() + line.standby.len()) as u64);
            prop_assert!(line.each_open_finds_a_unit(), "{} open, {:?}", line.open.len(), line.room);
        }
        // Admission and opening order are ticket order: drawn places before arrivals, each in
        // its order.
        for order in [&line.admitted_in_order, &line.opened_in_order] {
            let mut sorted = order.clone();
            sorted.sort();
            prop_assert_eq!(&sorted, order);
        }
        // Sold out tells every waiting place at once.
        if line.room.sold_out() {
            for (ticket, user) in &line.waiting {
                let ahead = line.waiting.range(..(*ticket, user.clone())).count() as u64;
                let v = view(&ViewFacts {
                    user, place: Place::Waiting { ahead }, room: line.room,
                    admit_rate_per_s: 1.0, start_ms: START, end_ms: END, now_ms: now.min(END - 1),
                });
                prop_assert_eq!(v.state, QueueState::SoldOut);
            }
        }
    }

    /// The race among the admitted: k × pool places admitted at the start, bots that try to
    /// buy the moment after every move (once a second) and people who take anything up to
    /// well past their admission's life to buy, or never come: the units go to the first
    /// `pool` places of the line among those that buy within their admission's life — how
    /// fast a client is buys it nothing, and a place behind gets a unit only when one ahead is
    /// absent.
    #[test]
    fn the_fastest_admitted_client_does_not_win_over_the_line(
        k in 2..5u32,
        pool in 1..30u64,
        extra in 0..60u64,
        delays in prop::collection::vec(prop_oneof![
            1 => Just(0i64),
            3 => 1..30_000i64,
            1 => 30_000..60_000i64,
        ], 1..90),
    ) {
        let rules = rules(k);
        let room = Room { remaining: pool, ..Room::default() };
        let mut line = Line { room, per_user: 1, ..Line::default() };
        let users: Vec<String> = (0..pool * u64::from(k) + extra).map(|u| format!("u{u}")).collect();
        let delay: BTreeMap<&String, i64> =
            users.iter().zip(delays.iter().cycle()).map(|(u, d)| (u, *d)).collect();
        for user in &users {
            line.join(&rules, user, START - 1_000);
        }
        let mut in_line: Vec<(Ticket, &String)> =
            users.iter().map(|u| (line.places[u], u)).collect();
        in_line.sort();
        let present = in_line
            .iter()
            .filter(|(_, u)| delay[u] < rules.admission_ttl_ms)
            .map(|(_, u)| *u);
        let first: BTreeSet<&String> = present.take(pool as usize).collect();
        // A move a second; between moves, every open user whose time has come buys (a bot
        // right after the move that opened it, a person after their delay).
        let mut opened_at: BTreeMap<String, i64> = BTreeMap::new();
        let mut won = BTreeSet::new();
        let mut now = START;
        while line.room.remaining > 0 && (line.open.len() + line.standby.len() + line.waiting.len()) > 0 {
            line.lapse(now);
            line.admit(&rules, now);
            for user in line.open.keys() {
                opened_at.entry(user.clone()).or_insert(now);
            }
            let mut tries: Vec<(i64, &String)> = users
                .iter()
                .filter_map(|u| {
                    let at = opened_at.get(u)? + delay[u];
                    (now..now + 1_000).contains(&at).then_some((at, u))
                })
                .collect();
            tries.sort();
            for (t, user) in tries {
                if line.buy(user, 1, t) == Some(1) {
                    won.insert(user);
                }
            }
            now += 1_000;
            prop_assert!(now < START + 10_000_000, "the sale moves on");
        }
        prop_assert_eq!(won, first);
    }

    #[test]
    fn a_ticket_stored_as_a_signed_integer_sorts_and_reads_back_the_same(a: u64, b: u64) {
        let (ta, tb) = (Ticket::from_raw(a), Ticket::from_raw(b));
        prop_assert_eq!(Ticket::from_sortable_i64(ta.to_sortable_i64()), ta);
        prop_assert_eq!(ta.cmp(&tb), ta.to_sortable_i64().cmp(&tb.to_sortable_i64()));
        prop_assert_eq!(Ticket::from_raw(ta.get()), ta);
    }

    #[test]
    fn a_score_sorts_as_its_ticket_and_stays_exact_in_a_double(a: u64, b: u64, sale: i64) {
        let drawn = |raw: u64| Ticket::draw(&raw.to_be_bytes(), sale, "u");
        for (ta, tb) in [
            (drawn(a), drawn(b)),
            (Ticket::arrival(a % ARRIVAL_SCORE), Ticket::arrival(b % ARRIVAL_SCORE)),
            (drawn(a), Ticket::arrival(b % ARRIVAL_SCORE)),
        ] {
            prop_assert!(ta.score() < 1 << 53);
            prop_assert_eq!(ta.score() as f64 as u64, ta.score());
            // The order of scores never contradicts the order of tickets.
            prop_assert!(ta.score() != tb.score() || ta == tb || ta.is_drawn() && tb.is_drawn());
            if ta.score() < tb.score() {
                prop_assert!(ta < tb);
            }
            let kept = Ticket::from_score(ta.score());
            prop_assert_eq!(kept.score(), ta.score());
            prop_assert_eq!(kept.is_drawn(), ta.is_drawn());
        }
        prop_assert_eq!(Ticket::from_score(Ticket::arrival(a % ARRIVAL_SCORE).score()),
            Ticket::arrival(a % ARRIVAL_SCORE));
    }
}

#[test]
fn the_rate_counts_the_first_admissions_from_the_start_and_then_whole_windows() {
    let none = RateMark::default();
    assert_eq!(
        rate_step(none, 0, START, START - 1),
        none,
        "nothing before the start"
    );
    // 200 admitted at the start: measured once the first window is over.
    let first = rate_step(none, 200, START, START + 10);
    assert_eq!(
        (first.at_ms, first.opened, first.milli_per_s),
        (START, 0, 0)
    );
    let closed = rate_step(first, 200, START, START + RATE_WINDOW_MS);
    assert_eq!(closed.milli_per_s, 40_000);
    assert_eq!(closed.per_s(), 40.0);
    assert_eq!((closed.at_ms, closed.opened), (START + RATE_WINDOW_MS, 200));
    // A window still open keeps the last figure.
    assert_eq!(
        rate_step(closed, 300, START, START + RATE_WINDOW_MS + 1),
        closed
    );
    let slow = rate_step(closed, 203, START, START + 3 * RATE_WINDOW_MS);
    assert_eq!(slow.milli_per_s, 300);
}

#[test]
fn a_rank_is_exact_for_arrivals_and_a_share_of_the_draw_for_drawn_places() {
    assert_eq!(Ticket::arrival(0).estimated_rank(40), 40);
    assert_eq!(Ticket::arrival(7).estimated_rank(0), 7);
    assert_eq!(Ticket::from_raw(0).estimated_rank(1_000), 0);
    assert_eq!(Ticket::from_raw(1 << 62).estimated_rank(1_000), 500);
    assert_eq!(Ticket::from_raw((1 << 63) - 1).estimated_rank(1_000), 999);
    assert_eq!(Ticket::from_raw(1 << 62).estimated_rank(0), 0);
    // Over a real draw, every estimate is near the true rank.
    let mut tickets: Vec<Ticket> = (0..2_000)
        .map(|i| Ticket::draw(SECRET, 7, &format!("user-{i}")))
        .collect();
    tickets.sort();
    for (rank, ticket) in tickets.iter().enumerate() {
        let estimate = ticket.estimated_rank(tickets.len() as u64);
        assert!(estimate.abs_diff(rank as u64) < 150, "{rank}: {estimate}");
    }
}

proptest! {
    #[test]
    fn estimated_ranks_keep_the_line_s_order(a: u64, b: u64, drawn in 0u64..1_000_000) {
        let (a, b) = (Ticket::from_raw(a), Ticket::from_raw(b));
        if a <= b {
            prop_assert!(a.estimated_rank(drawn) <= b.estimated_rank(drawn));
        }
        if a.is_drawn() {
            prop_assert!(a.estimated_rank(drawn) < drawn.max(1));
        }
    }
}
