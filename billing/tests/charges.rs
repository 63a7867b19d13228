//! The money step of the saga over real HTTP and Postgres: idempotent charges and refunds,
//! tombstones, races for the last money, rejections, the token guard, and a randomized check that
//! charges, refunds and deposits interleaved concurrently conserve money exactly.

use futures::{StreamExt, future::join_all, stream};
use proptest::prelude::*;
use reqwest::Method;
use serde_json::{Value, json};
use shop_common::{domain::Money, testing};
use sqlx::PgPool;
use std::collections::BTreeMap;
use uuid::Uuid;

/// A response reduced to what the tests compare.
type Answer = (u16, Value);

struct App {
    base: String,
    http: reqwest::Client,
    pool: PgPool,
}

/// billing on a fresh database; new wallets start with `initial` cents.
async fn spawn_app(initial: i64) -> App {
    let (pool, database) = testing::migrated_pool(&billing::MIGRATOR).await;
    let config = billing::Config {
        http: testing::http(),
        database,
        jwt_secret: testing::jwt_secret(),
        internal_token: testing::internal_token(),
        initial_wallet: Money::from_minor(initial),
    };
    App {
        base: testing::serve(billing::build_router(pool.clone(), &config)).await,
        http: reqwest::Client::new(),
        pool,
    }
}

async fn answer(r: reqwest::RequestBuilder) -> Answer {
    let r = r.send().await.expect("billing answered");
    let status = r.status().as_u16();
    (status, r.json().await.expect("a JSON body"))
}

impl App {
    async fn create_account(&self, username: &str) {
        let body = json!({"username": username, "email": format!("{username}@example.com")});
        let r = self.http.post(format!("{}/internal/accounts", self.base));
        let r = r
            .header("x-internal-token", testing::INTERNAL_TOKEN)
            .json(&body);
        assert_eq!(answer(r).await.0, 201);
    }

    fn ledger(&self, method: Method, order: Uuid) -> reqwest::RequestBuilder {
        let url = format!("{}/internal/charges/{order}", self.base);
        let r = self.http.request(method, url);
        r.header("x-internal-token", testing::INTERNAL_TOKEN)
    }

    async fn charge(&self, order: Uuid, username: &str, cents: i64) -> Answer {
        let body = json!({"resource": username, "quantity": cents});
        answer(self.ledger(Method::PUT, order).json(&body)).await
    }

    async fn refund(&self, order: Uuid) -> Answer {
        answer(self.ledger(Method::DELETE, order)).await
    }

    async fn recorded(&self, order: Uuid) -> Answer {
        answer(self.ledger(Method::GET, order)).await
    }

    async fn deposit(&self, username: &str, cents: i64, key: &str) -> Answer {
        let url = format!("{}/api/accounts/{username}/deposits", self.base);
        let r = self
            .http
            .post(url)
            .bearer_auth(testing::access_token(username));
        let amount = Money::from_minor(cents).units();
        answer(
            r.header("Idempotency-Key", key)
                .json(&json!({"amount": amount})),
        )
        .await
    }

    /// The wallet in cents, as its owner sees it through the public API.
    async fn wallet(&self, username: &str) -> i64 {
        let url = format!("{}/api/accounts/{username}", self.base);
        let r = self
            .http
            .get(url)
            .bearer_auth(testing::access_token(username));
        let (status, body) = answer(r).await;
        assert_eq!(status, 200, "{body}");
        cents(&body["wallet"])
    }

    /// The wallet in cents, read from the database.
    async fn wallet_in_db(&self, username: &str) -> i64 {
        sqlx::query_scalar("SELECT wallet FROM accounts WHERE username = $1")
            .bind(username)
            .fetch_one(&self.pool)
            .await
            .expect("reading a wallet")
    }

    /// What the ledger says is charged to `username`, read from the database.
    async fn charged_in_db(&self, username: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT COALESCE(sum(quantity), 0)::bigint FROM holds \
             WHERE state = 'held' AND resource = $1",
        )
        .bind(username)
        .fetch_one(&self.pool)
        .await
        .expect("summing holds")
    }
}

