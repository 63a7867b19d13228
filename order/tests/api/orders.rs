//! The order API's routes: creation and publication, validation, idempotency, ownership,
//! authentication, the saga log, long polls.

use crate::{good_order, spawn_app};
use order_store::db::{self, NewStep, Status, StepKind, StepOutcome};
use reqwest::StatusCode;
use serde_json::{Value as Json, json};
use shop_common::testing;
use std::time::Duration;
use uuid::Uuid;

#[tokio::test]
async fn create_returns_201_with_location_and_publishes_the_order() {
    let app = spawn_app().await;
    let res = app.post("alice", &good_order(), None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let body: Json = res.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/orders/{id}"));
    assert_eq!(body["amount"], json!(100.0));
    assert_eq!(body["details"], json!({"item": 1, "slot": "09:00"}));
    assert_eq!(body["status"], "pending");
    assert_eq!(body["success"], Json::Null);
    assert_eq!(body["reason"], Json::Null);
    for ts in ["created_at", "updated_at"] {
        let text = body[ts].as_str().unwrap();
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{ts} = {text} is not RFC 3339: {e}"));
    }
    let uuid = Uuid::parse_str(&id).unwrap();
    assert_eq!(uuid.get_version_num(), 7);

    assert_eq!(app.stream_order_ids().await, std::slice::from_ref(&id));
    app.wait_published(uuid).await;

    let shown: Json = app.get("alice", &location).await.json().await.unwrap();
    assert_eq!(shown["id"], json!(id));
    assert_eq!(shown["saga"], json!([]));
}

#[tokio::test]
async fn amounts_with_cents_are_kept_exactly() {
    let app = spawn_app().await;
    let body = json!({"amount": 12.34, "details": {"item": 7, "slot": "23:59"}});
    let res = app.post("alice", &body, None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Json = res.json().await.unwrap();
    assert_eq!(body["amount"], json!(12.34));
    let id = Uuid::parse_str(body["id"].as_str().unwrap()).unwrap();
    let stored = db::find_order(&app.pool, id).await.unwrap().unwrap();
    assert_eq!(stored.amount.minor(), 1234);
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let app = spawn_app().await;
    let with = |amount: Json, item: Json, slot: &str| json!({"amount": amount, "details": {"item": item, "slot": slot}});
    let cases = [
        (with(json!(0), json!(1), "09:00"), "amount"),
        (with(json!(-5), json!(1), "09:00"), "amount"),
        (with(json!(1.005), json!(1), "09:00"), "amount"),
        (with(json!("5"), json!(1), "09:00"), "amount"),
        (json!({"details": {"item": 1, "slot": "09:00"}}), "amount"),
        (with(json!(5), json!(0), "09:00"), "details.item"),
        (with(json!(5), json!(-2), "09:00"), "details.item"),
        (with(json!(5), json!(1.5), "09:00"), "details.item"),
        (with(json!(5), json!("1"), "09:00"), "details.item"),
        (with(json!(5), json!(1), "24:00"), "details.slot"),
        (with(json!(5), json!(1), "9:00"), "details.slot"),
        (json!({"amount": 5}), "details"),
    ];
    for (body, field) in cases {
        let res = app.post("alice", &body, None).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        let err: Json = res.json().await.unwrap();
        assert_eq!(err["field"], json!(field), "{body} -> {err}");
        assert!(err["detail"].as_str().unwrap().contains(field), "{err}");
    }
    let truncated = app.post_text("alice", "{\"amount\": ".into(), None).await;
    assert_eq!(truncated.status(), StatusCode::BAD_REQUEST);
    let orders: Json = app.get("alice", "/api/orders").await.json().await.unwrap();
    assert_eq!(orders, json!([]), "nothing stored");
    assert!(app.stream_order_ids().await.is_empty());
}

#[tokio::test]
async fn a_retried_post_with_the_same_key_returns_the_same_order() {
    let app = spawn_app().await;
    let first = app.post("alice", &good_order(), Some("key-1")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Json = first.json().await.unwrap();

    let again = app.post("alice", &good_order(), Some("key-1")).await;
    assert_eq!(again.status(), StatusCode::OK, "a replay is 200");
    assert_eq!(
        again.headers()["location"].to_str().unwrap(),
        format!("/api/orders/{}", first["id"].as_str().unwrap())
    );
    let again: Json = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);

    // The same key of another user is another order.
    let bob = app.post("bob", &good_order(), Some("key-1")).await;
    assert_eq!(bob.status(), StatusCode::CREATED);

    let orders: Json = app.get("alice", "/api/orders").await.json().await.unwrap();
    assert_eq!(orders.as_array().unwrap().len(), 1);
    assert_eq!(app.stream_order_ids().await.len(), 2, "published once each");

    // Concurrent retries still make one order.
    let body = good_order();
    let posts = (0..8).map(|_| app.post("carol", &body, Some("key-2")));
    let answers = futures::future::join_all(posts).await;
    let mut ids: Vec<String> = Vec::new();
    let mut statuses = Vec::new();
    for res in answers {
        statuses.push(res.status());
        let body: Json = res.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1);
    // Exactly one of them created it; the others replayed it.
    statuses.sort();
    let mut expected = vec![StatusCode::OK; 7];
    expected.push(StatusCode::CREATED);
    expected.sort();
    assert_eq!(statuses, expected);
}

/// Concurrent POSTs are stored together (one INSERT for those that meet): each must still be
/// answered with its own order — its own amount, item and slot —, a key used before with the order
/// it created, and each new order published once.
#[tokio::test]
async fn concurrent_posts_are_each_answered_with_their_own_order() {
    let app = spawn_app().await;
    let replayed = app.post("dave", &good_order(), Some("old")).await;
    let replayed: Json = replayed.json().await.unwrap();
    let bodies: Vec<(Json, Option<String>)> = (1..=24)
        .map(|i| {
            let amount = f64::from(i) + 0.25;
            let body = json!({"amount": amount, "details": {"item": 100 + i, "slot": "10:00"}});
            (body, (i % 4 == 0).then(|| format!("key-{i}")))
        })
        .collect();
    let replay = good_order();
    let posts = bodies
        .iter()
        .map(|(body, key)| app.post("dave", body, key.as_deref()))
        .chain([app.post("dave", &replay, Some("old"))]);
    let answers = futures::future::join_all(posts).await;
    let mut created = Vec::new();
    for (i, res) in answers.into_iter().enumerate() {
        let status = res.status();
        let body: Json = res.json().await.unwrap();
        match bodies.get(i) {
            Some((sent, _)) => {
                assert_eq!(status, StatusCode::CREATED, "{body}");
                assert_eq!(body["amount"], sent["amount"], "POST {i} answered {body}");
                assert_eq!(body["details"], sent["details"], "POST {i} answered {body}");
                created.push(body["id"].as_str().unwrap().to_owned());
            }
            None => {
                assert_eq!(status, StatusCode::OK, "the replay: {body}");
                assert_eq!(body["id"], replayed["id"]);
            }
        }
    }
    let mut distinct = created.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), bodies.len(), "one order each");
    let orders: Json = app.get("dave", "/api/orders").await.json().await.unwrap();
    assert_eq!(orders.as_array().unwrap().len(), bodies.len() + 1);
    let mut published = app.stream_order_ids().await;
    published.retain(|id| *id != replayed["id"]);
    published.sort();
    assert_eq!(published, distinct, "each new order published once");
}

