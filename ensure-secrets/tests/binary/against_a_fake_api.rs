//! The real ensure-secrets binary against an in-memory Kubernetes API (plain HTTP on loopback; the
//! CA it is given is a fixture it must parse but never uses): it creates an absent Secret with
//! random values, leaves an existing one as it is, adds only missing keys, and when another writer
//! creates the Secret first it keeps that writer's values.

use crate::support::{NAMESPACE, assert_reported, ensure_secrets, service_account};
use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use serde_json::{Map, Value, json};
use std::{
    path::Path,
    sync::{Arc, Mutex},
};

const TOKEN: &str = "service-account-token-of-the-test";
const KEYS: [&str; 3] = ["JWT_SECRET", "INTERNAL_TOKEN", "AUTH_DB_PASSWORD"];

#[derive(Default)]
struct Api {
    /// The Secret's `data` and its resourceVersion, if it exists.
    secret: Option<(Map<String, Value>, u64)>,
    /// Set: the next POST finds this Secret created by someone else (409) first.
    created_by_another_writer: Option<Map<String, Value>>,
    writes: usize,
}

impl Api {
    /// The Secret exists with `data`.
    fn holding(data: Map<String, Value>) -> Self {
        let secret = Some((data, 3));
        Self {
            secret,
            ..Self::default()
        }
    }

    /// The Secret is absent, and another writer creates it with `theirs` just before our POST.
    fn raced_by(theirs: Map<String, Value>) -> Self {
        let created_by_another_writer = Some(theirs);
        Self {
            created_by_another_writer,
            ..Self::default()
        }
    }
}

type Shared = Arc<Mutex<Api>>;

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

fn as_json(data: &Map<String, Value>, version: u64) -> Value {
    json!({"kind": "Secret", "metadata": {"name": "shop-secrets", "resourceVersion": version.to_string()}, "data": data})
}

async fn get_secret(State(api): State<Shared>, headers: HeaderMap) -> (StatusCode, Json<Value>) {
    if !authorized(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "no token"})),
        );
    }
    match &api.lock().unwrap().secret {
        Some((data, version)) => (StatusCode::OK, Json(as_json(data, *version))),
        None => (StatusCode::NOT_FOUND, Json(json!({"message": "not found"}))),
    }
}

async fn create_secret(
    State(api): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    assert!(authorized(&headers));
    let mut api = api.lock().unwrap();
    if let Some(theirs) = api.created_by_another_writer.take() {
        api.secret = Some((theirs, 7));
    }
    if api.secret.is_some() {
        return (
            StatusCode::CONFLICT,
            Json(json!({"message": "already exists"})),
        );
    }
    assert_eq!(body["metadata"]["name"], "shop-secrets");
    assert_eq!(body["type"], "Opaque");
    api.writes += 1;
    api.secret = Some((body["data"].as_object().unwrap().clone(), 1));
    (StatusCode::CREATED, Json(body))
}

async fn patch_secret(
    State(api): State<Shared>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, Json<Value>) {
    assert!(authorized(&headers));
    assert_eq!(headers["content-type"], "application/merge-patch+json");
    let patch: Value = serde_json::from_str(&body).unwrap();
    let mut api = api.lock().unwrap();
    let (data, version) = api.secret.as_mut().expect("PATCH of an absent secret");
    if patch["metadata"]["resourceVersion"] != version.to_string().as_str() {
        return (StatusCode::CONFLICT, Json(json!({"message": "changed"})));
    }
    for (key, value) in patch["data"].as_object().unwrap() {
        data.insert(key.clone(), value.clone());
    }
    *version += 1;
    let answer = as_json(data, *version);
    api.writes += 1;
    (StatusCode::OK, Json(answer))
}

/// Serves `api` on a loopback port: the state the test inspects, and the API's URL.
async fn fake_api(api: Api) -> (Shared, String) {
    let api = Shared::new(Mutex::new(api));
    let path = format!("/api/v1/namespaces/{NAMESPACE}/secrets");
    let app = Router::new()
        .route(&path, post(create_secret))
        .route(
            &format!("{path}/shop-secrets"),
            get(get_secret).patch(patch_secret),
        )
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (api, url)
}

