//! The renderer on small manifests: exactly what it writes, and every Ingress it refuses.

use super::*;

const SERVICES: &str = "
---
kind: Service
metadata: {name: auth}
spec: {ports: [{name: http, port: 8080}]}
---
kind: Service
metadata: {name: order}
spec: {ports: [{name: http, port: 8080}]}
---
kind: Deployment
metadata: {name: order}
spec: {replicas: 2}
";

/// A manifest: the two Services above plus one Ingress `name` with `annotations` (a YAML flow
/// mapping) routing `paths` (`(path, pathType, service)`).
fn manifest(name: &str, annotations: &str, paths: &[(&str, &str, &str)]) -> String {
    let mut yaml = format!(
        "# a comment-only first document, like deploy-services.yml's header\n{SERVICES}---\n\
         kind: Ingress\nmetadata:\n  name: {name}\n  annotations: {annotations}\nspec:\n  \
         ingressClassName: nginx\n  rules:\n    - host: arch.homework\n      http:\n        paths:\n"
    );
    for (path, path_type, service) in paths {
        yaml.push_str(&format!(
            "          - path: {path}\n            pathType: {path_type}\n            backend:\n              \
             service: {{name: {service}, port: {{name: http}}}}\n"
        ));
    }
    yaml
}

fn refusal(yaml: &str) -> String {
    format!(
        "{:#}",
        Routes::from_manifest(yaml).expect_err("the renderer accepted it")
    )
}

fn upstreams(pairs: &[(&str, &str)]) -> Upstreams {
    pairs
        .iter()
        .map(|(s, a)| (s.to_string(), a.parse().unwrap()))
        .collect()
}

fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const TEMPLATE: &str = "http {
    @UPSTREAMS@
    @RATE_LIMIT_ZONES@
    server {
        listen @LISTEN@;
        error_page 429 @too_many_requests;
        @PUBLIC_ROUTES@
    }
}
";

