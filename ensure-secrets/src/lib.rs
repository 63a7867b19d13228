//! The install Job's work: make sure the shop's Secret exists with every key the manifest's
//! workloads read, each missing key set to a fresh random value, and never change a value that is
//! already there — so `kubectl apply -f deploy-services.yml`, run any number of times, creates the
//! secrets once and keeps them (Postgres takes its role passwords at its first start only).
//!
//! It talks to the Kubernetes API directly (GET, then POST or a merge PATCH conditioned on the
//! resourceVersion) with the pod's service-account token and CA (ureq, rustls), so the Job runs our own image and
//! needs no kubectl image. Concurrent runs are safe: a create that finds the Secret already there
//! (409) or a patch that lost a race (409) reads it again; only absent keys are ever written.

use anyhow::{Context, Result, bail};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use clap::Parser;
use rand::RngCore;
use serde_json::{Value, json};
use std::{collections::BTreeSet, path::PathBuf, time::Duration};
use ureq::{
    Agent,
    http::{Response, StatusCode},
    tls::{Certificate, RootCerts, TlsConfig},
};

/// Where Kubernetes mounts a pod's service-account token, CA and namespace.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Random bytes per value; hex-encoded (URL-safe: role passwords are spliced into DATABASE_URL).
pub const RANDOM_BYTES: usize = 32;
/// Reads after a lost race before giving up (each race means another writer finished a write).
const ATTEMPTS: usize = 5;

/// Create a Secret with random values if it is absent; add missing keys; never change a value
#[derive(Debug, Clone, Parser)]
pub struct Cli {
    /// The Secret, in the pod's own namespace.
    #[arg(long)]
    pub secret: String,
    /// The Kubernetes API server.
    #[arg(long, default_value = "https://kubernetes.default.svc")]
    pub api_server: String,
    /// The mounted service account: `token`, `ca.crt` and `namespace`.
    #[arg(long, default_value = SERVICE_ACCOUNT_DIR)]
    pub service_account_dir: PathBuf,
    /// Every key the Secret must have (the manifest check compares them with the workloads'
    /// secretKeyRefs).
    #[arg(required = true, value_parser = secret_key)]
    pub keys: Vec<String>,
}

/// A key Kubernetes accepts in a Secret's data.
fn secret_key(key: &str) -> Result<String, String> {
    let valid = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(key.to_owned())
    } else {
        Err(format!(
            "{key:?} is not a valid Secret key ([-._a-zA-Z0-9]+)"
        ))
    }
}

/// What the run did; it never says a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created { keys: Vec<String> },
    KeysAdded { keys: Vec<String> },
    AlreadyComplete,
}

impl Outcome {
    pub fn describe(&self, secret: &str) -> String {
        match self {
            Self::Created { keys } => {
                format!("secret {secret}: created with random {}", keys.join(", "))
            }
            Self::KeysAdded { keys } => {
                format!(
                    "secret {secret}: existed; added the missing {}",
                    keys.join(", ")
                )
            }
            Self::AlreadyComplete => format!("secret {secret}: exists with every key; unchanged"),
        }
    }
}

/// The API of one Secret, authenticated as the pod's service account.
struct SecretApi {
    agent: Agent,
    authorization: String,
    collection: String,
    item: String,
}

type Answer = Response<ureq::Body>;