/// A Secret value as the API holds it.
fn encoded(value: &str) -> Value {
    Value::String(BASE64.encode(value))
}

/// Runs the binary for `keys` with a service account holding the test's token and the fixture
/// CA (parsed, never used: the fake API is plain HTTP); its exit status and what it printed.
async fn run_with_token(api_url: &str, token: &str, keys: &[&str]) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!(
        "ensure-secrets-test-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ca.crt");
    service_account(&dir, &format!("{token}\n"), Path::new(ca));
    let ran = ensure_secrets(api_url, &dir, keys).await;
    std::fs::remove_dir_all(&dir).unwrap();
    ran
}

async fn run(api_url: &str, keys: &[&str]) -> (bool, String) {
    run_with_token(api_url, TOKEN, keys).await
}

fn decoded(data: &Map<String, Value>, key: &str) -> String {
    String::from_utf8(BASE64.decode(data[key].as_str().unwrap()).unwrap()).unwrap()
}

fn data_of(api: &Shared) -> Map<String, Value> {
    api.lock()
        .unwrap()
        .secret
        .clone()
        .expect("the secret exists")
        .0
}

/// A run finds every key in the Secret, which holds `data` after `writes` writes in all, and
/// leaves it as it is.
async fn assert_left_as_it_is(api: &Shared, url: &str, data: &Map<String, Value>, writes: usize) {
    let ran = run(url, &KEYS).await;
    assert_reported(&ran, "exists with every key; unchanged");
    assert_eq!(&data_of(api), data);
    assert_eq!(api.lock().unwrap().writes, writes);
}

#[tokio::test]
async fn an_absent_secret_is_created_with_random_hex_values_and_then_never_changed() {
    let (api, url) = fake_api(Api::default()).await;

    let ran = run(&url, &KEYS).await;
    assert_reported(
        &ran,
        "created with random AUTH_DB_PASSWORD, INTERNAL_TOKEN, JWT_SECRET",
    );
    let said = ran.1;
    let created = data_of(&api);
    let mut keys: Vec<&String> = created.keys().collect();
    keys.sort();
    assert_eq!(keys, ["AUTH_DB_PASSWORD", "INTERNAL_TOKEN", "JWT_SECRET"]);
    let values: Vec<String> = KEYS.iter().map(|k| decoded(&created, k)).collect();
    for value in &values {
        assert_eq!(value.len(), 64, "{value}");
        assert!(
            value
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert!(!said.contains(value.as_str()), "printed a value: {said}");
    }
    assert!(values[0] != values[1] && values[1] != values[2] && values[0] != values[2]);

    assert_left_as_it_is(&api, &url, &created, 1).await;
}

#[tokio::test]
async fn only_missing_keys_are_added() {
    let existing = Map::from_iter([("JWT_SECRET".into(), encoded("kept-as-it-was"))]);
    let (api, url) = fake_api(Api::holding(existing)).await;

    let ran = run(&url, &KEYS).await;
    assert_reported(
        &ran,
        "existed; added the missing AUTH_DB_PASSWORD, INTERNAL_TOKEN",
    );
    let data = data_of(&api);
    assert_eq!(decoded(&data, "JWT_SECRET"), "kept-as-it-was");
    assert_eq!(decoded(&data, "INTERNAL_TOKEN").len(), 64);
    assert_eq!(decoded(&data, "AUTH_DB_PASSWORD").len(), 64);
}

#[tokio::test]
async fn a_secret_created_meanwhile_by_another_writer_is_kept() {
    let theirs: Map<String, Value> = KEYS
        .iter()
        .map(|k| (k.to_string(), encoded(&format!("theirs-{k}"))))
        .collect();
    let (api, url) = fake_api(Api::raced_by(theirs.clone())).await;

    assert_left_as_it_is(&api, &url, &theirs, 0).await;
}

#[tokio::test]
async fn an_api_refusal_fails_the_run_with_the_api_message() {
    let (_, url) = fake_api(Api::default()).await;
    let (ok, said) = run_with_token(&url, "a-token-the-api-refuses", &KEYS).await;
    assert!(!ok, "{said}");
    assert!(
        said.contains("GET the secret: 401 Unauthorized: no token"),
        "{said}"
    );
}
