//! The public routes, written once: the Ingress rules of `deploy-services.yml` are what production
//! routes by, and the local nginx gateway (`make run`, `make test`) is rendered from them here.
//!
//! [`Routes::from_manifest`] reads every `kind: Ingress` of the manifest and refuses what the
//! gateway could not mirror or what must never be public:
//! - a path under `/internal`, `/health` or `/metrics` (or a `Prefix` covering them, such as `/`), a
//!   `defaultBackend`, a backend that is not a Service of the manifest with that port;
//! - a `pathType` other than `Prefix` or `Exact` (`ImplementationSpecific` may be a regex), the same
//!   path routed twice, characters in a path that nginx would read as syntax;
//! - an `nginx.ingress.kubernetes.io/*` annotation the gateway does not reproduce (see
//!   [`IngressPolicy`]): a behaviour of production the local stack would silently lack.
//!
//! [`Routes::render`] fills `deploy/gateway.nginx.conf.template`, which keeps every other setting,
//! at three placeholders that stand alone on their lines — `@UPSTREAMS@`, `@RATE_LIMIT_ZONES@`,
//! `@PUBLIC_ROUTES@` — and replaces the template's scalar placeholders (`@NAME@`) with the values
//! given; a placeholder left over or a value nobody asked for is an error. Where each service
//! listens locally is the caller's (`crate::local::start_gateway`): an [`Upstreams`] map.
//!
//! Prefix semantics (Kubernetes `pathType: Prefix`, per path element): `/api/orders` matches
//! `/api/orders`, `/api/orders/` and everything below, never `/api/ordersX` — in nginx the pair
//! `location = /api/orders` + `location /api/orders/`. `Exact` is `location = <path>` alone.

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::SocketAddr,
    path::Path,
};

/// Path prefixes that no route may reach: the services' internal API and operational endpoints.
pub const NEVER_PUBLIC: [&str; 3] = ["/internal", "/health", "/metrics"];

const ANNOTATION_PREFIX: &str = "nginx.ingress.kubernetes.io/";
/// ingress-nginx's `limit-burst-multiplier` when the annotation is absent.
const DEFAULT_BURST_MULTIPLIER: u32 = 5;
/// ingress-nginx's shared memory size of a rate-limit zone (MiB).
const RATE_LIMIT_ZONE_MIB: u32 = 5;

/// How a route's path matches, as in the Ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathType {
    Prefix,
    Exact,
}

/// One public route: an Ingress path and the Service it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Without a trailing slash (`/api/orders`); Kubernetes ignores one on a `Prefix` path.
    pub path: String,
    pub path_type: PathType,
    /// The backend Service's name, which is also the service's binary name.
    pub service: String,
    /// The Ingress that declares it; its annotations apply to the route.
    pub ingress: String,
}

/// The ingress-nginx annotations of one Ingress that change what a client sees, each reproduced by
/// the gateway on that Ingress's routes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngressPolicy {
    /// `limit-rps` and `limit-burst-multiplier`: per client address, requests/s and burst size
    /// (`limit_req ... nodelay`, as ingress-nginx writes it).
    pub rate_limit: Option<RateLimit>,
    /// `proxy-body-size`: nginx `client_max_body_size`, as written (`1m`, `8k`, `0`).
    pub body_size: Option<String>,
    /// `proxy-connect-timeout`, `proxy-send-timeout`, `proxy-read-timeout`: seconds.
    pub connect_timeout_s: Option<u32>,
    pub send_timeout_s: Option<u32>,
    pub read_timeout_s: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// Where each service listens for the gateway, by Service name.
pub type Upstreams = BTreeMap<String, SocketAddr>;

/// The public routes of a manifest, in the order its Ingresses declare them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    pub routes: Vec<Route>,
    /// By Ingress name; every Ingress with a route has an entry.
    pub policies: BTreeMap<String, IngressPolicy>,
}

