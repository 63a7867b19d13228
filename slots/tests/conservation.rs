//! A randomized check of the booking ledger: many orders' bookings and releases, duplicated
//! and interleaved concurrently, must conserve couriers exactly and leave every order in a state its
//! answers agree with.

mod common;

use common::{Answer, code, spawn_app};
use futures::{StreamExt, stream};
use proptest::prelude::*;
use std::collections::BTreeMap;
use uuid::Uuid;

/// The slots the orders ask for; "19:00" is a well-formed time that is not served.
const SLOTS: [&str; 4] = ["00:00", "01:00", "02:00", UNSERVED];
const UNSERVED: &str = "19:00";

#[derive(Debug, Clone)]
struct Order {
    slot: &'static str,
    quantity: i64,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Book(usize),
    Release(usize),
}

#[derive(Debug, Clone)]
struct Scenario {
    capacity: i64,
    orders: Vec<Order>,
    ops: Vec<Op>,
    /// How many requests are in flight at once.
    concurrency: usize,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let order = (prop::sample::select(&SLOTS[..]), 1..=2i64)
        .prop_map(|(slot, quantity)| Order { slot, quantity });
    (0..=8i64, prop::collection::vec(order, 1..=30), 1..=16usize).prop_flat_map(
        |(capacity, orders, concurrency)| {
            let op = (0..orders.len(), prop::bool::weighted(0.3)).prop_map(|(i, release)| {
                if release { Op::Release(i) } else { Op::Book(i) }
            });
            prop::collection::vec(op, 40..=200).prop_map(move |ops| Scenario {
                capacity,
                orders: orders.clone(),
                ops,
                concurrency,
            })
        },
    )
}

#[derive(Default, Debug)]
struct Seen {
    books: Vec<Answer>,
    releases: Vec<Answer>,
}

async fn check(s: Scenario) {
    let app = spawn_app(s.capacity).await;
    let ids: Vec<Uuid> = s.orders.iter().map(|_| Uuid::new_v4()).collect();
    let answers: Vec<(Op, Answer)> = stream::iter(s.ops.iter().copied())
        .map(|op| {
            let (app, ids, orders) = (&app, &ids, &s.orders);
            async move {
                let answer = match op {
                    Op::Book(i) => {
                        let o = &orders[i];
                        app.book(ids[i], o.slot, o.quantity).await
                    }
                    Op::Release(i) => app.release(ids[i]).await,
                };
                (op, answer)
            }
        })
        .buffer_unordered(s.concurrency)
        .collect()
        .await;
    let mut seen: BTreeMap<usize, Seen> = BTreeMap::new();
    for (op, answer) in answers {
        match op {
            Op::Book(i) => seen.entry(i).or_default().books.push(answer),
            Op::Release(i) => seen.entry(i).or_default().releases.push(answer),
        }
    }

    let mut booked_by_get: BTreeMap<&str, i64> = BTreeMap::new();
    for (i, order) in s.orders.iter().enumerate() {
        let recorded = app.hold(ids[i]).await;
        let Some(seen) = seen.get(&i) else {
            assert_eq!(recorded.0, 404, "order {i} was never sent: {recorded:?}");
            continue;
        };
        assert_eq!(recorded.0, 200, "order {i}: {recorded:?}");
        let state = recorded.1["state"].as_str().unwrap_or("").to_owned();
        check_order(i, order, &state, seen);
        if state == "held" {
            assert_eq!(recorded.1["resource"], order.slot, "order {i}");
            assert_eq!(recorded.1["quantity"], order.quantity, "order {i}");
            *booked_by_get.entry(order.slot).or_default() += order.quantity;
        }
    }

    for listed in app.slots().await {
        let slot = listed["slot"].as_str().expect("a slot");
        let free = listed["free_couriers"].as_i64().expect("free couriers");
        let booked = booked_by_get.get(slot).copied().unwrap_or(0);
        assert_eq!(
            free + booked,
            s.capacity,
            "{slot}: listed {free} + booked {booked}"
        );
        let in_db = app.free(slot).await + app.booked(slot).await;
        assert_eq!(in_db, s.capacity, "{slot} in the db");
    }
    // With enough couriers for every order that asked, nobody may be turned away.
    for &slot in &SLOTS[..3] {
        let asked = |i: &usize| seen.get(i).map_or(&[][..], |x| &x.books[..]);
        let orders = || (0..s.orders.len()).filter(|&i| s.orders[i].slot == slot);
        let demand: i64 = orders()
            .filter(|i| !asked(i).is_empty())
            .map(|i| s.orders[i].quantity)
            .sum();
        let refused = orders().filter(|i| asked(i).iter().any(|a| code(a) == "slot_unavailable"));
        if demand <= s.capacity {
            let capacity = s.capacity;
            assert_eq!(
                refused.count(),
                0,
                "{slot}: demand {demand}, capacity {capacity}"
            );
        }
    }
}

/// Every answer an order got must agree with its final, recorded state.
fn check_order(i: usize, order: &Order, state: &str, seen: &Seen) {
    let codes: Vec<&str> = seen
        .books
        .iter()
        .map(|a| match a.0 {
            200 => "held",
            409 => code(a),
            _ => panic!("order {i}: unexpected answer {a:?}"),
        })
        .collect();
    for a in &seen.releases {
        assert_eq!(
            (a.0, a.1["state"].as_str()),
            (200, Some(state)),
            "order {i}: {a:?}"
        );
    }
    let all = |allowed: &[&str]| codes.iter().all(|c| allowed.contains(c));
    let compensated = !seen.releases.is_empty();
    match state {
        "held" => assert!(
            !compensated && !codes.is_empty() && all(&["held"]),
            "order {i}: {codes:?}"
        ),
        "released" => {
            assert!(
                compensated && codes.contains(&"held"),
                "order {i}: {codes:?}"
            );
            assert!(all(&["held", "order_cancelled"]), "order {i}: {codes:?}");
        }
        "cancelled" => assert!(
            compensated && all(&["order_cancelled"]),
            "order {i}: {codes:?}"
        ),
        "rejected" => assert!(
            !codes.is_empty() && all(&["slot_unavailable"]),
            "order {i}: {codes:?}"
        ),
        other => panic!("order {i}: unknown state {other:?}"),
    }
    if order.slot == UNSERVED {
        assert!(
            matches!(state, "rejected" | "cancelled"),
            "order {i}: {state} an unserved slot"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 16,
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    })]

    #[test]
    fn bookings_conserve_couriers(s in scenario()) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(check(s));
    }
}
