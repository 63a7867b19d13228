//! The test kit for the participant ledger (`crate::ledger`), which billing, items and slots all
//! serve: a client for its HTTP contract (`PUT|DELETE|GET /internal/<route>/{order_id}` with
//! `X-Internal-Token`, docs/ARCHITECTURE.md), the contract checks every participant must pass, and
//! in [`conservation`] the randomized concurrency property they share.
//!
//! The checks are written once against [`Participant`]: each participant's tests implement it (how
//! to read what is available of a resource, and what its public API lists) and call the checks
//! from their own, named tests with their own resources. Expectations come from the contract as
//! the tests state it ([`Contract`]), never from the service's `LedgerSpec`, so a wrong spec fails.
//!
//! A participant whose public API lists its resources (items, slots) needs no harness of its own
//! beyond starting: [`Listed`] is its test app, and [`ledger_contract_tests!`](crate::ledger_contract_tests)
//! writes its contract tests; billing, which lists nothing, implements [`Participant`] itself.

pub mod conservation;
mod contract_tests;

use super::{
    Answer, INTERNAL_TOKEN, Service, answer, code,
    outage::{Link, expect_unavailable},
};
use futures::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::{collections::BTreeMap, future::Future};
use uuid::Uuid;

/// One participant's side of the internal API, as its tests expect it.
#[derive(Debug)]
pub struct Contract {
    /// `/internal/<route>/{order_id}`.
    pub route: &'static str,
    /// The 409 code for an action on a resource that does not exist.
    pub unknown_code: &'static str,
    /// The 409 code for an action asking more than is available.
    pub exhausted_code: &'static str,
}

/// Rejection of an action whose order was already compensated.
pub const ORDER_CANCELLED: &str = "order_cancelled";

/// Refusal of an action repeated with other terms than those recorded for its order.
pub const HOLD_MISMATCH: &str = "hold_mismatch";

/// A client for one participant's ledger endpoints, sending the test internal token.
#[derive(Clone)]
pub struct LedgerClient {
    http: reqwest::Client,
    base: String,
    contract: &'static Contract,
}

impl LedgerClient {
    /// The ledger of `service`, which is expected to keep `contract`.
    pub fn new(service: &Service, contract: &'static Contract) -> Self {
        Self {
            http: service.http.clone(),
            base: service.base.clone(),
            contract,
        }
    }

    pub fn contract(&self) -> &'static Contract {
        self.contract
    }

    /// The ledger URL of `order`.
    pub fn url(&self, order: Uuid) -> String {
        format!("{}/internal/{}/{order}", self.base, self.contract.route)
    }

    /// `method` on the ledger URL of `order`, with the internal token.
    pub fn request(&self, method: Method, order: Uuid) -> reqwest::RequestBuilder {
        let r = self.http.request(method, self.url(order));
        r.header("x-internal-token", INTERNAL_TOKEN)
    }

    /// The action's request, unsent.
    pub fn hold_request(
        &self,
        order: Uuid,
        resource: &str,
        quantity: i64,
    ) -> reqwest::RequestBuilder {
        let body = json!({"resource": resource, "quantity": quantity});
        self.request(Method::PUT, order).json(&body)
    }

    /// The action (`PUT`): hold `quantity` of `resource` for `order`.
    pub async fn hold(&self, order: Uuid, resource: &str, quantity: i64) -> Answer {
        answer(self.hold_request(order, resource, quantity)).await
    }

    /// The compensation (`DELETE`).
    pub async fn release(&self, order: Uuid) -> Answer {
        answer(self.request(Method::DELETE, order)).await
    }

    /// What the ledger recorded for `order` (`GET`).
    pub async fn recorded(&self, order: Uuid) -> Answer {
        answer(self.request(Method::GET, order)).await
    }
}