impl Routes {
    pub fn from_manifest_file(path: &Path) -> Result<Routes> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Routes::from_manifest(&text).with_context(|| format!("{}", path.display()))
    }

    /// Every problem found is reported, not only the first.
    pub fn from_manifest(yaml: &str) -> Result<Routes> {
        let objects = serde_yaml_ng::Deserializer::from_str(yaml)
            .map(Option::<Object>::deserialize)
            .collect::<Result<Vec<_>, _>>()
            .context("parsing the manifest")?;
        let mut services: BTreeMap<&str, &ServiceSpec> = BTreeMap::new();
        let mut ingresses = Vec::new();
        for object in objects.iter().flatten() {
            match object {
                Object::Service { metadata, spec } => {
                    services.insert(&metadata.name, spec);
                }
                Object::Ingress { metadata, spec } => ingresses.push((metadata, spec)),
                Object::Other => {}
            }
        }

        let mut problems = Vec::new();
        let mut routes: Vec<Route> = Vec::new();
        let mut policies = BTreeMap::new();
        for (metadata, spec) in ingresses {
            let name = &metadata.name;
            match policy(&metadata.annotations) {
                Ok(policy) => {
                    policies.insert(name.clone(), policy);
                }
                Err(e) => problems.push(format!("Ingress {name}: {e:#}")),
            }
            if spec.default_backend.is_some() {
                problems.push(format!(
                    "Ingress {name}: a defaultBackend routes every path"
                ));
            }
            for http_path in spec
                .rules
                .iter()
                .filter_map(|r| r.http.as_ref())
                .flat_map(|h| &h.paths)
            {
                match route(name, http_path, &services) {
                    Ok(route) => {
                        // Prefix and Exact on one path would both be `location = <path>`.
                        if let Some(earlier) = routes.iter().find(|r| r.path == route.path) {
                            problems.push(format!(
                                "Ingress {name}: {} is already routed by Ingress {}",
                                route.path, earlier.ingress
                            ));
                        } else {
                            routes.push(route);
                        }
                    }
                    Err(e) => problems.push(format!("Ingress {name}: {e:#}")),
                }
            }
        }
        if routes.is_empty() && problems.is_empty() {
            problems.push("no Ingress routes anything".into());
        }
        if !problems.is_empty() {
            bail!(
                "the gateway cannot mirror these Ingress rules:\n  {}",
                problems.join("\n  ")
            );
        }
        Ok(Routes { routes, policies })
    }

    /// The services that receive public traffic, sorted.
    pub fn services(&self) -> BTreeSet<&str> {
        self.routes.iter().map(|r| r.service.as_str()).collect()
    }

    /// The gateway's nginx config: `template` with the routes, their upstreams and rate-limit zones
    /// filled in, and every `@NAME@` replaced by `values[NAME]`.
    pub fn render(
        &self,
        template: &str,
        upstreams: &Upstreams,
        values: &BTreeMap<String, String>,
    ) -> Result<String> {
        let missing: Vec<&str> = self
            .services()
            .into_iter()
            .filter(|s| !upstreams.contains_key(*s))
            .collect();
        ensure!(
            missing.is_empty(),
            "no local address for the routed service(s) {} (give name=host:port)",
            missing.join(", ")
        );
        let blocks = [
            ("UPSTREAMS", self.upstream_blocks(upstreams)),
            ("RATE_LIMIT_ZONES", self.rate_limit_zones()),
            ("PUBLIC_ROUTES", self.locations()),
        ];
        let mut out = String::with_capacity(template.len() + 4096);
        let mut filled = BTreeSet::new();
        let mut used = BTreeSet::new();
        for line in template.lines() {
            let trimmed = line.trim();
            if let Some((name, block)) = blocks
                .iter()
                .find(|(name, _)| trimmed == format!("@{name}@"))
            {
                ensure!(filled.insert(*name), "the template has @{name}@ twice");
                let indent = &line[..line.len() - line.trim_start().len()];
                for generated in block.lines() {
                    if generated.is_empty() {
                        out.push('\n');
                    } else {
                        let _ = writeln!(out, "{indent}{generated}");
                    }
                }
                continue;
            }
            out.push_str(&replace_scalars(line, values, &mut used)?);
            out.push('\n');
        }
        for (name, _) in &blocks {
            ensure!(filled.contains(name), "the template has no line @{name}@");
        }
        let unused: Vec<&str> = values
            .keys()
            .map(String::as_str)
            .filter(|k| !used.contains(*k))
            .collect();
        ensure!(
            unused.is_empty(),
            "the template has no placeholder for {}",
            unused.join(", ")
        );
        Ok(out)
    }

    fn upstream_blocks(&self, upstreams: &Upstreams) -> String {
        let mut out = String::new();
        for service in self.services() {
            // Keep-alive to the services: without it every proxied request opens a connection.
            let _ = writeln!(
                out,
                "upstream {service} {{\n    server {} max_fails=0;\n    keepalive 64;\n    \
                 keepalive_requests 10000;\n    keepalive_timeout 60s;\n}}",
                upstreams[service]
            );
        }
        out
    }

    fn rate_limit_zones(&self) -> String {
        let mut out = String::new();
        for (ingress, policy) in &self.policies {
            if let Some(limit) = policy.rate_limit {
                let _ = writeln!(
                    out,
                    "limit_req_zone $binary_remote_addr zone={ingress}:{RATE_LIMIT_ZONE_MIB}m rate={}r/s;",
                    limit.per_second
                );
            }
        }
        out
    }

    fn locations(&self) -> String {
        let mut out = String::new();
        for route in &self.routes {
            let policy = &self.policies[&route.ingress];
            let mut directives = format!("proxy_pass http://{};", route.service);
            if let Some(limit) = policy.rate_limit {
                let _ = write!(
                    directives,
                    " limit_req zone={} burst={} nodelay;",
                    route.ingress, limit.burst
                );
            }
            if let Some(size) = &policy.body_size {
                let _ = write!(directives, " client_max_body_size {size};");
            }
            for (directive, seconds) in [
                ("proxy_connect_timeout", policy.connect_timeout_s),
                ("proxy_send_timeout", policy.send_timeout_s),
                ("proxy_read_timeout", policy.read_timeout_s),
            ] {
                if let Some(s) = seconds {
                    let _ = write!(directives, " {directive} {s}s;");
                }
            }
            let path = &route.path;
            let _ = writeln!(out, "location = {path} {{ {directives} }}");
            if route.path_type == PathType::Prefix {
                // A `/` prefix is refused (it covers /internal), so `{path}/` is never `//`.
                let _ = writeln!(out, "location {path}/ {{ {directives} }}");
            }
        }
        out
    }
}