fn cents(units: &Value) -> i64 {
    (units.as_f64().expect("an amount") * 100.0).round() as i64
}

fn code(answer: &Answer) -> &str {
    answer.1["error"].as_str().unwrap_or("")
}

/// The answer to a granted charge, and to every repeat of it.
fn granted(order: Uuid, username: &str, cents: i64) -> Answer {
    let body = json!({"order_id": order, "state": "held", "resource": username, "quantity": cents});
    (200, body)
}

#[tokio::test]
async fn a_repeated_charge_takes_money_once() {
    let app = spawn_app(10_000).await;
    app.create_account("alice").await;
    let order = Uuid::new_v4();
    assert_eq!(
        app.charge(order, "alice", 1250).await,
        granted(order, "alice", 1250)
    );
    assert_eq!(
        app.charge(order, "alice", 1250).await,
        granted(order, "alice", 1250)
    );
    assert_eq!(app.wallet("alice").await, 8750);
    assert_eq!(app.recorded(order).await, granted(order, "alice", 1250));
}

#[tokio::test]
async fn a_repeated_refund_gives_back_once() {
    let app = spawn_app(10_000).await;
    app.create_account("alice").await;
    let order = Uuid::new_v4();
    app.charge(order, "alice", 1250).await;
    let refunded =
        json!({"order_id": order, "state": "released", "resource": "alice", "quantity": 1250});
    assert_eq!(app.refund(order).await, (200, refunded.clone()));
    assert_eq!(app.refund(order).await, (200, refunded.clone()));
    assert_eq!(app.wallet("alice").await, 10_000);
    assert_eq!(app.recorded(order).await, (200, refunded));
    let late = app.charge(order, "alice", 1250).await;
    assert_eq!((late.0, code(&late)), (409, "order_cancelled"));
    assert_eq!(app.wallet("alice").await, 10_000);
}