#[tokio::test]
async fn a_reused_key_with_another_body_is_refused() {
    let app = spawn_app().await;
    let res = app.post("alice", &good_order(), Some("key-1")).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let other = json!({"amount": 5, "details": {"item": 1, "slot": "09:00"}});
    let res = app.post("alice", &other, Some("key-1")).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let err: Json = res.json().await.unwrap();
    assert_eq!(err["error"], "idempotency_key_reused");
}

#[tokio::test]
async fn listing_shows_only_the_callers_orders_oldest_first() {
    let app = spawn_app().await;
    let mut mine = Vec::new();
    for (i, user) in ["alice", "bob", "alice", "alice", "bob"].iter().enumerate() {
        let body = json!({"amount": i + 1, "details": {"item": 1, "slot": "09:00"}});
        let res: Json = app.post(user, &body, None).await.json().await.unwrap();
        if *user == "alice" {
            mine.push(res["id"].clone());
        }
    }
    let listed: Json = app.get("alice", "/api/orders/").await.json().await.unwrap();
    let ids: Vec<Json> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].clone())
        .collect();
    assert_eq!(ids, mine);
    assert_eq!(listed[0]["amount"], json!(1.0));
    assert!(listed[0].get("saga").is_none());
}

#[tokio::test]
async fn someone_elses_or_a_malformed_order_is_not_found() {
    let app = spawn_app().await;
    let id = app.create_order("alice").await;
    let path = format!("/api/orders/{id}");
    assert_eq!(app.get("alice", &path).await.status(), StatusCode::OK);
    let not_found = [
        ("bob", path),
        ("alice", format!("/api/orders/{}", Uuid::now_v7())),
        ("alice", "/api/orders/not-a-uuid".to_owned()),
    ];
    for (user, path) in not_found {
        let status = app.get(user, &path).await.status();
        assert_eq!(status, StatusCode::NOT_FOUND, "{user} {path}");
    }
}