/// The answer to a granted action, and to every repeat of it.
pub fn granted(order: Uuid, resource: &str, quantity: i64) -> Answer {
    let body =
        json!({"order_id": order, "state": "held", "resource": resource, "quantity": quantity});
    (200, body)
}

/// How much of `resource` the `holds` table (the same in every participant's database) says is
/// held.
async fn held_in_db(pool: &PgPool, resource: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COALESCE(sum(quantity), 0)::bigint FROM holds \
         WHERE state = 'held' AND resource = $1",
    )
    .bind(resource)
    .fetch_one(pool)
    .await
    .expect("summing holds")
}

/// A participant under test, as the shared checks see it.
pub trait Participant {
    fn ledger(&self) -> &LedgerClient;

    /// The participant's database.
    fn pool(&self) -> &PgPool;

    /// What is available of `resource` (stock, free couriers, wallet), read from the database.
    fn available(&self, resource: &str) -> impl Future<Output = i64>;

    /// Every resource with what the public API lists as available, for checks that must hold from
    /// the outside too.
    fn listed(&self) -> impl Future<Output = Vec<(String, i64)>>;

    /// How much of `resource` is held, read from the database.
    fn held(&self, resource: &str) -> impl Future<Output = i64> {
        held_in_db(self.pool(), resource)
    }
}

/// Where a participant's resources are, inside and out: the table `GET /api/<table>` lists, whose
/// rows are keyed by the `key` column and hold the `available` column, both also fields of each
/// listed row.
#[derive(Debug)]
pub struct Listing {
    pub table: &'static str,
    pub key: &'static str,
    pub available: &'static str,
}

/// A participant that lists its resources, started for a test: the service, its ledger, and what
/// it lists.
pub struct Listed {
    pub service: Service,
    pub ledger: LedgerClient,
    listing: &'static Listing,
}

impl Listed {
    pub fn new(service: Service, contract: &'static Contract, listing: &'static Listing) -> Self {
        let ledger = LedgerClient::new(&service, contract);
        Self {
            service,
            ledger,
            listing,
        }
    }

    /// `GET /api/<table>`, unsent.
    pub fn list_request(&self) -> reqwest::RequestBuilder {
        let url = format!("{}/api/{}", self.service.base, self.listing.table);
        self.service.http.get(url)
    }

    /// `GET /api/<table>`: every row as the public API shows it.
    pub async fn list(&self) -> Vec<Value> {
        let (status, rows) = answer(self.list_request()).await;
        assert_eq!(status, 200, "{rows}");
        serde_json::from_value(rows).expect("a JSON list")
    }
}

impl Participant for Listed {
    fn ledger(&self) -> &LedgerClient {
        &self.ledger
    }

    fn pool(&self) -> &PgPool {
        &self.service.pool
    }

    async fn available(&self, resource: &str) -> i64 {
        let Listing {
            table,
            key,
            available,
        } = self.listing;
        // The names are the test's constants; the key is compared as text, as the ledger takes it.
        let sql = format!("SELECT {available}::bigint FROM {table} WHERE {key}::text = $1");
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(resource)
            .fetch_one(&self.service.pool)
            .await
            .unwrap_or_else(|e| panic!("reading {available} of {resource:?}: {e}"))
    }

    async fn listed(&self) -> Vec<(String, i64)> {
        let Listing { key, available, .. } = self.listing;
        let row = |r: &Value| {
            let name = match &r[key] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (name, r[available].as_i64().expect("an amount"))
        };
        self.list().await.iter().map(row).collect()
    }
}

// ---- contract checks ---------------------------------------------------------------------------
// Each runs on a freshly started participant and expects `resource` to be untouched so far.

/// Where a check of one order starts: the ledger, what `resource` has left, and an order the
/// ledger has never seen.
async fn new_order<'p>(p: &'p impl Participant, resource: &str) -> (&'p LedgerClient, i64, Uuid) {
    (p.ledger(), p.available(resource).await, Uuid::new_v4())
}

