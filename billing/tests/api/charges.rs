//! The money step of the saga over real HTTP and Postgres: idempotent charges and refunds,
//! tombstones, races for the last money, rejections, the token guard, and a randomized check that
//! charges, refunds and deposits interleaved concurrently conserve money exactly. The ledger checks
//! and the property are the shared kit's (`shop_common::testing::ledger`), run on billing's
//! accounts; what is billing's alone (accounts, deposits, the owner's view of the wallet) is here.

use crate::helpers::{alice_with, behind_a_link, spawn_app};
use proptest::prelude::*;
use serde_json::json;
use shop_common::testing::{
    self, code,
    ledger::{
        self,
        conservation::{self, Scenario, Space, Weights},
    },
};
use std::collections::BTreeSet;
use uuid::Uuid;

/// The migrations rendered from the ledger's templates are the files billing released (checksums
/// from the release), so a database migrated before keeps starting.
#[test]
fn the_released_migrations_are_rendered_byte_for_byte() {
    testing::assert_released(
        billing::CHARGES.migrator(),
        &[
            testing::Released {
                version: 1,
                description: "accounts",
                checksum: "4fd32797e6513fc55d51326644f3b7db8a8a97ee038fff017da1964945a33c173d326e3d1ea958d7c0ba2c305f730f0c",
            },
            testing::Released {
                version: 2,
                description: "ledger functions",
                checksum: "cc6e82bfcfab31cdd7c65d2e8109359301f55d279c7de790a8d92c1eeea0b8aecd0cc1ef2e2088ec4224e66f8a3c64a7",
            },
        ],
    );
}

#[tokio::test]
async fn with_its_database_down_billing_answers_503_unavailable() {
    let (link, app) = behind_a_link(10_000).await;
    app.create_account("alice").await;
    let url = format!("{}/api/accounts/alice", app.service.base);
    let account = app
        .service
        .http
        .get(url)
        .bearer_auth(testing::access_token("alice"));
    ledger::a_database_outage_is_503_until_it_is_back(&app, &link, account, "alice", 1250).await;
    assert_eq!(app.wallet("alice").await, 8750);
}

#[tokio::test]
async fn a_repeated_charge_takes_money_once() {
    let app = alice_with(10_000).await;
    ledger::repeated_hold_takes_once(&app, "alice", 1250).await;
    assert_eq!(app.wallet("alice").await, 8750);
}

#[tokio::test]
async fn a_repeated_refund_gives_back_once() {
    let app = alice_with(10_000).await;
    ledger::repeated_release_gives_back_once(&app, "alice", 1250).await;
    assert_eq!(app.wallet("alice").await, 10_000);
}