#[tokio::test]
async fn without_a_valid_token_it_is_401() {
    let app = spawn_app().await;
    let url = format!("{}/api/orders", app.base);
    let requests = [
        app.http.post(&url).json(&good_order()),
        app.http.get(&url),
        app.http.get(&url).bearer_auth("not-a-token"),
    ];
    for request in requests {
        let res = request.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{}", res.url());
    }
    assert!(app.stream_order_ids().await.is_empty());
}

/// Concurrent reads of orders are made together (one query for those that meet): each answered
/// with its own order and its own log, someone else's order and an unknown one still 404.
#[tokio::test]
async fn concurrent_reads_are_each_answered_with_their_own_order_and_log() {
    let app = spawn_app().await;
    let mut mine = Vec::new();
    for logged in 0..12 {
        let id = app.create_order("erin").await;
        let steps: Vec<NewStep> = ["items", "slots", "billing"][..logged % 4]
            .iter()
            .map(|participant| NewStep {
                participant,
                kind: StepKind::Action,
                outcome: StepOutcome::Ok,
                error_code: None,
                started_at: time::OffsetDateTime::now_utc(),
                finished_at: time::OffsetDateTime::now_utc(),
            })
            .collect();
        let to = if logged % 2 == 0 {
            Status::Completed
        } else {
            Status::Failed
        };
        let reason = (to == Status::Failed).then_some("Not enough money");
        assert!(
            db::transition(&app.pool, id, Status::Pending, to, reason, &steps)
                .await
                .unwrap()
        );
        mine.push((id, to, steps.len()));
    }
    let someone_elses = app.create_order("frank").await;
    let unknown = Uuid::now_v7();
    let paths: Vec<String> = mine
        .iter()
        .map(|(id, ..)| *id)
        .chain([someone_elses, unknown])
        .map(|id| format!("/api/orders/{id}"))
        .collect();
    let answers = futures::future::join_all(paths.iter().map(|p| app.get("erin", p))).await;
    for (i, res) in answers.into_iter().enumerate() {
        match mine.get(i) {
            Some((id, status, steps)) => {
                assert_eq!(res.status(), StatusCode::OK);
                let body: Json = res.json().await.unwrap();
                assert_eq!(body["id"], json!(id), "GET {i} answered {body}");
                assert_eq!(body["status"], json!(status), "GET {i} answered {body}");
                let log = body["saga"].as_array().unwrap();
                assert_eq!(log.len(), *steps, "GET {i} answered {body}");
                let seqs: Vec<i64> = log.iter().map(|s| s["seq"].as_i64().unwrap()).collect();
                assert_eq!(seqs, (1..=*steps as i64).collect::<Vec<_>>());
            }
            None => assert_eq!(res.status(), StatusCode::NOT_FOUND, "{}", paths[i]),
        }
    }
}