/// With the participant's database down (`link` cut), its ledger and a `public` request of its
/// own API answer 503 `unavailable` with `Retry-After`, never 500; nothing is half-done, so once the
/// database is back the retried action is granted and takes `quantity` once.
pub async fn a_database_outage_is_503_until_it_is_back(
    p: &impl Participant,
    link: &Link,
    public: reqwest::RequestBuilder,
    resource: &str,
    quantity: i64,
) {
    let (ledger, before, order) = new_order(p, resource).await;
    link.cut().await;
    // Concurrently: each waits out the pool's acquire timeout.
    tokio::join!(
        expect_unavailable(ledger.hold_request(order, resource, quantity)),
        expect_unavailable(ledger.request(Method::DELETE, order)),
        expect_unavailable(public),
    );
    link.restore().await;
    let grant = granted(order, resource, quantity);
    assert_eq!(ledger.hold(order, resource, quantity).await, grant);
    assert_eq!(p.available(resource).await, before - quantity);
}

/// A repeated action is answered with the recorded grant and takes `quantity` once.
pub async fn repeated_hold_takes_once(p: &impl Participant, resource: &str, quantity: i64) {
    let (ledger, before, order) = new_order(p, resource).await;
    let grant = granted(order, resource, quantity);
    assert_eq!(ledger.hold(order, resource, quantity).await, grant);
    assert_eq!(ledger.hold(order, resource, quantity).await, grant);
    assert_eq!(p.available(resource).await, before - quantity);
    assert_eq!(ledger.recorded(order).await, grant);
}

/// A repeated compensation gives back once and answers the same; a late duplicate of the action
/// is refused and must not take the resource again.
pub async fn repeated_release_gives_back_once(p: &impl Participant, resource: &str, quantity: i64) {
    let (ledger, before, order) = new_order(p, resource).await;
    assert_eq!(ledger.hold(order, resource, quantity).await.0, 200);
    let released =
        json!({"order_id": order, "state": "released", "resource": resource, "quantity": quantity});
    assert_eq!(ledger.release(order).await, (200, released.clone()));
    assert_eq!(ledger.release(order).await, (200, released.clone()));
    assert_eq!(p.available(resource).await, before);
    assert_eq!(ledger.recorded(order).await, (200, released));
    let late = ledger.hold(order, resource, quantity).await;
    assert_eq!((late.0, code(&late)), (409, ORDER_CANCELLED));
    assert_eq!(p.available(resource).await, before);
}

/// A replay of an action with other terms than recorded (another resource, another quantity) is a
/// contract error, 422 `hold_mismatch`, never the recorded grant as if it matched; it takes nothing
/// and leaves the recorded hold as it was. A compensated order still refuses any action with
/// `order_cancelled`, whatever its terms.
pub async fn a_replay_with_other_terms_is_refused(
    p: &impl Participant,
    resource: &str,
    other_resource: &str,
    quantity: i64,
) {
    let (ledger, before, order) = new_order(p, resource).await;
    let grant = granted(order, resource, quantity);
    assert_eq!(ledger.hold(order, resource, quantity).await, grant);
    for (r, q) in [
        (resource, quantity + 1),
        (other_resource, quantity),
        ("", quantity),
    ] {
        let replay = ledger.hold(order, r, q).await;
        assert_eq!(
            (replay.0, code(&replay)),
            (422, HOLD_MISMATCH),
            "replay with {r:?} x {q}: {replay:?}"
        );
    }
    assert_eq!(p.available(resource).await, before - quantity);
    assert_eq!(ledger.recorded(order).await, grant);
    assert_eq!(ledger.hold(order, resource, quantity).await, grant);
    ledger.release(order).await;
    let late = ledger.hold(order, other_resource, quantity + 1).await;
    assert_eq!((late.0, code(&late)), (409, ORDER_CANCELLED), "{late:?}");
    assert_eq!(p.available(resource).await, before);
}

