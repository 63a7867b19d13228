//! The deployment manifest exercised against the binaries it runs: for every container of our
//! image, what its binary requires and reads is taken from the binary's own configuration (its
//! `clap::Command`), and compared with what the manifest gives it — env entries, the keys of the
//! ConfigMaps it takes whole, the secret keys it references — and with what exists in the
//! manifest: the install Job's list of secret keys, the Services and their ports.
//!
//! [`check`] returns one line per violation (empty: the manifest is right); the lines are meant to
//! be asserted exactly by tests that break a manifest on purpose.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// A binary of our image, as the manifest starts it (`command[0]`), and its configuration.
pub struct Binary {
    pub path: String,
    pub config: clap::Command,
}

impl Binary {
    /// The program's name: the last component of its path.
    pub fn program(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// The install Job's command line, parsed by the Job binary's own parser: the Secret it
/// creates and the keys it holds.
pub type ParseSecretJob<'a> = &'a dyn Fn(&[String]) -> Result<(String, Vec<String>)>;

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct Report {
    /// `Kind/name: container` of every container whose binary was checked.
    pub checked: Vec<String>,
    pub violations: Vec<String>,
}

#[derive(Deserialize)]
struct Document {
    kind: String,
    metadata: Metadata,
    #[serde(default)]
    spec: serde_yaml_ng::Value,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    #[serde(default)]
    init_containers: Vec<Container>,
    #[serde(default)]
    containers: Vec<Container>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: String,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<EnvVar>,
    #[serde(default)]
    env_from: Vec<EnvFrom>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvVar {
    name: String,
    value: Option<String>,
    value_from: Option<EnvSource>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvSource {
    secret_key_ref: Option<KeyRef>,
    config_map_key_ref: Option<KeyRef>,
}

#[derive(Deserialize)]
struct KeyRef {
    name: String,
    key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvFrom {
    config_map_ref: Option<NameRef>,
    secret_ref: Option<NameRef>,
}

#[derive(Deserialize)]
struct NameRef {
    name: String,
}

#[derive(Deserialize)]
struct ServicePort {
    port: u16,
}

/// Where a container's variable comes from.
enum Source {
    Value(String),
    Secret { secret: String, key: String },
    Other,
}

/// What a binary's configuration says about one variable.
struct Variable {
    required: bool,
}

fn variables(config: &clap::Command) -> BTreeMap<String, Variable> {
    config
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_string_lossy().into_owned();
            let required = arg.is_required_set() && arg.get_default_values().is_empty();
            Some((env, Variable { required }))
        })
        .collect()
}

/// `$(NAME)` references in an env value (Kubernetes' dependent variables).
fn references(value: &str) -> Vec<&str> {
    value
        .match_indices("$(")
        .filter_map(|(at, _)| {
            let rest = &value[at + 2..];
            rest.find(')').map(|end| &rest[..end])
        })
        .collect()
}

fn pod_spec(document: &Document) -> Result<Option<PodSpec>> {
    if !matches!(
        document.kind.as_str(),
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job"
    ) {
        return Ok(None);
    }
    let spec = &document.spec["template"]["spec"];
    let pod = serde_yaml_ng::from_value(spec.clone())
        .with_context(|| format!("{}/{}: pod spec", document.kind, document.metadata.name))?;
    Ok(Some(pod))
}

/// Checks `manifest` (the text of deploy-services.yml) against `binaries`; see the module doc.
pub fn check(manifest: &str, binaries: &[Binary], parse_job: ParseSecretJob) -> Result<Report> {
    let mut documents = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(manifest) {
        let value = serde_yaml_ng::Value::deserialize(document).context("parsing the manifest")?;
        if value.is_null() {
            continue;
        }
        let document: Document = serde_yaml_ng::from_value(value).context("a manifest document")?;
        documents.push(document);
    }
    let mut report = Report::default();
    let violations = &mut report.violations;

    let config_maps: BTreeMap<&str, &BTreeMap<String, String>> = documents
        .iter()
        .filter(|d| d.kind == "ConfigMap")
        .map(|d| (d.metadata.name.as_str(), &d.data))
        .collect();
    let mut services: BTreeMap<&str, BTreeSet<u16>> = BTreeMap::new();
    for service in documents.iter().filter(|d| d.kind == "Service") {
        let ports: Vec<ServicePort> = serde_yaml_ng::from_value(service.spec["ports"].clone())
            .with_context(|| format!("Service/{}: ports", service.metadata.name))?;
        services.insert(
            &service.metadata.name,
            ports.into_iter().map(|p| p.port).collect(),
        );
    }
    for secret in documents.iter().filter(|d| d.kind == "Secret") {
        violations.push(format!(
            "Secret/{}: the manifest holds a Secret; the install Job creates it",
            secret.metadata.name
        ));
    }

    // The install Job: the one list of the keys of the shop's Secret.
    let is_job_binary = |container: &Container| {
        container
            .command
            .first()
            .is_some_and(|c| c.ends_with("/ensure-secrets"))
    };
    let mut job_secret: Option<(String, Vec<String>)> = None;
    for document in &documents {
        for container in pod_spec(document)?.unwrap_or_default().containers {
            if is_job_binary(&container) {
                let argv: Vec<String> = container
                    .command
                    .iter()
                    .chain(&container.args)
                    .cloned()
                    .collect();
                let parsed = parse_job(&argv).with_context(|| {
                    format!(
                        "{}/{}: the install Job's arguments",
                        document.kind, document.metadata.name
                    )
                })?;
                if job_secret.replace(parsed).is_some() {
                    bail!("more than one container runs ensure-secrets");
                }
            }
        }
    }
    let Some((job_secret_name, job_keys)) = job_secret else {
        bail!("no install Job (a container running ensure-secrets) in the manifest");
    };
    let job_keys: BTreeSet<String> = job_keys.into_iter().collect();
    let mut keys_used: BTreeSet<String> = BTreeSet::new();

    for document in &documents {
        let Some(pod) = pod_spec(document)? else {
            continue;
        };
        let workload = format!("{}/{}", document.kind, document.metadata.name);
        for container in pod.init_containers.iter().chain(&pod.containers) {
            let mut sources: BTreeMap<String, Source> = BTreeMap::new();
            for from in &container.env_from {
                if let Some(secret) = &from.secret_ref {
                    violations.push(format!(
                        "{workload}: envFrom secretRef {} gives every key of the Secret; reference the keys it reads (secretKeyRef)",
                        secret.name
                    ));
                }
                if let Some(map) = &from.config_map_ref {
                    match config_maps.get(map.name.as_str()) {
                        None => violations.push(format!(
                            "{workload}: envFrom configMapRef {}: no such ConfigMap",
                            map.name
                        )),
                        Some(data) => {
                            for (key, value) in data.iter() {
                                sources.insert(key.clone(), Source::Value(value.clone()));
                            }
                        }
                    }
                }
            }
            // Entries in order: a `$(NAME)` expands only to an entry declared before it.
            for var in &container.env {
                if let Some(value) = &var.value {
                    for name in references(value) {
                        if !container
                            .env
                            .iter()
                            .take_while(|earlier| earlier.name != var.name)
                            .any(|earlier| earlier.name == name)
                        {
                            violations.push(format!(
                                "{workload}: {} refers to $({name}), not declared before it",
                                var.name
                            ));
                        }
                    }
                }
                let source = match (&var.value, &var.value_from) {
                    (Some(value), _) => Source::Value(value.clone()),
                    (
                        None,
                        Some(EnvSource {
                            secret_key_ref: Some(r),
                            ..
                        }),
                    ) => {
                        if r.name != job_secret_name || !job_keys.contains(&r.key) {
                            violations.push(format!(
                                "{workload}: {} refers to secret key {}/{}, which the install Job does not create",
                                var.name, r.name, r.key
                            ));
                        }
                        keys_used.insert(r.key.clone());
                        Source::Secret {
                            secret: r.name.clone(),
                            key: r.key.clone(),
                        }
                    }
                    (
                        None,
                        Some(EnvSource {
                            config_map_key_ref: Some(r),
                            ..
                        }),
                    ) => match config_maps.get(r.name.as_str()).and_then(|d| d.get(&r.key)) {
                        Some(value) => Source::Value(value.clone()),
                        None => {
                            violations.push(format!(
                                    "{workload}: {} refers to ConfigMap key {}/{}, which does not exist",
                                    var.name, r.name, r.key
                                ));
                            Source::Other
                        }
                    },
                    _ => Source::Other,
                };
                sources.insert(var.name.clone(), source);
            }

            let Some(binary) = container
                .command
                .first()
                .and_then(|path| binaries.iter().find(|b| &b.path == path))
            else {
                continue;
            };
            report
                .checked
                .push(format!("{workload}: {}", container.name));
            let program = binary.program();
            let variables = variables(&binary.config);
            for (name, variable) in &variables {
                if variable.required && !sources.contains_key(name) {
                    violations.push(format!(
                        "{workload}: {name} is required by {program} and not provided"
                    ));
                }
            }
            // A secret reaches a container only for a variable its binary reads, directly or
            // spliced into one it reads (DB_PASSWORD into DATABASE_URL).
            let spliced: BTreeSet<&str> = container
                .env
                .iter()
                .filter(|var| variables.contains_key(&var.name))
                .filter_map(|var| var.value.as_deref())
                .flat_map(references)
                .collect();
            for (name, source) in &sources {
                if let Source::Secret { secret, key } = source
                    && !variables.contains_key(name)
                    && !spliced.contains(name.as_str())
                {
                    violations.push(format!(
                        "{workload}: secret key {secret}/{key} is given as {name}, which {program} does not read"
                    ));
                }
            }
            for name in variables.keys() {
                if let Some(Source::Value(value)) = sources.get(name)
                    && let Some(wrong) = points_nowhere(value, &services)
                {
                    violations.push(format!("{workload}: {name}={value} {wrong}"));
                }
            }
        }
    }
    for key in job_keys.difference(&keys_used) {
        violations.push(format!(
            "the install Job creates {job_secret_name}/{key}, which no workload reads"
        ));
    }
    Ok(report)
}

/// For a URL or `host:port` naming a host (not an IP address): why it does not reach a Service
/// port of the manifest, if it does not.
fn points_nowhere(value: &str, services: &BTreeMap<&str, BTreeSet<u16>>) -> Option<String> {
    let (host, port) = match value.split_once("://") {
        Some((scheme, rest)) => {
            let default_port = match scheme {
                "http" => 80,
                "https" => 443,
                "redis" => 6379,
                "postgres" | "postgresql" => 5432,
                _ => return None,
            };
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let host_port = authority.rsplit('@').next().unwrap_or_default();
            match host_port.rsplit_once(':') {
                Some((host, port)) => (host, port.parse().ok()?),
                None => (host_port, default_port),
            }
        }
        None => {
            let (host, port) = value.rsplit_once(':')?;
            let port: u16 = port.parse().ok()?;
            if host.is_empty()
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return None;
            }
            (host, port)
        }
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    let service = host.split('.').next().unwrap_or(host);
    match services.get(service) {
        None => Some(format!("points at no Service ({service})")),
        Some(ports) if !ports.contains(&port) => Some(format!(
            "points at port {port}, which Service {service} does not have"
        )),
        Some(_) => None,
    }
}