#[test]
fn renders_prefix_exact_and_the_annotations_ingress_nginx_would_apply() {
    let yaml = manifest(
        "shop-auth",
        r#"{nginx.ingress.kubernetes.io/limit-rps: "20", nginx.ingress.kubernetes.io/proxy-read-timeout: "45", nginx.ingress.kubernetes.io/proxy-body-size: 8k, kubernetes.io/description: ignored}"#,
        &[
            ("/api/token/", "Prefix", "auth"),
            ("/api/orders/ping", "Exact", "order"),
        ],
    );
    let routes = Routes::from_manifest(&yaml).unwrap();
    let rendered = routes
        .render(
            TEMPLATE,
            &upstreams(&[
                ("auth", "127.0.0.1:8001"),
                ("order", "127.0.0.1:8003"),
                ("mediator", "127.0.0.1:8004"),
            ]),
            &values(&[("LISTEN", "127.0.0.1:8080")]),
        )
        .unwrap();
    let directives = "limit_req zone=shop-auth burst=100 nodelay; client_max_body_size 8k; \
                      proxy_read_timeout 45s;";
    assert_eq!(
        rendered,
        format!(
            "http {{
    upstream auth {{
        server 127.0.0.1:8001 max_fails=0;
        keepalive 64;
        keepalive_requests 10000;
        keepalive_timeout 60s;
    }}
    upstream order {{
        server 127.0.0.1:8003 max_fails=0;
        keepalive 64;
        keepalive_requests 10000;
        keepalive_timeout 60s;
    }}
    limit_req_zone $binary_remote_addr zone=shop-auth:5m rate=20r/s;
    server {{
        listen 127.0.0.1:8080;
        error_page 429 @too_many_requests;
        location = /api/token {{ proxy_pass http://auth; {directives} }}
        location /api/token/ {{ proxy_pass http://auth; {directives} }}
        location = /api/orders/ping {{ proxy_pass http://order; {directives} }}
    }}
}}
"
        )
    );
}

#[test]
fn the_burst_is_the_rate_times_the_multiplier() {
    let yaml = manifest(
        "a",
        r#"{nginx.ingress.kubernetes.io/limit-rps: "7", nginx.ingress.kubernetes.io/limit-burst-multiplier: "3"}"#,
        &[("/api/token", "Prefix", "auth")],
    );
    let routes = Routes::from_manifest(&yaml).unwrap();
    assert_eq!(
        routes.policies["a"].rate_limit,
        Some(RateLimit {
            per_second: 7,
            burst: 21
        })
    );
}

#[test]
fn refuses_routes_that_would_make_internal_health_or_metrics_public() {
    for path in [
        "/internal",
        "/internal/charges",
        "/health/",
        "/health/ready",
        "/metrics",
        "/",
    ] {
        let message = refusal(&manifest("a", "{}", &[(path, "Prefix", "auth")]));
        assert!(message.contains("would make /"), "{path}: {message}");
    }
    let message = refusal(&manifest("a", "{}", &[("/metrics", "Exact", "auth")]));
    assert!(
        message.contains("path /metrics would make /metrics public"),
        "{message}"
    );
    // Element-wise, like Kubernetes: a public path that merely starts with the same letters is fine.
    Routes::from_manifest(&manifest("a", "{}", &[("/internals", "Prefix", "auth")])).unwrap();
    // `/` as Exact is the home page alone: it covers nothing.
    let home = Routes::from_manifest(&manifest("a", "{}", &[("/", "Exact", "auth")])).unwrap();
    assert_eq!(home.routes[0].path, "/");
}

#[test]
fn refuses_a_backend_that_is_not_a_service_of_the_manifest() {
    let message = refusal(&manifest("a", "{}", &[("/api/x", "Prefix", "billing")]));
    assert!(
        message.contains("path /api/x: no Service billing in the manifest"),
        "{message}"
    );
    let wrong_port = manifest("a", "{}", &[("/api/x", "Prefix", "auth")])
        .replace("port: {name: http}", "port: {name: metrics}");
    let message = refusal(&wrong_port);
    assert!(message.contains("Service auth has no port"), "{message}");
    let by_number = manifest("a", "{}", &[("/api/x", "Prefix", "auth")])
        .replace("port: {name: http}", "port: {number: 8080}");
    Routes::from_manifest(&by_number).unwrap();
}

#[test]
fn refuses_what_nginx_locations_cannot_mirror() {
    let message = refusal(&manifest(
        "a",
        "{}",
        &[("/api/x", "ImplementationSpecific", "auth")],
    ));
    assert!(
        message.contains("pathType ImplementationSpecific cannot be mirrored"),
        "{message}"
    );
    let message = refusal(&manifest("a", "{}", &[("/api/x;", "Prefix", "auth")]));
    assert!(message.contains("only /, letters"), "{message}");
    let message = refusal(&manifest(
        "a",
        "{}",
        &[("/api/x", "Prefix", "auth"), ("/api/x/", "Exact", "order")],
    ));
    assert!(
        message.contains("/api/x is already routed by Ingress a"),
        "{message}"
    );
    let with_default = manifest("a", "{}", &[("/api/x", "Prefix", "auth")]).replace(
        "  ingressClassName: nginx\n",
        "  ingressClassName: nginx\n  defaultBackend: {service: {name: auth, port: {number: 8080}}}\n",
    );
    let message = refusal(&with_default);
    assert!(
        message.contains("a defaultBackend routes every path"),
        "{message}"
    );
}

#[test]
fn refuses_an_ingress_nginx_annotation_the_gateway_does_not_reproduce() {
    let message = refusal(&manifest(
        "a",
        r#"{nginx.ingress.kubernetes.io/rewrite-target: /}"#,
        &[("/api/x", "Prefix", "auth")],
    ));
    assert!(
        message.contains(
            "Ingress a: annotation nginx.ingress.kubernetes.io/rewrite-target changes what"
        ),
        "{message}"
    );
    let message = refusal(&manifest(
        "a",
        r#"{nginx.ingress.kubernetes.io/limit-burst-multiplier: "5"}"#,
        &[("/api/x", "Prefix", "auth")],
    ));
    assert!(message.contains("without limit-rps"), "{message}");
    let message = refusal(&manifest(
        "a",
        r#"{nginx.ingress.kubernetes.io/proxy-read-timeout: 30s}"#,
        &[("/api/x", "Prefix", "auth")],
    ));
    assert!(message.contains("is not a number of seconds"), "{message}");
}

#[test]
fn reports_every_problem_at_once() {
    let message = refusal(&manifest(
        "a",
        "{}",
        &[
            ("/internal", "Prefix", "auth"),
            ("/api/x", "Prefix", "nobody"),
        ],
    ));
    assert!(
        message.contains("/internal") && message.contains("no Service nobody"),
        "{message}"
    );
}

#[test]
fn rendering_needs_an_address_for_every_routed_service_and_fills_every_placeholder() {
    let routes = Routes::from_manifest(&manifest(
        "a",
        "{}",
        &[
            ("/api/token", "Prefix", "auth"),
            ("/api/orders", "Prefix", "order"),
        ],
    ))
    .unwrap();
    let listen = values(&[("LISTEN", "127.0.0.1:1")]);
    let auth_only = upstreams(&[("auth", "127.0.0.1:8001")]);
    let message = format!(
        "{:#}",
        routes.render(TEMPLATE, &auth_only, &listen).unwrap_err()
    );
    assert!(
        message.contains("no local address for the routed service(s) order"),
        "{message}"
    );
    let both = upstreams(&[("auth", "127.0.0.1:8001"), ("order", "127.0.0.1:8003")]);
    let message = format!(
        "{:#}",
        routes.render(TEMPLATE, &both, &values(&[])).unwrap_err()
    );
    assert!(
        message.contains("no value for the template's @LISTEN@"),
        "{message}"
    );
    let extra = values(&[("LISTEN", "127.0.0.1:1"), ("STATE_DIR", "/tmp")]);
    let message = format!("{:#}", routes.render(TEMPLATE, &both, &extra).unwrap_err());
    assert!(
        message.contains("the template has no placeholder for STATE_DIR"),
        "{message}"
    );
    let without_routes = TEMPLATE.replace("@PUBLIC_ROUTES@", "");
    let message = format!(
        "{:#}",
        routes.render(&without_routes, &both, &listen).unwrap_err()
    );
    assert!(message.contains("no line @PUBLIC_ROUTES@"), "{message}");
}

/// The real pair: deploy-services.yml's Ingresses fill deploy/gateway.nginx.conf.template (nginx
/// itself checks the result where `make run` starts it: tools/tests/system/gateway.rs).
#[test]
fn the_repository_manifest_renders_into_the_repository_template() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let routes = Routes::from_manifest_file(&root.join("deploy-services.yml")).unwrap();
    let template =
        std::fs::read_to_string(root.join("deploy/gateway.nginx.conf.template")).unwrap();
    let all: Upstreams = routes
        .services()
        .into_iter()
        .map(|s| (s.to_string(), "127.0.0.1:1".parse().unwrap()))
        .collect();
    let rendered = routes
        .render(
            &template,
            &all,
            &values(&[
                ("STATE_DIR", "/state"),
                ("LISTEN", "127.0.0.1:8080"),
                ("USER_DIRECTIVE", ""),
            ]),
        )
        .unwrap();
    for route in &routes.routes {
        assert!(
            rendered.contains(&format!(
                "location = {} {{ proxy_pass http://{};",
                route.path, route.service
            )),
            "{route:?} is not in\n{rendered}"
        );
    }
}
