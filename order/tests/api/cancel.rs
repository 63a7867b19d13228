//! `POST /api/orders/{id}/cancel`: a pending or completed order goes to `cancelling` (logged, and
//! on the stream again for the mediator); repeating it changes nothing; a failed order is 409
//! `order_final`; an unknown or someone else's order is 404.

use crate::spawn_app;
use order_store::db::{self, Status};
use reqwest::StatusCode;
use serde_json::Value as Json;
use shop_common::testing;
use uuid::Uuid;

const CANCELLED: &str = "Cancelled by the customer";

impl crate::App {
    pub async fn cancel(&self, user: &str, id: Uuid) -> (StatusCode, Json) {
        let res = self
            .http
            .post(format!("{}/api/orders/{id}/cancel", self.base))
            .bearer_auth(testing::access_token(user))
            .send()
            .await
            .unwrap();
        (res.status(), res.json().await.unwrap())
    }

    /// What the mediator does once it has compensated every step of a cancelling order.
    async fn finish_cancel(&self, id: Uuid) {
        let moved = db::transition(
            &self.pool,
            id,
            Status::Cancelling,
            Status::Cancelled,
            None,
            &[],
        );
        assert!(moved.await.unwrap(), "{id} was not cancelling");
    }
}

#[tokio::test]
async fn a_pending_order_is_cancelled_once_and_published_again() {
    let app = spawn_app().await;
    let id = app.create_order("alice").await;
    app.wait_published(id).await;

    let (status, body) = app.cancel("alice", id).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["id"], id.to_string());
    assert_eq!(body["status"], "cancelling");
    assert_eq!(body["success"], Json::Null);
    assert_eq!(body["reason"], CANCELLED);
    let id_text = id.to_string();
    assert_eq!(app.stream_order_ids().await, [id_text.clone(), id_text]);

    let (again, body) = app.cancel("alice", id).await;
    assert_eq!(again, StatusCode::ACCEPTED, "repeating it is harmless");
    assert_eq!(body["status"], "cancelling");
    assert_eq!(app.stream_order_ids().await.len(), 2, "published once");

    let shown: Json = app
        .get("alice", &format!("/api/orders/{id}"))
        .await
        .json()
        .await
        .unwrap();
    let log = shown["saga"].as_array().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["kind"], "cancel");
    assert_eq!(log[0]["participant"], "customer");
    app.wait_published(id).await;
}

#[tokio::test]
async fn a_completed_order_is_cancelled_and_ends_cancelled() {
    let app = spawn_app().await;
    let id = app.create_order("alice").await;
    app.complete(id).await;

    let (status, body) = app.cancel("alice", id).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["status"], "cancelling");
    app.finish_cancel(id).await;

    let path = format!("/api/orders/{id}");
    let shown: Json = app.get("alice", &path).await.json().await.unwrap();
    assert_eq!(shown["status"], "cancelled");
    assert_eq!(shown["success"], false);
    assert_eq!(shown["reason"], CANCELLED);
    let (again, body) = app.cancel("alice", id).await;
    assert_eq!(again, StatusCode::ACCEPTED);
    assert_eq!(body["status"], "cancelled", "same order, same outcome");
}

#[tokio::test]
async fn a_failed_or_failing_order_is_409_order_final() {
    let app = spawn_app().await;
    for to in [Status::Failed, Status::Compensating] {
        let id = app.create_order("alice").await;
        let moved = db::transition(
            &app.pool,
            id,
            Status::Pending,
            to,
            Some("Not enough money"),
            &[],
        );
        assert!(moved.await.unwrap());
        let (status, body) = app.cancel("alice", id).await;
        assert_eq!(status, StatusCode::CONFLICT, "{to:?}");
        assert_eq!(body["error"], "order_final", "{to:?}");
        let order = db::find_order(&app.pool, id).await.unwrap().unwrap();
        assert_eq!(order.status, to, "nothing changed");
        assert_eq!(order.reason.as_deref(), Some("Not enough money"));
    }
}

#[tokio::test]
async fn an_unknown_or_someone_elses_order_is_404_and_unchanged() {
    let app = spawn_app().await;
    let id = app.create_order("alice").await;
    for (user, order) in [("bob", id), ("alice", Uuid::now_v7())] {
        let (status, body) = app.cancel(user, order).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{user}");
        assert_eq!(body["error"], "not_found");
    }
    let res = app
        .http
        .post(format!("{}/api/orders/{id}/cancel", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let order = db::find_order(&app.pool, id).await.unwrap().unwrap();
    assert_eq!(order.status, Status::Pending);
}

/// The cancel racing the saga's final transition: whichever moves first, the cancel applies and
/// the order is `cancelling` (the mediator then gives everything back).
#[tokio::test]
async fn a_cancel_racing_completion_always_applies() {
    let app = spawn_app().await;
    for _ in 0..20 {
        let id = app.create_order("alice").await;
        let complete = db::transition(&app.pool, id, Status::Pending, Status::Completed, None, &[]);
        let (completed, cancel) =
            tokio::join!(complete, db::request_cancel(&app.pool, "alice", id));
        completed.unwrap();
        assert!(matches!(cancel.unwrap(), db::Cancel::Requested(_)));
        let order = db::find_order(&app.pool, id).await.unwrap().unwrap();
        assert_eq!(order.status, Status::Cancelling);
    }
}

/// A cancel whose publication did not happen (the API died after recording it, or Redis was
/// down) is published by the sweep, counted from the cancel, not from the order's creation:
/// an old order is not published again at once beside the API's own publication.
#[tokio::test]
async fn an_unpublished_cancel_is_published_by_the_sweep_after_the_delay() {
    let app = spawn_app().await;
    let id = app.create_order("alice").await;
    app.wait_published(id).await;
    app.complete(id).await;
    let created_long_ago = "UPDATE orders SET created_at = now() - interval '1 hour' WHERE id = $1";
    sqlx::query(created_long_ago)
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();

    // What the API records, without its XADD.
    let cancel = db::request_cancel(&app.pool, "alice", id).await.unwrap();
    assert!(matches!(cancel, db::Cancel::Requested(_)));
    let cancelled_at = std::time::Instant::now();
    testing::eventually(
        std::time::Duration::from_secs(20),
        "the sweep published the cancel",
        async || app.stream_order_ids().await.len() == 2,
    )
    .await;
    // The test app's REPUBLISH_AFTER_SECS is 5: never earlier (a small margin for clocks).
    assert!(
        cancelled_at.elapsed() >= std::time::Duration::from_secs(4),
        "published {:?} after the cancel",
        cancelled_at.elapsed()
    );
    app.wait_published(id).await;
}
