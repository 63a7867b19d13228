//! The real ensure-secrets binary against an in-memory Kubernetes API (plain HTTP on loopback; the
//! CA it is given is a fixture it must parse but never uses): it creates an absent Secret with
//! random values, leaves an existing one as it is, adds only missing keys, and when another writer
//! creates the Secret first it keeps that writer's values.

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use serde_json::{Map, Value, json};
use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::process::Command;

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

async fn fake_api(api: Shared) -> String {
    let path = "/api/v1/namespaces/shop-ns/secrets";
    let app = Router::new()
        .route(path, post(create_secret))
        .route(
            &format!("{path}/shop-secrets"),
            get(get_secret).patch(patch_secret),
        )
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// A mounted service account: token, namespace and the fixture CA.
fn service_account_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ensure-secrets-test-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(dir.join("namespace"), "shop-ns").unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ca.crt"),
        dir.join("ca.crt"),
    )
    .unwrap();
    dir
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Runs the binary for `KEYS`; its exit status and what it printed.
async fn run(api_url: &str, keys: &[&str]) -> (bool, String) {
    let dir = service_account_dir();
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(env!("CARGO_BIN_EXE_ensure-secrets"))
            .args(["--secret", "shop-secrets", "--api-server", api_url])
            .arg("--service-account-dir")
            .arg(&dir)
            .args(keys)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("ensure-secrets exits")
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), said)
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

#[tokio::test]
async fn an_absent_secret_is_created_with_random_hex_values_and_then_never_changed() {
    let api = Shared::default();
    let url = fake_api(api.clone()).await;

    let (ok, said) = run(&url, &KEYS).await;
    assert!(ok, "{said}");
    assert_eq!(
        said.trim(),
        "secret shop-secrets: created with random AUTH_DB_PASSWORD, INTERNAL_TOKEN, JWT_SECRET"
    );
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

    let (ok, said) = run(&url, &KEYS).await;
    assert!(ok, "{said}");
    assert_eq!(
        said.trim(),
        "secret shop-secrets: exists with every key; unchanged"
    );
    assert_eq!(data_of(&api), created);
    assert_eq!(api.lock().unwrap().writes, 1);
}

#[tokio::test]
async fn only_missing_keys_are_added() {
    let mut existing = Map::new();
    existing.insert(
        "JWT_SECRET".into(),
        Value::String(BASE64.encode("kept-as-it-was")),
    );
    let api = Shared::new(Mutex::new(Api {
        secret: Some((existing, 3)),
        ..Api::default()
    }));
    let url = fake_api(api.clone()).await;

    let (ok, said) = run(&url, &KEYS).await;
    assert!(ok, "{said}");
    assert_eq!(
        said.trim(),
        "secret shop-secrets: existed; added the missing AUTH_DB_PASSWORD, INTERNAL_TOKEN"
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
        .map(|k| {
            (
                k.to_string(),
                Value::String(BASE64.encode(format!("theirs-{k}"))),
            )
        })
        .collect();
    let api = Shared::new(Mutex::new(Api {
        created_by_another_writer: Some(theirs.clone()),
        ..Api::default()
    }));
    let url = fake_api(api.clone()).await;

    let (ok, said) = run(&url, &KEYS).await;
    assert!(ok, "{said}");
    assert_eq!(
        said.trim(),
        "secret shop-secrets: exists with every key; unchanged"
    );
    assert_eq!(data_of(&api), theirs);
    assert_eq!(api.lock().unwrap().writes, 0);
}

#[tokio::test]
async fn an_api_refusal_fails_the_run_with_the_api_message() {
    let api = Shared::default();
    let url = fake_api(api).await;
    let dir = service_account_dir();
    std::fs::write(dir.join("token"), "a-token-the-api-refuses").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ensure-secrets"))
        .args(["--secret", "shop-secrets", "--api-server", &url])
        .arg("--service-account-dir")
        .arg(&dir)
        .args(KEYS)
        .output()
        .await
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("GET the secret: 401 Unauthorized: no token"),
        "{said}"
    );
}