#[tokio::test]
async fn the_saga_log_is_shown_with_the_order() {
    let app = spawn_app().await;
    let id = app.create_order("alice").await;
    let now = time::OffsetDateTime::now_utc();
    let step = |participant, outcome, code: Option<&str>| NewStep {
        participant,
        kind: StepKind::Action,
        outcome,
        error_code: code.map(str::to_owned),
        started_at: now,
        finished_at: now,
    };
    let steps = [
        step("items", StepOutcome::Ok, None),
        step("slots", StepOutcome::Rejected, Some("slot_unavailable")),
    ];
    let reason = "Can not get the delivery slot";
    let transition =
        |from, to, reason, steps| db::transition(&app.pool, id, from, to, reason, steps);
    let moved = transition(Status::Pending, Status::Compensating, Some(reason), &steps);
    assert!(moved.await.unwrap());
    let again = transition(Status::Pending, Status::Completed, None, &steps);
    assert!(
        !again.await.unwrap(),
        "the guard refuses a second move from pending"
    );

    let path = format!("/api/orders/{id}");
    let shown: Json = app.get("alice", &path).await.json().await.unwrap();
    assert_eq!(shown["status"], "compensating");
    assert_eq!(shown["success"], Json::Null);
    assert_eq!(shown["reason"], reason);
    let saga = shown["saga"].as_array().unwrap();
    assert_eq!(saga.len(), 2);
    assert_eq!(saga[0]["seq"], 1);
    assert_eq!(saga[0]["participant"], "items");
    assert_eq!(saga[0]["kind"], "action");
    assert_eq!(saga[0]["outcome"], "ok");
    assert_eq!(saga[1]["outcome"], "rejected");
    assert_eq!(saga[1]["error_code"], "slot_unavailable");

    let undo = [NewStep {
        kind: StepKind::Compensation,
        ..step("items", StepOutcome::Ok, None)
    }];
    let failed = transition(Status::Compensating, Status::Failed, None, &undo);
    assert!(failed.await.unwrap());
    let shown: Json = app.get("alice", &path).await.json().await.unwrap();
    assert_eq!(shown["status"], "failed");
    assert_eq!(shown["success"], false);
    assert_eq!(shown["reason"], reason, "the reason is kept");
    assert_eq!(shown["saga"][2]["seq"], 3);
    assert_eq!(shown["saga"][2]["kind"], "compensation");
}

#[tokio::test]
async fn a_long_poll_answers_when_the_order_becomes_final() {
    let app = spawn_app().await;
    let id = app.create_order("alice").await;
    let waiting = tokio::spawn({
        let request = app
            .http
            .get(format!("{}/api/orders/{id}?wait_ms=20000", app.base))
            .bearer_auth(testing::access_token("alice"));
        async move { request.send().await.unwrap().json::<Json>().await.unwrap() }
    });
    // What the mediator does: store the final state, then signal it.
    app.complete(id).await;
    app.signal_final_until_answered(id, &waiting).await;
    let answer = waiting.await.unwrap();
    assert_eq!(answer["status"], "completed");
    assert_eq!(answer["success"], true);
}

