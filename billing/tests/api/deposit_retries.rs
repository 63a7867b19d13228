//! Regression: concurrent retries of one deposit (same Idempotency-Key) must all answer 200 and
//! apply once. They used to answer 404 `account_not_found` when the lookup of the earlier deposit
//! ran in the same snapshot as the `INSERT .. ON CONFLICT DO NOTHING` that had waited for it.

use crate::helpers::spawn_app;
use futures::future::join_all;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_of_a_deposit_all_succeed_and_apply_once() {
    let app = spawn_app(100).await;
    app.create_account("bob").await;
    let bob = app.user("bob");
    for key in 0..20 {
        let key = format!("key-{key}");
        let deposit = || app.shop.deposit(&bob, 500, Some(&key));
        for r in join_all((0..4).map(|_| deposit())).await {
            r.unwrap_or_else(|e| panic!("{key}: {e}"));
        }
    }
    assert_eq!(app.wallet_in_db("bob").await, 100 + 20 * 500);
}
