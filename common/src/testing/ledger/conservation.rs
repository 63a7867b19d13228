//! The randomized property every participant ledger must have: many orders' actions and
//! compensations, duplicated and interleaved concurrently (with any operations of the participant's
//! own mixed in, such as billing's deposits), must conserve each resource exactly, and leave every
//! order in a state that all the answers it got agree with.
//!
//! A participant's test states its [`Space`] (resources, amounts, mix of requests), draws
//! [`Scenario`]s from [`scenarios`] and checks each with [`verify`], or with [`run`] and [`check`]
//! when its own operations change what the resources must add up to.

use super::{Answer, ORDER_CANCELLED, Participant, code};
use futures::{StreamExt, stream};
use proptest::{prelude::*, strategy::Union};
use std::{collections::BTreeMap, fmt::Debug, future::Future, ops::RangeInclusive};
use uuid::Uuid;

/// What scenarios for one participant are drawn from.
#[derive(Debug)]
pub struct Space {
    /// The resources orders ask for; each exists and starts with the scenario's `initial`.
    pub resources: &'static [&'static str],
    /// A well-formed resource that does not exist: orders ask for it as often as for each of the
    /// others, and may only end rejected (with the unknown code) or cancelled.
    pub unknown: &'static str,
    /// What each resource starts with.
    pub initial: RangeInclusive<i64>,
    /// What one order asks for.
    pub quantity: RangeInclusive<i64>,
    /// How often each kind of request is drawn, relative to the others.
    pub weights: Weights,
}

impl Space {
    /// A space of actions and compensations only ([`Weights::HOLDS_AND_RELEASES`]).
    pub const fn holds_and_releases(
        resources: &'static [&'static str],
        unknown: &'static str,
        initial: RangeInclusive<i64>,
        quantity: RangeInclusive<i64>,
    ) -> Self {
        Self {
            resources,
            unknown,
            initial,
            quantity,
            weights: Weights::HOLDS_AND_RELEASES,
        }
    }
}

#[derive(Debug)]
pub struct Weights {
    pub hold: u32,
    pub release: u32,
    /// The participant's own operations; ignored when a scenario has none.
    pub extra: u32,
}

impl Weights {
    /// Actions and compensations only, three requests in ten a compensation: enough that many
    /// orders are compensated (some before their action), while most still get to hold.
    pub const HOLDS_AND_RELEASES: Weights = Weights {
        hold: 7,
        release: 3,
        extra: 0,
    };
}

#[derive(Debug, Clone)]
pub struct Order {
    pub resource: &'static str,
    pub quantity: i64,
}

/// One request; the index is the order's (or, for `Extra`, the extra operation's). An index
/// drawn more than once is a duplicate, sent concurrently or late.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Hold(usize),
    Release(usize),
    Extra(usize),
}

#[derive(Debug, Clone)]
pub struct Scenario<X = ()> {
    pub initial: i64,
    pub orders: Vec<Order>,
    /// The participant's own operations, which `Op::Extra` points into.
    pub extras: Vec<X>,
    pub ops: Vec<Op>,
    /// How many requests are in flight at once.
    pub concurrency: usize,
}

/// The proptest settings the participants share: each case starts a service on a fresh database
/// and sends up to 200 requests, so a few cases already cover many interleavings.
pub fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 16,
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    }
}

/// Scenarios of actions and compensations only.
pub fn scenarios(space: &'static Space) -> impl Strategy<Value = Scenario> {
    scenarios_with(space, Just(Vec::new()))
}

