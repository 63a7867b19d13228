//! A randomized check of the reservation ledger: many orders' reservations and releases, duplicated
//! and interleaved concurrently, must conserve stock exactly and leave every order in a state its
//! answers agree with.

mod common;

use common::{Answer, code, spawn_app};
use futures::{StreamExt, stream};
use proptest::prelude::*;
use std::collections::BTreeMap;
use uuid::Uuid;

/// The items the orders ask for; 999 does not exist.
const ITEMS: [i64; 4] = [1, 2, 3, 999];

#[derive(Debug, Clone)]
struct Order {
    item: i64,
    quantity: i64,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Reserve(usize),
    Release(usize),
}

#[derive(Debug, Clone)]
struct Scenario {
    stock: i64,
    orders: Vec<Order>,
    ops: Vec<Op>,
    /// How many requests are in flight at once.
    concurrency: usize,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let order = (prop::sample::select(&ITEMS[..]), 1..=3i64)
        .prop_map(|(item, quantity)| Order { item, quantity });
    (0..=8i64, prop::collection::vec(order, 1..=30), 1..=16usize).prop_flat_map(
        |(stock, orders, concurrency)| {
            let op = (0..orders.len(), prop::bool::weighted(0.3)).prop_map(|(i, release)| {
                if release {
                    Op::Release(i)
                } else {
                    Op::Reserve(i)
                }
            });
            prop::collection::vec(op, 40..=200).prop_map(move |ops| Scenario {
                stock,
                orders: orders.clone(),
                ops,
                concurrency,
            })
        },
    )
}

#[derive(Default, Debug)]
struct Seen {
    reserves: Vec<Answer>,
    releases: Vec<Answer>,
}

async fn check(s: Scenario) {
    let app = spawn_app(s.stock).await;
    let ids: Vec<Uuid> = s.orders.iter().map(|_| Uuid::new_v4()).collect();
    let answers: Vec<(Op, Answer)> = stream::iter(s.ops.iter().copied())
        .map(|op| {
            let (app, ids, orders) = (&app, &ids, &s.orders);
            async move {
                let answer = match op {
                    Op::Reserve(i) => {
                        let o = &orders[i];
                        app.reserve(ids[i], &o.item.to_string(), o.quantity).await
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
            Op::Reserve(i) => seen.entry(i).or_default().reserves.push(answer),
            Op::Release(i) => seen.entry(i).or_default().releases.push(answer),
        }
    }

    let mut held_by_get: BTreeMap<i64, i64> = BTreeMap::new();
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
            assert_eq!(recorded.1["resource"], order.item.to_string(), "order {i}");
            assert_eq!(recorded.1["quantity"], order.quantity, "order {i}");
            *held_by_get.entry(order.item).or_default() += order.quantity;
        }
    }

    for item in app.catalog().await {
        let id = item["id"].as_i64().expect("an id");
        let stock = item["stock"].as_i64().expect("a stock");
        let held = held_by_get.get(&id).copied().unwrap_or(0);
        assert_eq!(
            stock + held,
            s.stock,
            "item {id}: listed {stock} + held {held}"
        );
        assert_eq!(
            app.stock(id).await + app.held(id).await,
            s.stock,
            "item {id} in the db"
        );
    }
    // With enough stock for every order that asked, nobody may be turned away.
    for &item in &ITEMS[..3] {
        let asked = |i: &usize| seen.get(i).map_or(&[][..], |x| &x.reserves[..]);
        let orders = || (0..s.orders.len()).filter(|&i| s.orders[i].item == item);
        let demand: i64 = orders()
            .filter(|i| !asked(i).is_empty())
            .map(|i| s.orders[i].quantity)
            .sum();
        let refused = orders().filter(|i| asked(i).iter().any(|a| code(a) == "item_unavailable"));
        if demand <= s.stock {
            let stock = s.stock;
            assert_eq!(
                refused.count(),
                0,
                "item {item}: demand {demand}, stock {stock}"
            );
        }
    }
}

/// Every answer an order got must agree with its final, recorded state.
fn check_order(i: usize, order: &Order, state: &str, seen: &Seen) {
    let codes: Vec<&str> = seen
        .reserves
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
            !codes.is_empty() && all(&["item_unavailable"]),
            "order {i}: {codes:?}"
        ),
        other => panic!("order {i}: unknown state {other:?}"),
    }
    if order.item == 999 {
        assert!(
            matches!(state, "rejected" | "cancelled"),
            "order {i}: {state} an unknown item"
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
    fn reservations_conserve_stock(s in scenario()) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(check(s));
    }
}