#[tokio::test]
async fn a_refund_before_the_charge_leaves_a_tombstone() {
    let app = spawn_app(10_000).await;
    app.create_account("alice").await;
    let order = Uuid::new_v4();
    let (status, body) = app.refund(order).await;
    assert_eq!((status, &body["state"]), (200, &json!("cancelled")));
    let late = app.charge(order, "alice", 500).await;
    assert_eq!((late.0, code(&late)), (409, "order_cancelled"));
    assert_eq!(app.wallet("alice").await, 10_000);
    assert_eq!(app.charged_in_db("alice").await, 0);
    assert_eq!(app.recorded(order).await.1["state"], "cancelled");
    assert_eq!(app.refund(order).await.1["state"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_orders_race_for_the_last_money_and_one_wins() {
    let app = spawn_app(300).await;
    app.create_account("alice").await;
    let orders: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();
    let answers = join_all(orders.iter().map(|&o| app.charge(o, "alice", 300))).await;
    let winners = answers.iter().filter(|a| a.0 == 200).count();
    assert_eq!(winners, 1, "{answers:?}");
    for a in answers.iter().filter(|a| a.0 != 200) {
        assert_eq!((a.0, code(a)), (409, "insufficient_funds"), "{a:?}");
    }
    assert_eq!(app.wallet_in_db("alice").await, 0);
    assert_eq!(app.charged_in_db("alice").await, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_charge_sent_ten_times_at_once_takes_money_once() {
    let app = spawn_app(10_000).await;
    app.create_account("alice").await;
    let order = Uuid::new_v4();
    let answers = join_all((0..10).map(|_| app.charge(order, "alice", 700))).await;
    for a in answers {
        assert_eq!(a, granted(order, "alice", 700));
    }
    assert_eq!(app.wallet_in_db("alice").await, 9300);
    assert_eq!(app.charged_in_db("alice").await, 700);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_refund_sent_ten_times_at_once_gives_back_once() {
    let app = spawn_app(10_000).await;
    app.create_account("alice").await;
    let order = Uuid::new_v4();
    app.charge(order, "alice", 700).await;
    let answers = join_all((0..10).map(|_| app.refund(order))).await;
    for a in answers {
        assert_eq!((a.0, &a.1["state"]), (200, &json!("released")), "{a:?}");
    }
    assert_eq!(app.wallet_in_db("alice").await, 10_000);
}

/// Regression: a charge and refunds of the same order racing each other used to deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn charges_racing_their_refunds_never_fail() {
    let app = spawn_app(1000).await;
    app.create_account("alice").await;
    for _ in 0..30 {
        let order = Uuid::new_v4();
        let charges = (0..3).map(|_| app.charge(order, "alice", 400));
        let refunds = (0..3).map(|_| app.refund(order));
        let (charges, refunds) = futures::join!(join_all(charges), join_all(refunds));
        for a in charges.iter().chain(&refunds) {
            assert!(a.0 == 200 || code(a) == "order_cancelled", "{a:?}");
        }
        let state = app.recorded(order).await.1["state"].clone();
        assert!(state == "released" || state == "cancelled", "{state}");
    }
    assert_eq!(app.wallet_in_db("alice").await, 1000);
    assert_eq!(app.charged_in_db("alice").await, 0);
}

#[tokio::test]
async fn too_little_money_is_rejected_and_the_rejection_is_final() {
    let app = spawn_app(1000).await;
    app.create_account("alice").await;
    let order = Uuid::new_v4();
    let refused = app.charge(order, "alice", 1001).await;
    assert_eq!((refused.0, code(&refused)), (409, "insufficient_funds"));
    assert_eq!(app.wallet("alice").await, 1000);
    // Even once the wallet could pay, the recorded outcome of `order` is its answer.
    assert_eq!(app.deposit("alice", 5000, "top-up").await.0, 200);
    assert_eq!(app.charge(order, "alice", 1001).await, refused);
    assert_eq!(app.wallet("alice").await, 6000);
    let recorded = app.recorded(order).await.1;
    assert_eq!(recorded["state"], "rejected");
    assert_eq!(recorded["error_code"], "insufficient_funds");
    let (status, body) = app.refund(order).await;
    assert_eq!((status, &body["state"]), (200, &json!("rejected")));
    assert_eq!(app.wallet("alice").await, 6000);
}

#[tokio::test]
async fn an_unknown_account_is_rejected() {
    let app = spawn_app(1000).await;
    app.create_account("alice").await;
    for username in ["mallory", ""] {
        let order = Uuid::new_v4();
        let a = app.charge(order, username, 100).await;
        assert_eq!(
            (a.0, code(&a)),
            (409, "account_not_found"),
            "{username:?}: {a:?}"
        );
        assert_eq!(
            app.charge(order, username, 100).await,
            a,
            "{username:?}: a retry changed"
        );
    }
    assert_eq!(app.wallet("alice").await, 1000);
}

#[tokio::test]
async fn the_owner_sees_charges_and_refunds_in_the_wallet() {
    let app = spawn_app(10_000).await;
    app.create_account("alice").await;
    app.create_account("bob").await;
    let order = Uuid::new_v4();
    app.charge(order, "alice", 2599).await;
    assert_eq!(app.wallet("alice").await, 7401);
    assert_eq!(app.wallet("bob").await, 10_000);
    app.refund(order).await;
    assert_eq!(app.wallet("alice").await, 10_000);
}

#[tokio::test]
async fn the_ledger_requires_the_internal_token() {
    let app = spawn_app(1000).await;
    app.create_account("alice").await;
    let order = Uuid::new_v4();
    let url = format!("{}/internal/charges/{order}", app.base);
    let body = json!({"resource": "alice", "quantity": 100});
    for token in [None, Some("wrong-token-0123456789")] {
        for method in [Method::PUT, Method::DELETE, Method::GET] {
            let mut req = app.http.request(method.clone(), &url).json(&body);
            if let Some(t) = token {
                req = req.header("x-internal-token", t);
            }
            let a = answer(req).await;
            let expected = match token {
                None => (401, "missing_internal_token"),
                Some(_) => (403, "bad_internal_token"),
            };
            assert_eq!((a.0, code(&a)), expected, "{method} {token:?}");
        }
    }
    assert_eq!(app.wallet("alice").await, 1000);
    assert_eq!(app.recorded(order).await.0, 404);
}

// ---- randomized conservation ------------------------------------------------------------------

/// The accounts orders charge; the last one is never created.
const ACCOUNTS: [&str; 4] = ["alice", "bob", "carol", UNKNOWN];
const UNKNOWN: &str = "mallory";

#[derive(Debug, Clone)]
struct Order {
    account: &'static str,
    cents: i64,
}

#[derive(Debug, Clone)]
struct Deposit {
    account: &'static str,
    cents: i64,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Charge(usize),
    Refund(usize),
    /// Repeats of a deposit carry the same Idempotency-Key, so they apply once.
    Deposit(usize),
}

#[derive(Debug, Clone)]
struct Scenario {
    initial: i64,
    orders: Vec<Order>,
    deposits: Vec<Deposit>,
    ops: Vec<Op>,
    concurrency: usize,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let order = (prop::sample::select(&ACCOUNTS[..]), 1..=800i64)
        .prop_map(|(account, cents)| Order { account, cents });
    let deposit = (prop::sample::select(&ACCOUNTS[..3]), 1..=1000i64)
        .prop_map(|(account, cents)| Deposit { account, cents });
    let parts = (
        100..=2000i64,
        prop::collection::vec(order, 1..=30),
        prop::collection::vec(deposit, 1..=6),
        1..=16usize,
    );
    parts.prop_flat_map(|(initial, orders, deposits, concurrency)| {
        let op = prop_oneof![
            6 => (0..orders.len()).prop_map(Op::Charge),
            3 => (0..orders.len()).prop_map(Op::Refund),
            1 => (0..deposits.len()).prop_map(Op::Deposit),
        ];
        prop::collection::vec(op, 40..=200).prop_map(move |ops| Scenario {
            initial,
            orders: orders.clone(),
            deposits: deposits.clone(),
            ops,
            concurrency,
        })
    })
}

#[derive(Default, Debug)]
struct Seen {
    charges: Vec<Answer>,
    refunds: Vec<Answer>,
}

async fn check(s: Scenario) {
    let app = spawn_app(s.initial).await;
    for account in &ACCOUNTS[..3] {
        app.create_account(account).await;
    }
    let ids: Vec<Uuid> = s.orders.iter().map(|_| Uuid::new_v4()).collect();
    let answers: Vec<(Op, Answer)> = stream::iter(s.ops.iter().copied())
        .map(|op| {
            let (app, ids, s) = (&app, &ids, &s);
            async move {
                let answer = match op {
                    Op::Charge(i) => {
                        let o = &s.orders[i];
                        app.charge(ids[i], o.account, o.cents).await
                    }
                    Op::Refund(i) => app.refund(ids[i]).await,
                    Op::Deposit(j) => {
                        let d = &s.deposits[j];
                        app.deposit(d.account, d.cents, &format!("deposit-{j}"))
                            .await
                    }
                };
                (op, answer)
            }
        })
        .buffer_unordered(s.concurrency)
        .collect()
        .await;
    let mut seen: BTreeMap<usize, Seen> = BTreeMap::new();
    let mut deposited: BTreeMap<&str, i64> = BTreeMap::new();
    let mut applied = vec![false; s.deposits.len()];
    for (op, answer) in answers {
        match op {
            Op::Charge(i) => seen.entry(i).or_default().charges.push(answer),
            Op::Refund(i) => seen.entry(i).or_default().refunds.push(answer),
            Op::Deposit(j) => {
                assert_eq!(answer.0, 200, "deposit {j}: {answer:?}");
                if !std::mem::replace(&mut applied[j], true) {
                    *deposited.entry(s.deposits[j].account).or_default() += s.deposits[j].cents;
                }
            }
        }
    }

    let mut charged_by_get: BTreeMap<&str, i64> = BTreeMap::new();
    for (i, order) in s.orders.iter().enumerate() {
        let recorded = app.recorded(ids[i]).await;
        let Some(seen) = seen.get(&i) else {
            assert_eq!(recorded.0, 404, "order {i} was never sent: {recorded:?}");
            continue;
        };
        assert_eq!(recorded.0, 200, "order {i}: {recorded:?}");
        let state = recorded.1["state"].as_str().unwrap_or("").to_owned();
        check_order(i, order, &state, seen);
        if state == "held" {
            assert_eq!(recorded.1["resource"], order.account, "order {i}");
            assert_eq!(recorded.1["quantity"], order.cents, "order {i}");
            *charged_by_get.entry(order.account).or_default() += order.cents;
        }
    }

    for account in &ACCOUNTS[..3] {
        let expected = s.initial + deposited.get(account).copied().unwrap_or(0);
        let charged = charged_by_get.get(account).copied().unwrap_or(0);
        let wallet = app.wallet(account).await;
        assert_eq!(
            wallet + charged,
            expected,
            "{account}: wallet {wallet} + charged {charged}"
        );
        let in_db = app.wallet_in_db(account).await + app.charged_in_db(account).await;
        assert_eq!(in_db, expected, "{account} in the db");
    }
    // With enough money for every order that asked, nobody may be turned away.
    for &account in &ACCOUNTS[..3] {
        let asked = |i: &usize| seen.get(i).map_or(&[][..], |x| &x.charges[..]);
        let orders = || (0..s.orders.len()).filter(|&i| s.orders[i].account == account);
        let demand: i64 = orders()
            .filter(|i| !asked(i).is_empty())
            .map(|i| s.orders[i].cents)
            .sum();
        let refused = orders().filter(|i| {
            asked(i)
                .iter()
                .any(|a| a.0 == 409 && code(a) != "order_cancelled")
        });
        if demand <= s.initial {
            let initial = s.initial;
            assert_eq!(
                refused.count(),
                0,
                "{account}: demand {demand}, wallet {initial}"
            );
        }
    }
}

/// Every answer an order got must agree with its final, recorded state.
fn check_order(i: usize, order: &Order, state: &str, seen: &Seen) {
    let rejection = match order.account {
        UNKNOWN => "account_not_found",
        _ => "insufficient_funds",
    };
    let codes: Vec<&str> = seen
        .charges
        .iter()
        .map(|a| match a.0 {
            200 => "held",
            409 => code(a),
            _ => panic!("order {i}: unexpected answer {a:?}"),
        })
        .collect();
    for a in &seen.refunds {
        let got = (a.0, a.1["state"].as_str());
        assert_eq!(got, (200, Some(state)), "order {i}: {a:?}");
    }
    let all = |allowed: &[&str]| codes.iter().all(|c| allowed.contains(c));
    let compensated = !seen.refunds.is_empty();
    let consistent = match state {
        "held" => !compensated && !codes.is_empty() && all(&["held"]),
        "released" => compensated && codes.contains(&"held") && all(&["held", "order_cancelled"]),
        "cancelled" => compensated && all(&["order_cancelled"]),
        "rejected" => !codes.is_empty() && all(&[rejection]),
        _ => false,
    };
    assert!(
        consistent,
        "order {i}: state {state}, charges {codes:?}, {seen:?}"
    );
    if order.account == UNKNOWN {
        assert!(
            matches!(state, "rejected" | "cancelled"),
            "order {i}: {state}"
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
    fn charges_refunds_and_deposits_conserve_money(s in scenario()) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(check(s));
    }
}