/// Scenarios that also draw from `extras`, the participant's own operations.
pub fn scenarios_with<X: Clone + Debug>(
    space: &'static Space,
    extras: impl Strategy<Value = Vec<X>>,
) -> impl Strategy<Value = Scenario<X>> {
    let choices: Vec<&'static str> = space
        .resources
        .iter()
        .copied()
        .chain([space.unknown])
        .collect();
    let order = (prop::sample::select(choices), space.quantity.clone())
        .prop_map(|(resource, quantity)| Order { resource, quantity });
    let parts = (
        space.initial.clone(),
        prop::collection::vec(order, 1..=30),
        extras,
        1..=16usize,
    );
    parts.prop_flat_map(move |(initial, orders, extras, concurrency)| {
        let w = &space.weights;
        let mut kinds = vec![
            (w.hold, (0..orders.len()).prop_map(Op::Hold).boxed()),
            (w.release, (0..orders.len()).prop_map(Op::Release).boxed()),
        ];
        // An empty range is not a strategy, so scenarios without extras never draw one.
        if !extras.is_empty() && w.extra > 0 {
            kinds.push((w.extra, (0..extras.len()).prop_map(Op::Extra).boxed()));
        }
        prop::collection::vec(Union::new_weighted(kinds), 40..=200).prop_map(move |ops| Scenario {
            initial,
            orders: orders.clone(),
            extras: extras.clone(),
            ops,
            concurrency,
        })
    })
}

/// Every answer one order got.
#[derive(Default, Debug)]
pub struct Seen {
    pub holds: Vec<Answer>,
    pub releases: Vec<Answer>,
}

/// What a scenario's requests were answered.
#[derive(Debug)]
pub struct Run {
    /// The order ids, by order index.
    pub ids: Vec<Uuid>,
    /// By order index; orders never sent have no entry.
    pub seen: BTreeMap<usize, Seen>,
    /// The answers to the extra operations, by operation index, in no particular order.
    pub extras: Vec<(usize, Answer)>,
}

/// Sends the scenario's requests to `p`, `s.concurrency` at a time in any order; `extra(j)` sends
/// the participant's own operation `s.extras[j]`.
pub async fn run<X, F>(p: &impl Participant, s: &Scenario<X>, extra: impl Fn(usize) -> F) -> Run
where
    F: Future<Output = Answer>,
{
    let ledger = p.ledger();
    let ids: Vec<Uuid> = s.orders.iter().map(|_| Uuid::new_v4()).collect();
    let answers: Vec<(Op, Answer)> = stream::iter(s.ops.iter().copied())
        .map(|op| {
            let (ids, extra) = (&ids, &extra);
            async move {
                let answer = match op {
                    Op::Hold(i) => {
                        let o = &s.orders[i];
                        ledger.hold(ids[i], o.resource, o.quantity).await
                    }
                    Op::Release(i) => ledger.release(ids[i]).await,
                    Op::Extra(j) => extra(j).await,
                };
                (op, answer)
            }
        })
        .buffer_unordered(s.concurrency)
        .collect()
        .await;
    let mut run = Run {
        ids,
        seen: BTreeMap::new(),
        extras: Vec::new(),
    };
    for (op, answer) in answers {
        match op {
            Op::Hold(i) => run.seen.entry(i).or_default().holds.push(answer),
            Op::Release(i) => run.seen.entry(i).or_default().releases.push(answer),
            Op::Extra(j) => run.extras.push((j, answer)),
        }
    }
    run
}