impl SecretApi {
    fn from_service_account(cli: &Cli) -> Result<Self> {
        let dir = &cli.service_account_dir;
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .with_context(|| format!("reading {}", dir.join(name).display()))
        };
        let token = read("token")?.trim().to_owned();
        let namespace = read("namespace")?.trim().to_owned();
        let ca = Certificate::from_pem(read("ca.crt")?.as_bytes())
            .context("parsing the service account's ca.crt")?;
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .tls_config(
                TlsConfig::builder()
                    .root_certs(RootCerts::from([ca]))
                    .build(),
            )
            .build()
            .into();
        let collection = format!(
            "{}/api/v1/namespaces/{namespace}/secrets",
            cli.api_server.trim_end_matches('/')
        );
        let item = format!("{collection}/{}", cli.secret);
        Ok(Self {
            agent,
            authorization: format!("Bearer {token}"),
            collection,
            item,
        })
    }

    fn get(&self) -> Result<Option<Value>> {
        let mut answer = self
            .agent
            .get(&self.item)
            .header("authorization", &self.authorization)
            .call()
            .context("GET the secret")?;
        match answer.status() {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::OK => Ok(Some(
                answer
                    .body_mut()
                    .read_json()
                    .context("reading the secret")?,
            )),
            status => bail!("GET the secret: {status}: {}", api_message(answer)),
        }
    }

    /// `Ok(false)`: it was created meanwhile by someone else.
    fn create(&self, name: &str, data: &Value) -> Result<bool> {
        let secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "labels": {
                    "app.kubernetes.io/name": name,
                    "app.kubernetes.io/part-of": "saga-shop",
                    "app.kubernetes.io/component": "config",
                    "app.kubernetes.io/managed-by": "ensure-secrets",
                },
            },
            "type": "Opaque",
            "data": data,
        });
        let answer = self
            .agent
            .post(&self.collection)
            .header("authorization", &self.authorization)
            .send_json(&secret)
            .context("POST the secret")?;
        match answer.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::CONFLICT => Ok(false),
            status => bail!("POST the secret: {status}: {}", api_message(answer)),
        }
    }

    /// Adds `data` only if the Secret is still at `resource_version`; `Ok(false)`: it changed.
    fn add_keys(&self, resource_version: &str, data: &Value) -> Result<bool> {
        let patch = json!({
            "metadata": { "resourceVersion": resource_version },
            "data": data,
        });
        let answer = self
            .agent
            .patch(&self.item)
            .header("authorization", &self.authorization)
            .header("content-type", "application/merge-patch+json")
            .send(patch.to_string())
            .context("PATCH the secret")?;
        match answer.status() {
            StatusCode::OK => Ok(true),
            StatusCode::CONFLICT => Ok(false),
            status => bail!("PATCH the secret: {status}: {}", api_message(answer)),
        }
    }
}

/// The API server's own explanation (a `Status` object's message), or the body as is.
fn api_message(mut answer: Answer) -> String {
    let body = answer.body_mut().read_to_string().unwrap_or_default();
    serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|status| status["message"].as_str().map(str::to_owned))
        .unwrap_or(body)
}

/// `keys`, each with a fresh random value, base64-encoded as a Secret's `data` wants it.
fn random_data(keys: &[String]) -> Value {
    let mut rng = rand::rng();
    let data = keys
        .iter()
        .map(|key| {
            let mut bytes = [0u8; RANDOM_BYTES];
            rng.fill_bytes(&mut bytes);
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            (key.clone(), Value::String(BASE64.encode(hex)))
        })
        .collect();
    Value::Object(data)
}

/// Makes sure the Secret exists with every key of `cli.keys`, writing only absent keys.
pub fn ensure(cli: &Cli) -> Result<Outcome> {
    let api = SecretApi::from_service_account(cli)?;
    let wanted: BTreeSet<&String> = cli.keys.iter().collect();
    for _ in 0..ATTEMPTS {
        match api.get()? {
            None => {
                let keys: Vec<String> = wanted.iter().map(|k| k.to_string()).collect();
                if api.create(&cli.secret, &random_data(&keys))? {
                    return Ok(Outcome::Created { keys });
                }
            }
            Some(existing) => {
                let present = existing["data"].as_object();
                let missing: Vec<String> = wanted
                    .iter()
                    .filter(|key| !present.is_some_and(|data| data.contains_key(key.as_str())))
                    .map(|k| k.to_string())
                    .collect();
                if missing.is_empty() {
                    return Ok(Outcome::AlreadyComplete);
                }
                let resource_version = existing["metadata"]["resourceVersion"]
                    .as_str()
                    .context("the secret has no metadata.resourceVersion")?;
                if api.add_keys(resource_version, &random_data(&missing))? {
                    return Ok(Outcome::KeysAdded { keys: missing });
                }
            }
        }
    }
    bail!(
        "secret {}: still changing after {ATTEMPTS} reads; run the Job again",
        cli.secret
    )
}