/// A compensation that arrives before its action leaves a tombstone that refuses the late action.
pub async fn release_before_hold_leaves_a_tombstone(
    p: &impl Participant,
    resource: &str,
    quantity: i64,
) {
    let (ledger, before, order) = new_order(p, resource).await;
    let (status, body) = ledger.release(order).await;
    assert_eq!((status, &body["state"]), (200, &json!("cancelled")));
    let late = ledger.hold(order, resource, quantity).await;
    assert_eq!((late.0, code(&late)), (409, ORDER_CANCELLED));
    assert_eq!(p.available(resource).await, before);
    assert_eq!(p.held(resource).await, 0);
    assert_eq!(ledger.recorded(order).await.1["state"], "cancelled");
    assert_eq!(ledger.release(order).await.1["state"], "cancelled");
}

/// Twenty orders race for the last `quantity` of `resource`: exactly one wins, the others are
/// refused as exhausted, and nothing is overdrawn.
pub async fn twenty_orders_race_for_the_last(p: &impl Participant, resource: &str, quantity: i64) {
    let ledger = p.ledger();
    assert_eq!(
        p.available(resource).await,
        quantity,
        "the race needs exactly that left"
    );
    let orders: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();
    let answers = join_all(orders.iter().map(|&o| ledger.hold(o, resource, quantity))).await;
    let winners = answers.iter().filter(|a| a.0 == 200).count();
    assert_eq!(winners, 1, "{answers:?}");
    let exhausted = ledger.contract().exhausted_code;
    for a in answers.iter().filter(|a| a.0 != 200) {
        assert_eq!((a.0, code(a)), (409, exhausted), "{a:?}");
    }
    assert_eq!(p.available(resource).await, 0);
    assert_eq!(p.held(resource).await, quantity);
}

/// The same action sent ten times at once is granted to all of them and takes `quantity` once.
pub async fn the_same_hold_at_once_takes_once(p: &impl Participant, resource: &str, quantity: i64) {
    let (ledger, before, order) = new_order(p, resource).await;
    let answers = join_all((0..10).map(|_| ledger.hold(order, resource, quantity))).await;
    for a in answers {
        assert_eq!(a, granted(order, resource, quantity));
    }
    assert_eq!(p.available(resource).await, before - quantity);
    assert_eq!(p.held(resource).await, quantity);
}

/// The same compensation sent ten times at once answers `released` to all and gives back once.
pub async fn the_same_release_at_once_gives_back_once(
    p: &impl Participant,
    resource: &str,
    quantity: i64,
) {
    let (ledger, before, order) = new_order(p, resource).await;
    assert_eq!(ledger.hold(order, resource, quantity).await.0, 200);
    let answers = join_all((0..10).map(|_| ledger.release(order))).await;
    for a in answers {
        assert_eq!((a.0, &a.1["state"]), (200, &json!("released")), "{a:?}");
    }
    assert_eq!(p.available(resource).await, before);
}

/// Actions and compensations of the same order racing each other never fail (they once
/// deadlocked, or tripped a CHECK with a give-back computed from a stale snapshot: see
/// `crate::ledger`), and leave nothing held. Both outcomes of the race must happen (a hold first:
/// `released`; a release first: `cancelled`), or the race was never run: the rounds alternate
/// which side is sent first and go on, bounded, until each outcome was seen.
pub async fn holds_racing_their_releases_never_fail(
    p: &impl Participant,
    resource: &str,
    quantity: i64,
) {
    const ROUNDS: usize = 30;
    const MAX_ROUNDS: usize = 300;
    let (ledger, before) = (p.ledger(), p.available(resource).await);
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut round = 0;
    while round < ROUNDS || (outcomes.len() < 2 && round < MAX_ROUNDS) {
        let order = Uuid::new_v4();
        let holds = join_all((0..3).map(|_| ledger.hold(order, resource, quantity)));
        let releases = join_all((0..3).map(|_| ledger.release(order)));
        let (holds, releases) = if round % 2 == 0 {
            futures::join!(holds, releases)
        } else {
            let (releases, holds) = futures::join!(releases, holds);
            (holds, releases)
        };
        for a in holds.iter().chain(&releases) {
            assert!(a.0 == 200 || code(a) == ORDER_CANCELLED, "{a:?}");
        }
        let state = ledger.recorded(order).await.1["state"].clone();
        let state = state.as_str().unwrap_or_default().to_owned();
        assert!(state == "released" || state == "cancelled", "{state}");
        *outcomes.entry(state).or_default() += 1;
        round += 1;
    }
    assert_eq!(
        outcomes.keys().map(String::as_str).collect::<Vec<_>>(),
        ["cancelled", "released"],
        "both outcomes of the race within {MAX_ROUNDS} rounds: {outcomes:?}"
    );
    assert_eq!(p.available(resource).await, before);
    assert_eq!(p.held(resource).await, 0);
}