/// `POST /api/orders/?wait_ms=N`: the order placed and its outcome in one request — the answer
/// comes once the order is final (here: completed by the test, as the mediator would, and
/// signalled), with its saga log, still 201 with its Location.
#[tokio::test]
async fn a_post_with_wait_ms_answers_once_the_order_is_final() {
    let app = spawn_app().await;
    let placing = tokio::spawn({
        let request = app
            .http
            .post(format!("{}/api/orders/?wait_ms=20000", app.base))
            .bearer_auth(testing::access_token("alice"))
            .header("Idempotency-Key", "wait-1")
            .json(&good_order());
        async move {
            let r = request.send().await.unwrap();
            let location = r.headers()["location"].to_str().unwrap().to_owned();
            (r.status(), location, r.json::<Json>().await.unwrap())
        }
    });
    // The order is on the stream before the POST waits: the mediator's cue.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let id = loop {
        if let Some(id) = app.stream_order_ids().await.first() {
            break Uuid::parse_str(id).unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing published");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        !placing.is_finished(),
        "the POST answered before its order was final"
    );
    app.complete(id).await;
    app.signal_final_until_answered(id, &placing).await;
    let (status, location, body) = placing.await.unwrap();
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(location, format!("/api/orders/{id}"));
    assert_eq!(body["id"], json!(id));
    assert_eq!(body["status"], "completed");
    assert_eq!(body["success"], true);
    assert_eq!(body["saga"], json!([]), "the log, as the GET shows it");

    // A replay of the key, waiting too: the order it created, final already: at once, 200.
    let replay = app
        .post_with_query(
            "alice",
            "wait_ms=20000",
            good_order().to_string(),
            Some("wait-1"),
        )
        .await;
    assert_eq!(replay.status(), StatusCode::OK);
    let replayed: Json = replay.json().await.unwrap();
    assert_eq!(replayed["id"], json!(id));
    assert_eq!(replayed["status"], "completed");
}

/// Without a signal (no mediator here), a waiting POST answers at its deadline: stored, pending.
/// A malformed `wait_ms` is refused before anything is stored.
#[tokio::test]
async fn a_post_with_wait_ms_answers_the_pending_order_at_its_deadline() {
    let app = spawn_app().await;
    let r = app
        .post_with_query("alice", "wait_ms=100", good_order().to_string(), None)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Json = r.json().await.unwrap();
    assert_eq!(body["status"], "pending");
    assert_eq!(body["saga"], json!([]));

    let bad = app
        .post_with_query("bob", "wait_ms=soon", good_order().to_string(), None)
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(bad.json::<Json>().await.unwrap()["error"], "invalid_query");
    let bobs: Json = app.get("bob", "/api/orders/").await.json().await.unwrap();
    assert_eq!(bobs, json!([]), "a refused POST stores nothing");
}

#[tokio::test]
async fn a_long_poll_without_a_signal_answers_the_stored_state_at_its_deadline() {
    let app = spawn_app().await;
    let id = app.create_order("alice").await;
    let r = app
        .get("alice", &format!("/api/orders/{id}?wait_ms=100"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Json>().await.unwrap()["status"], "pending");
    let bad = app
        .get("alice", &format!("/api/orders/{id}?wait_ms=soon"))
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(bad.json::<Json>().await.unwrap()["error"], "invalid_query");
}

/// A long poll may wait longer than REQUEST_TIMEOUT_MS (10 s here, as by default): its route runs
/// under that timeout plus the longest wait, so an order still unfinished at the deadline is
/// answered 200 with its state, not 503 `timeout`.
#[tokio::test]
async fn a_long_poll_longer_than_the_request_timeout_answers_the_unfinished_order() {
    let app = spawn_app().await;
    assert_eq!(testing::http().request_timeout, Duration::from_secs(10));
    let id = app.create_order("alice").await;
    let started = std::time::Instant::now();
    let r = app
        .get("alice", &format!("/api/orders/{id}?wait_ms=15000"))
        .await;
    let waited = started.elapsed();
    let status = r.status();
    let body: Json = r.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "pending");
    assert_eq!(body["success"], Json::Null);
    assert!(
        waited >= Duration::from_secs(15),
        "answered after {waited:?}, before its 15 s"
    );
}
