//! The gateway rendered from the Ingress, in front of the real services: every Ingress path is
//! served by the service it names (its router knows something at or under the path), the gateway
//! hands every request on it to that service, with and without a trailing slash, and nothing under
//! /internal, /health or /metrics gets through. Every API path a service answers at is in the
//! OpenAPI document (docs/openapi.json): a route without a spec entry fails here. What nginx
//! answers itself (a refused method, a service down) keeps the shop's JSON error shape. nginx is
//! started by `tools::local::start_gateway`, exactly as `make run` starts it. Needs
//! TEST_DATABASE_URL and TEST_REDIS_URL, like every stack test.

use shop_common::{openapi::is_instance, testing::outage::expect_unavailable};
use std::path::{Path, PathBuf};
use tools::{
    gateway::{NEVER_PUBLIC, PathType, Routes, Upstreams},
    local, procs,
    stack::{Service, Stack, StackConfig},
    stores,
};

/// The routes that are pages, not API: not in the OpenAPI document.
const PAGES: [&str; 5] = ["/", "/console", "/assets", "/api/docs", "/api/openapi.json"];

/// The path templates of the OpenAPI document (`/api/orders/{id}`).
fn documented_paths() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let document: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// What a client can tell apart: the status and, for an error, its `error` code.
type Answer = (u16, Option<String>);

/// The answer of axum's fallback and of the gateway's `location /` to a path nobody routes.
fn no_such_route() -> Answer {
    (404, Some("not_found".into()))
}

async fn answer(client: &reqwest::Client, url: &str) -> Answer {
    answer_to(client.get(url)).await
}

async fn answer_to(request: reqwest::RequestBuilder) -> Answer {
    let described = format!("{request:?}");
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{described}: {e}"));
    let status = response.status().as_u16();
    let body: Option<serde_json::Value> = response.json().await.ok();
    let error = body.and_then(|b| Some(b.get("error")?.as_str()?.to_string()));
    (status, error)
}

/// The gateway started by `tools::local::start_gateway` — exactly as `make run` starts it — in a
/// directory of its own; stopped and removed on drop.
struct Gateway {
    dir: PathBuf,
    url: String,
}

impl Gateway {
    async fn start(stack: &Stack) -> Gateway {
        let upstreams: Upstreams = Service::ALL
            .into_iter()
            .map(|service| {
                let url = stack.url(service);
                let addr = url.trim_start_matches("http://").parse().unwrap();
                (service.name().to_owned(), addr)
            })
            .collect();
        Self::start_with(upstreams).await
    }

    /// In front of every service at an address where nothing listens: a shop whose services are
    /// all down.
    async fn start_before_nothing() -> Gateway {
        let dead = procs::pick_ports(Service::ALL.len()).unwrap();
        let upstreams: Upstreams = Service::ALL
            .into_iter()
            .zip(dead)
            .map(|(service, port)| {
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                (service.name().to_owned(), addr)
            })
            .collect();
        Self::start_with(upstreams).await
    }

    async fn start_with(upstreams: Upstreams) -> Gateway {
        let mut last_error = String::new();
        // A port of the project range, taken meanwhile by someone else: try another.
        for _ in 0..5 {
            let dir = std::env::temp_dir().join(format!("saga-gateway-{}", uuid::Uuid::new_v4()));
            let port = procs::pick_ports(1).unwrap()[0];
            let (task_dir, task_upstreams) = (dir.clone(), upstreams.clone());
            let started = tokio::task::spawn_blocking(move || {
                local::start_gateway(&task_dir, port, &task_upstreams)
            })
            .await
            .unwrap();
            match started {
                Ok(()) => {
                    return Gateway {
                        dir,
                        url: format!("http://127.0.0.1:{port}"),
                    };
                }
                Err(e) => last_error = format!("{e:#}"),
            }
            let _ = stores::purge(&dir);
        }
        panic!("starting the gateway failed 5 times: {last_error}");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = stores::purge(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ingress_route_reaches_its_service_through_the_rendered_gateway() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy-services.yml");
    let routes = Routes::from_manifest_file(&manifest).unwrap();
    let stack = Stack::start(StackConfig::from_test_env()).await.unwrap();
    let gateway = Gateway::start(&stack).await;
    let client = reqwest::Client::new();
    let documented = documented_paths();

    for route in &routes.routes {
        let service: Service = route.service.parse().unwrap();
        let direct = stack.url(service);
        let path = &route.path;
        // Prefix: the path, with its trailing slash, and a path below it (where a path parameter
        // lives, e.g. /api/accounts/{username}); Exact: the path alone.
        let forms: Vec<Vec<String>> = match route.path_type {
            PathType::Prefix => vec![
                vec![path.clone(), format!("{path}/")],
                vec![format!("{path}/probe"), format!("{path}/probe/")],
            ],
            PathType::Exact => vec![vec![path.clone()]],
        };
        let mut served = false;
        for spellings in &forms {
            let mut answers = Vec::new();
            for probe in spellings {
                let through_gateway = answer(&client, &format!("{}{probe}", gateway.url)).await;
                let from_service = answer(&client, &format!("{direct}{probe}")).await;
                assert_eq!(
                    through_gateway, from_service,
                    "{probe} ({:?} of Ingress {}): the gateway's answer is not {service}'s",
                    route.path_type, route.ingress
                );
                let answers_here = from_service != no_such_route();
                if answers_here && !PAGES.contains(&path.as_str()) {
                    assert!(
                        documented.iter().any(|t| is_instance(t, probe)),
                        "{service} answers {probe} ({from_service:?}), which the OpenAPI document lacks"
                    );
                }
                served |= answers_here;
                answers.push(from_service);
            }
            assert!(
                answers.windows(2).all(|w| w[0] == w[1]),
                "{spellings:?} answer differently with and without the trailing slash: {answers:?}"
            );
        }
        assert!(
            served,
            "Ingress {} routes {path} to {service}, but {service} serves nothing at or under it",
            route.ingress
        );
    }

    // The control that shows the comparison above can fail: these paths answer on the services,
    // and the gateway does not hand them on.
    for (probe, service) in [
        ("/internal/accounts", Service::Billing),
        ("/health/ready", Service::Order),
        ("/metrics", Service::Items),
    ] {
        assert!(NEVER_PUBLIC.iter().any(|never| probe.starts_with(never)));
        let from_service = answer(&client, &format!("{}{probe}", stack.url(service))).await;
        assert_ne!(
            from_service,
            no_such_route(),
            "{service} does not serve {probe}"
        );
        let through_gateway = answer(&client, &format!("{}{probe}", gateway.url)).await;
        assert_eq!(
            through_gateway,
            no_such_route(),
            "the gateway routes {probe}"
        );
    }
    drop(gateway);
    stack.shutdown().await;
}

/// What nginx answers itself, not a service, keeps the shop's error shape: a method it refuses
/// (TRACE), and a service that is down — a 503 `unavailable` with Retry-After, as a service
/// answers when its own dependency is down. (A request line too long for nginx keeps its HTML
/// 414: the line could not be parsed, and an `error_page` for it answers 500.)
#[tokio::test]
async fn the_gateways_own_errors_keep_the_error_shape() {
    let gateway = Gateway::start_before_nothing().await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", gateway.url);

    let trace = client.request(reqwest::Method::TRACE, url("/api/orders/"));
    assert_eq!(
        answer_to(trace).await,
        (405, Some("method_not_allowed".into()))
    );
    for path in ["/api/items/", "/api/orders/"] {
        expect_unavailable(client.get(url(path))).await;
    }
    drop(gateway);
}