/// Actions on resources that do not exist are refused with the unknown code, and a retry gets the
/// same answer. `unknown` is well-formed, so its refusal must also be recorded as the order's
/// outcome; `others`, well-formed or not, are only required to be refused the same way (a
/// malformed key may be refused before anything is recorded).
pub async fn unknown_resources_are_rejected(p: &impl Participant, unknown: &str, others: &[&str]) {
    let ledger = p.ledger();
    let unknown_code = ledger.contract().unknown_code;
    for resource in [unknown].iter().chain(others) {
        let order = Uuid::new_v4();
        let a = ledger.hold(order, resource, 1).await;
        assert_eq!((a.0, code(&a)), (409, unknown_code), "{resource:?}: {a:?}");
        let retry = ledger.hold(order, resource, 1).await;
        assert_eq!(retry, a, "{resource:?}: a retry changed");
    }
    let order = Uuid::new_v4();
    ledger.hold(order, unknown, 1).await;
    let recorded = ledger.recorded(order).await.1;
    assert_eq!(recorded["state"], "rejected");
    assert_eq!(recorded["error_code"], unknown_code);
}

/// An order refused because `resource` ran out stays refused even once it is back, and
/// compensating it gives nothing back. The first order takes all there is.
pub async fn an_exhausted_rejection_is_final(p: &impl Participant, resource: &str) {
    let (ledger, all) = (p.ledger(), p.available(resource).await);
    let first = Uuid::new_v4();
    assert_eq!(ledger.hold(first, resource, all).await.0, 200);
    let late = Uuid::new_v4();
    let refused = ledger.hold(late, resource, 1).await;
    let exhausted = ledger.contract().exhausted_code;
    assert_eq!((refused.0, code(&refused)), (409, exhausted));
    // Even with the resource back, the recorded outcome of `late` is its answer.
    ledger.release(first).await;
    assert_eq!(p.available(resource).await, all);
    assert_eq!(ledger.hold(late, resource, 1).await, refused);
    assert_eq!(p.available(resource).await, all);
    let (status, body) = ledger.release(late).await;
    assert_eq!((status, &body["state"]), (200, &json!("rejected")));
    assert_eq!(p.available(resource).await, all);
}

/// A quantity of zero or less is a malformed request, not a business rejection, and takes nothing.
pub async fn a_non_positive_quantity_is_a_bad_request(p: &impl Participant, resource: &str) {
    let (ledger, before) = (p.ledger(), p.available(resource).await);
    for quantity in [0, -1] {
        let a = ledger.hold(Uuid::new_v4(), resource, quantity).await;
        assert_eq!((a.0, code(&a)), (400, "invalid_field"), "{a:?}");
    }
    assert_eq!(p.available(resource).await, before);
}

/// Reading an order the ledger never saw is a 404.
pub async fn an_unknown_order_is_not_found(p: &impl Participant) {
    let a = p.ledger().recorded(Uuid::new_v4()).await;
    assert_eq!((a.0, code(&a)), (404, "not_found"));
}