/// Checks what `run` left behind: every order's recorded state agrees with its answers; every
/// listed resource's available amount plus what is held of it adds up to `expected(resource)`
/// exactly, both through the API (`GET` of each order, the public listing) and in the database;
/// and where there was enough for every order that asked, none was refused.
pub async fn check<X>(
    p: &impl Participant,
    space: &Space,
    s: &Scenario<X>,
    run: &Run,
    expected: impl Fn(&str) -> i64,
) {
    let ledger = p.ledger();
    let contract = ledger.contract();
    let mut held_by_get: BTreeMap<&str, i64> = BTreeMap::new();
    for (i, order) in s.orders.iter().enumerate() {
        let recorded = ledger.recorded(run.ids[i]).await;
        let Some(seen) = run.seen.get(&i) else {
            assert_eq!(recorded.0, 404, "order {i} was never sent: {recorded:?}");
            continue;
        };
        assert_eq!(recorded.0, 200, "order {i}: {recorded:?}");
        let state = recorded.1["state"].as_str().unwrap_or("");
        let rejection = match order.resource == space.unknown {
            true => contract.unknown_code,
            false => contract.exhausted_code,
        };
        check_order(i, state, seen, rejection);
        if order.resource == space.unknown {
            let unknown = order.resource;
            assert!(
                matches!(state, "rejected" | "cancelled"),
                "order {i}: {state} on {unknown}, which does not exist"
            );
        }
        if state == "held" {
            assert_eq!(recorded.1["resource"], order.resource, "order {i}");
            assert_eq!(recorded.1["quantity"], order.quantity, "order {i}");
            *held_by_get.entry(order.resource).or_default() += order.quantity;
        }
    }

    let listed = p.listed().await;
    for resource in space.resources {
        let found = listed.iter().any(|(r, _)| r == resource);
        assert!(found, "{resource} is not listed: {listed:?}");
    }
    for (resource, available) in &listed {
        let expected = expected(resource);
        let held = held_by_get.get(resource.as_str()).copied().unwrap_or(0);
        assert_eq!(
            available + held,
            expected,
            "{resource}: listed {available} + held {held}"
        );
        let in_db = p.available(resource).await + p.held(resource).await;
        assert_eq!(in_db, expected, "{resource} in the db");
    }

    // With enough for every order that asked, nobody may be turned away.
    for &resource in space.resources {
        let asked = |i: &usize| run.seen.get(i).map_or(&[][..], |x| &x.holds[..]);
        let orders = || (0..s.orders.len()).filter(|&i| s.orders[i].resource == resource);
        let demand: i64 = orders()
            .filter(|i| !asked(i).is_empty())
            .map(|i| s.orders[i].quantity)
            .sum();
        let refused = orders().filter(|i| {
            let refusal = |a: &Answer| a.0 == 409 && code(a) != ORDER_CANCELLED;
            asked(i).iter().any(refusal)
        });
        if demand <= s.initial {
            let initial = s.initial;
            assert_eq!(
                refused.count(),
                0,
                "{resource}: demand {demand}, initial {initial}"
            );
        }
    }
}

/// Every answer an order got must agree with its final, recorded `state`; `rejection` is the only
/// refusal it may get for want of its resource.
fn check_order(i: usize, state: &str, seen: &Seen, rejection: &str) {
    let codes: Vec<&str> = seen
        .holds
        .iter()
        .map(|a| match a.0 {
            200 => "held",
            409 => code(a),
            _ => panic!("order {i}: unexpected answer {a:?}"),
        })
        .collect();
    for a in &seen.releases {
        let got = (a.0, a.1["state"].as_str());
        assert_eq!(got, (200, Some(state)), "order {i}: {a:?}");
    }
    let all = |allowed: &[&str]| codes.iter().all(|c| allowed.contains(c));
    let compensated = !seen.releases.is_empty();
    let consistent = match state {
        "held" => !compensated && !codes.is_empty() && all(&["held"]),
        "released" => compensated && codes.contains(&"held") && all(&["held", ORDER_CANCELLED]),
        "cancelled" => compensated && all(&[ORDER_CANCELLED]),
        "rejected" => !codes.is_empty() && all(&[rejection]),
        _ => false,
    };
    assert!(
        consistent,
        "order {i}: state {state}, actions answered {codes:?}, {seen:?}"
    );
}

/// One whole case for a participant without operations of its own: starts it with `spawn(initial)`,
/// runs the scenario and checks that every resource still adds up to `initial`.
pub fn verify<P: Participant>(space: &Space, s: Scenario, spawn: impl AsyncFnOnce(i64) -> P) {
    crate::testing::block_on(async {
        let p = spawn(s.initial).await;
        let run = run(&p, &s, no_extra).await;
        check(&p, space, &s, &run, |_| s.initial).await;
    })
}

async fn no_extra(j: usize) -> Answer {
    unreachable!("extra operation {j} drawn for a scenario without extras")
}