/// `line` with every `@NAME@` (NAME in `A-Z_`) replaced; records the names used.
fn replace_scalars<'a>(
    line: &str,
    values: &'a BTreeMap<String, String>,
    used: &mut BTreeSet<&'a str>,
) -> Result<String> {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find('@') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('@') {
            let name = &after[..name_len];
            let (key, value) = values
                .get_key_value(name)
                .with_context(|| format!("no value for the template's @{name}@"))?;
            ensure!(
                !value.contains('\n'),
                "the value of {name} has a line break"
            );
            used.insert(key.as_str());
            out.push_str(value);
            rest = &after[name_len + 1..];
        } else {
            out.push('@');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn route(ingress: &str, p: &HttpPath, services: &BTreeMap<&str, &ServiceSpec>) -> Result<Route> {
    let raw = p.path.as_deref().unwrap_or("/");
    let path_type = match p.path_type.as_str() {
        "Prefix" => PathType::Prefix,
        "Exact" => PathType::Exact,
        other => bail!(
            "path {raw}: pathType {other} cannot be mirrored (ImplementationSpecific may be a \
             regex): use Prefix or Exact"
        ),
    };
    ensure!(
        raw.starts_with('/')
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/-._~".contains(c)),
        "path {raw:?}: only /, letters, digits and -._~ are mirrored"
    );
    let path = match raw.trim_end_matches('/') {
        "" => "/".to_string(),
        trimmed => trimmed.to_string(),
    };
    for never in NEVER_PUBLIC {
        let exposed = match path_type {
            PathType::Prefix => covers(&path, never) || covers(never, &path),
            PathType::Exact => covers(never, &path),
        };
        ensure!(!exposed, "path {raw} would make {never} public");
    }
    let backend = p
        .backend
        .service
        .as_ref()
        .with_context(|| format!("path {raw}: only Service backends are mirrored"))?;
    let service = services
        .get(backend.name.as_str())
        .with_context(|| format!("path {raw}: no Service {} in the manifest", backend.name))?;
    let port_exists = service.ports.iter().any(|port| match &backend.port {
        ServicePortRef {
            name: Some(name), ..
        } => port.name.as_ref() == Some(name),
        ServicePortRef {
            number: Some(n), ..
        } => port.port == *n,
        _ => false,
    });
    ensure!(
        port_exists,
        "path {raw}: Service {} has no port {:?}",
        backend.name,
        backend.port
    );
    Ok(Route {
        path,
        path_type,
        service: backend.name.clone(),
        ingress: ingress.to_string(),
    })
}

/// Whether the prefix `prefix` matches `path`, element-wise like an Ingress `Prefix`.
fn covers(prefix: &str, path: &str) -> bool {
    prefix == "/" || path == prefix || path.starts_with(&format!("{prefix}/"))
}

fn policy(annotations: &BTreeMap<String, String>) -> Result<IngressPolicy> {
    let mut policy = IngressPolicy::default();
    let mut burst_multiplier = None;
    for (key, value) in annotations {
        let Some(name) = key.strip_prefix(ANNOTATION_PREFIX) else {
            continue; // not ingress-nginx's: no effect on routing
        };
        let seconds = || -> Result<u32> {
            value
                .parse()
                .with_context(|| format!("{key}: {value:?} is not a number of seconds"))
        };
        match name {
            "limit-rps" => {
                let rps: u32 = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("{key}: {value:?} is not a positive number"))?;
                policy.rate_limit = Some(RateLimit {
                    per_second: rps,
                    burst: 0,
                });
            }
            "limit-burst-multiplier" => {
                burst_multiplier = Some(
                    value
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .with_context(|| format!("{key}: {value:?} is not a positive number"))?,
                );
            }
            "proxy-body-size" => {
                let digits = value.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G']);
                ensure!(
                    !digits.is_empty()
                        && digits.chars().all(|c| c.is_ascii_digit())
                        && value.len() - digits.len() <= 1,
                    "{key}: {value:?} is not an nginx size"
                );
                policy.body_size = Some(value.clone());
            }
            "proxy-connect-timeout" => policy.connect_timeout_s = Some(seconds()?),
            "proxy-send-timeout" => policy.send_timeout_s = Some(seconds()?),
            "proxy-read-timeout" => policy.read_timeout_s = Some(seconds()?),
            _ => bail!(
                "annotation {key} changes what ingress-nginx does and the local gateway does not \
                 reproduce it: teach tools/src/gateway.rs"
            ),
        }
    }
    match (&mut policy.rate_limit, burst_multiplier) {
        (Some(limit), multiplier) => {
            limit.burst = limit
                .per_second
                .saturating_mul(multiplier.unwrap_or(DEFAULT_BURST_MULTIPLIER))
        }
        (None, Some(_)) => bail!("{ANNOTATION_PREFIX}limit-burst-multiplier without limit-rps"),
        (None, None) => {}
    }
    Ok(policy)
}

// ---- the part of the Kubernetes objects read here (kubernetes-validate checks the whole schema)

#[derive(Deserialize)]
#[serde(tag = "kind")]
enum Object {
    Ingress {
        metadata: Metadata,
        spec: IngressSpec,
    },
    Service {
        metadata: Metadata,
        spec: ServiceSpec,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IngressSpec {
    default_backend: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    rules: Vec<IngressRule>,
}

#[derive(Deserialize)]
struct IngressRule {
    http: Option<HttpRule>,
}

#[derive(Deserialize)]
struct HttpRule {
    paths: Vec<HttpPath>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpPath {
    path: Option<String>,
    path_type: String,
    backend: Backend,
}

#[derive(Deserialize)]
struct Backend {
    service: Option<ServiceBackend>,
}

#[derive(Deserialize)]
struct ServiceBackend {
    name: String,
    port: ServicePortRef,
}

#[derive(Debug, Deserialize)]
struct ServicePortRef {
    name: Option<String>,
    number: Option<u16>,
}

#[derive(Deserialize)]
struct ServiceSpec {
    #[serde(default)]
    ports: Vec<ServicePort>,
}

#[derive(Deserialize)]
struct ServicePort {
    name: Option<String>,
    port: u16,
}

#[cfg(test)]
mod tests;