/// Every ledger method refuses a missing (401) or wrong (403) internal token, and changes nothing.
pub async fn the_ledger_requires_the_internal_token(p: &impl Participant, resource: &str) {
    let (ledger, before, order) = new_order(p, resource).await;
    let body = json!({"resource": resource, "quantity": 1});
    for token in [None, Some("wrong-token-0123456789")] {
        for method in [Method::PUT, Method::DELETE, Method::GET] {
            let mut req = ledger.http.request(method.clone(), ledger.url(order));
            if let Some(t) = token {
                req = req.header("x-internal-token", t);
            }
            let a = answer(req.json(&body)).await;
            let expected = match token {
                None => (401, "missing_internal_token"),
                Some(_) => (403, "bad_internal_token"),
            };
            assert_eq!((a.0, code(&a)), expected, "{method} {token:?}");
        }
    }
    assert_eq!(p.available(resource).await, before);
    assert_eq!(ledger.recorded(order).await.0, 404);
}

/// A batch of actions (`PUT /internal/<route>`, what the mediator sends under load) answers each
/// order as its own action would, in one transaction: a new order granted, a replay granted
/// without taking twice, a compensated order refused with `order_cancelled`, two orders racing for
/// the last `quantity` one granted and one refused as exhausted, a replay with other terms
/// recorded as it was (the mediator reads the mismatch from the record).
pub async fn a_batch_answers_each_order_as_its_own_action(
    p: &impl Participant,
    resource: &str,
    quantity: i64,
) {
    let (ledger, before, replayed) = new_order(p, resource).await;
    assert_eq!(ledger.hold(replayed, resource, quantity).await.0, 200);
    let compensated = Uuid::new_v4();
    assert_eq!(ledger.release(compensated).await.0, 200);
    // Time-ordered ids: the batch takes its holds in (resource, order id) order, so `new` goes
    // first, then the racers, each asking for more than half of what `new` leaves.
    let (new, racing) = (Uuid::now_v7(), [Uuid::now_v7(), Uuid::now_v7()]);
    let left = before - 2 * quantity;
    assert!(left >= 1, "the race needs something left");
    let racing_quantity = left / 2 + 1;
    let batch = json!([
        {"order_id": new, "resource": resource, "quantity": quantity},
        {"order_id": replayed, "resource": resource, "quantity": quantity},
        {"order_id": compensated, "resource": resource, "quantity": quantity},
        {"order_id": racing[0], "resource": resource, "quantity": racing_quantity},
        {"order_id": racing[1], "resource": resource, "quantity": racing_quantity},
        {"order_id": replayed, "resource": resource, "quantity": quantity + 1},
    ]);
    let url = format!("{}/internal/{}", ledger.base, ledger.contract.route);
    let request = ledger
        .http
        .put(url)
        .header("x-internal-token", INTERNAL_TOKEN);
    let (status, records) = answer(request.json(&batch)).await;
    assert_eq!(status, 200, "{records}");
    let state = |i: usize| records[i]["state"].as_str().unwrap_or_default().to_owned();
    assert_eq!(records[0], granted(new, resource, quantity).1);
    assert_eq!(records[1], granted(replayed, resource, quantity).1);
    assert_eq!(
        (state(2), &records[2]["order_id"]),
        ("cancelled".into(), &json!(compensated))
    );
    assert_eq!(records[3], granted(racing[0], resource, racing_quantity).1);
    assert_eq!(
        (state(4), &records[4]["error_code"]),
        ("rejected".into(), &json!(ledger.contract.exhausted_code))
    );
    assert_eq!(
        records[5],
        granted(replayed, resource, quantity).1,
        "the record, not a new hold"
    );
    assert_eq!(
        p.available(resource).await,
        before - 2 * quantity - racing_quantity,
        "each granted hold taken once"
    );
}