#[tokio::test]
async fn a_refund_before_the_charge_leaves_a_tombstone() {
    let app = alice_with(10_000).await;
    ledger::release_before_hold_leaves_a_tombstone(&app, "alice", 500).await;
    assert_eq!(app.wallet("alice").await, 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_orders_race_for_the_last_money_and_one_wins() {
    ledger::twenty_orders_race_for_the_last(&alice_with(300).await, "alice", 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_charge_sent_ten_times_at_once_takes_money_once() {
    ledger::the_same_hold_at_once_takes_once(&alice_with(10_000).await, "alice", 700).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_refund_sent_ten_times_at_once_gives_back_once() {
    let app = alice_with(10_000).await;
    ledger::the_same_release_at_once_gives_back_once(&app, "alice", 700).await;
}

/// Regression: a charge and refunds of the same order racing each other used to deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn charges_racing_their_refunds_never_fail() {
    ledger::holds_racing_their_releases_never_fail(&alice_with(1000).await, "alice", 400).await;
}

#[tokio::test]
async fn too_little_money_is_rejected_and_the_rejection_is_final() {
    let app = alice_with(1000).await;
    let order = Uuid::new_v4();
    let refused = app.ledger.hold(order, "alice", 1001).await;
    assert_eq!((refused.0, code(&refused)), (409, "insufficient_funds"));
    assert_eq!(app.wallet("alice").await, 1000);
    // Even once the wallet could pay, the recorded outcome of `order` is its answer.
    assert_eq!(app.deposit("alice", 5000, "top-up").await.0, 200);
    assert_eq!(app.ledger.hold(order, "alice", 1001).await, refused);
    assert_eq!(app.wallet("alice").await, 6000);
    let recorded = app.ledger.recorded(order).await.1;
    assert_eq!(recorded["state"], "rejected");
    assert_eq!(recorded["error_code"], "insufficient_funds");
    let (status, body) = app.ledger.release(order).await;
    assert_eq!((status, &body["state"]), (200, &json!("rejected")));
    assert_eq!(app.wallet("alice").await, 6000);
}

#[tokio::test]
async fn an_unknown_account_is_rejected() {
    let app = alice_with(1000).await;
    ledger::unknown_resources_are_rejected(&app, "mallory", &[""]).await;
    assert_eq!(app.wallet("alice").await, 1000);
}

#[tokio::test]
async fn the_owner_sees_charges_and_refunds_in_the_wallet() {
    let app = alice_with(10_000).await;
    app.create_account("bob").await;
    let order = Uuid::new_v4();
    app.ledger.hold(order, "alice", 2599).await;
    assert_eq!(app.wallet("alice").await, 7401);
    assert_eq!(app.wallet("bob").await, 10_000);
    app.ledger.release(order).await;
    assert_eq!(app.wallet("alice").await, 10_000);
}

#[tokio::test]
async fn the_ledger_requires_the_internal_token() {
    let app = alice_with(1000).await;
    ledger::the_ledger_requires_the_internal_token(&app, "alice").await;
    assert_eq!(app.wallet("alice").await, 1000);
}

// ---- randomized conservation ------------------------------------------------------------------

/// The accounts orders charge, with wallets of 1.00 to 20.00 against up to 30 charges of up to
/// 8.00, so wallets run dry often; "mallory" is never created.
static ACCOUNTS: Space = Space {
    resources: &["alice", "bob", "carol"],
    unknown: "mallory",
    initial: 100..=2000,
    quantity: 1..=800,
    weights: Weights {
        hold: 6,
        release: 3,
        extra: 1,
    },
};

/// billing's own operation in the mix: a deposit, which changes what a wallet must add up to.
#[derive(Debug, Clone)]
struct Deposit {
    account: &'static str,
    cents: i64,
}

fn deposits() -> impl Strategy<Value = Vec<Deposit>> {
    let deposit = (prop::sample::select(ACCOUNTS.resources), 1..=1000i64)
        .prop_map(|(account, cents)| Deposit { account, cents });
    prop::collection::vec(deposit, 1..=6)
}

async fn check(s: Scenario<Deposit>) {
    let app = spawn_app(s.initial).await;
    for account in ACCOUNTS.resources {
        app.create_account(account).await;
    }
    let app = &app;
    let deposit = |j: usize| {
        let d = &s.extras[j];
        // Repeats of a deposit carry the same Idempotency-Key, so they apply once.
        async move {
            app.deposit(d.account, d.cents, &format!("deposit-{j}"))
                .await
        }
    };
    let run = conservation::run(app, &s, deposit).await;
    let mut applied = BTreeSet::new();
    for (j, answer) in &run.extras {
        assert_eq!(answer.0, 200, "deposit {j}: {answer:?}");
        applied.insert(*j);
    }
    let deposited = |account: &str| -> i64 {
        let to_account = applied.iter().map(|&j| &s.extras[j]);
        to_account
            .filter(|d| d.account == account)
            .map(|d| d.cents)
            .sum()
    };
    conservation::check(app, &ACCOUNTS, &s, &run, |account| {
        s.initial + deposited(account)
    })
    .await;
}

proptest! {
    #![proptest_config(conservation::config())]

    #[test]
    fn charges_refunds_and_deposits_conserve_money(
        s in conservation::scenarios_with(&ACCOUNTS, deposits())
    ) {
        testing::block_on(check(s));
    }
}

#[tokio::test]
async fn a_replayed_charge_with_other_terms_is_refused() {
    let app = alice_with(10_000).await;
    ledger::a_replay_with_other_terms_is_refused(&app, "alice", "bob", 1250).await;
    assert_eq!(app.wallet("alice").await, 10_000);
}

/// `/health/ready` says the truth about the database (the Kubernetes readiness probe takes the
/// pod out of the Service while it is down), `/health/live` stays 200 (no restart for a blip).
#[tokio::test]
async fn readiness_follows_the_database_and_liveness_does_not() {
    let (link, app) = behind_a_link(10_000).await;
    let status = |path: &'static str| {
        let request = app.service.http.get(format!("{}{path}", app.service.base));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/health/ready").await, 200);
    link.cut().await;
    // The readiness check gives up on the database within its own 2 s bound.
    assert_eq!(status("/health/ready").await, 503);
    assert_eq!(status("/health/live").await, 200);
    link.restore().await;
    // The pool reconnects on its own: ready again within a bounded wait.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while status("/health/ready").await != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_batch_of_charges_answers_each_order_as_its_own_charge() {
    ledger::a_batch_answers_each_order_as_its_own_action(&alice_with(10_000).await, "alice", 1250)
        .await;
}
