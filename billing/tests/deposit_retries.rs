//! Regression: concurrent retries of one deposit (same Idempotency-Key) must all answer 200 and
//! apply once. They used to answer 404 `account_not_found` when the lookup of the earlier deposit
//! ran in the same snapshot as the `INSERT .. ON CONFLICT DO NOTHING` that had waited for it.

use futures::future::join_all;
use serde_json::json;
use shop_common::{domain::Money, testing};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_of_a_deposit_all_succeed_and_apply_once() {
    let (pool, database) = testing::migrated_pool(&billing::MIGRATOR).await;
    let config = billing::Config {
        participant: testing::participant(database),
        jwt_secret: testing::jwt_secret(),
        initial_wallet: Money::from_minor(100),
    };
    let base = testing::serve(billing::build_router(pool.clone(), &config)).await;
    let http = reqwest::Client::new();
    let account = json!({"username": "bob", "email": "bob@example.com"});
    let created = http.post(format!("{base}/internal/accounts"));
    let created = created.header("x-internal-token", testing::INTERNAL_TOKEN);
    assert_eq!(created.json(&account).send().await.unwrap().status(), 201);
    for key in 0..20 {
        let deposit = || {
            http.post(format!("{base}/api/accounts/bob/deposits"))
                .bearer_auth(testing::access_token("bob"))
                .header("Idempotency-Key", format!("key-{key}"))
                .json(&json!({"amount": 5}))
                .send()
        };
        for r in join_all((0..4).map(|_| deposit())).await {
            let r = r.unwrap();
            assert_eq!(r.status(), 200, "key-{key}: {}", r.text().await.unwrap());
        }
    }
    let wallet: i64 = sqlx::query_scalar("SELECT wallet FROM accounts WHERE username = 'bob'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(wallet, 100 + 20 * 500);
}
