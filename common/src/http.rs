//! What every service's HTTP server has in common: `/health/live`, `/health/ready`, `/metrics`,
//! request ids, tracing spans, request metrics, a body-size limit, a request timeout, JSON 404/405,
//! paths that answer with and without a trailing slash, a 503 `starting` until the service is
//! built, and graceful shutdown.

use crate::{
    config::HttpConfig,
    error::{ApiError, DEPENDENCY_RETRY_AFTER_SECS},
    redis::Redis,
};
use anyhow::{Context, Result};
use axum::{
    BoxError, Json, Router,
    error_handling::HandleErrorLayer,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderName, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use sqlx::PgPool;
use std::{
    future::Future,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};
use tokio::{net::TcpListener, task::JoinHandle};
use tower::{Layer, ServiceBuilder, ServiceExt};
use tower_http::{
    normalize_path::NormalizePathLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What `/health/ready` checks: the service's database and, where it uses one, Redis.
#[derive(Clone, Default)]
pub struct Readiness {
    pub db: Option<PgPool>,
    pub redis: Option<Redis>,
}

impl Readiness {
    /// A service whose only dependency is its database.
    pub fn database(db: PgPool) -> Self {
        Self {
            db: Some(db),
            redis: None,
        }
    }

    /// A service that needs its database and Redis.
    pub fn database_and_redis(db: PgPool, redis: Redis) -> Self {
        Self {
            db: Some(db),
            redis: Some(redis),
        }
    }
}

/// Wraps a service's API router with the shared endpoints and layers.
pub fn app(service: &'static str, api: Router, readiness: Readiness, http: &HttpConfig) -> Router {
    app_with_long_polls(service, api, LongPolls::none(), readiness, http)
}

/// Routes that wait on purpose (long polls): they run under REQUEST_TIMEOUT_MS plus their
/// longest wait, every other route under REQUEST_TIMEOUT_MS alone — a long poll gets the same
/// budget for its work as any request, on top of the wait its client asked for.
pub struct LongPolls {
    pub routes: Router,
    pub longest_wait: Duration,
}

impl LongPolls {
    pub fn none() -> Self {
        Self {
            routes: Router::new(),
            longest_wait: Duration::ZERO,
        }
    }
}

/// [`app`], with `long_polls` merged in under their own, longer timeout.
pub fn app_with_long_polls(
    service: &'static str,
    api: Router,
    long_polls: LongPolls,
    readiness: Readiness,
    http: &HttpConfig,
) -> Router {
    let metrics = metrics_handle();
    let operational = Router::new()
        .route(
            "/health/live",
            get(|| async { Json(json!({"status": "ok"})) }),
        )
        .route("/health/ready", get(ready).with_state(readiness))
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        );
    // `Router::layer` wraps each route present at the time, so each group keeps its own timeout.
    let timed = with_timeout(api.merge(operational), http.request_timeout);
    let long_polls = with_timeout(
        long_polls.routes,
        http.request_timeout + long_polls.longest_wait,
    );
    timed
        .merge(long_polls)
        .fallback(|| async { ApiError::not_found("not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this path",
            )
        })
        // Outside the timeout: a request that timed out is counted too, as the 503 it got.
        .layer(middleware::from_fn(move |req, next| {
            record_metrics(service, req, next)
        }))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|req: &Request| {
                        let id = req
                            .headers()
                            .get(REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-");
                        tracing::info_span!("request", method = %req.method(), uri = %req.uri(), request_id = %id)
                    }),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
        )
        .layer(DefaultBodyLimit::max(http.body_limit_bytes))
}

/// Every route of `routes` answers 503 `timeout`, with Retry-After, once it has run for `limit`.
fn with_timeout(routes: Router, limit: Duration) -> Router {
    routes.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |err: BoxError| async move {
                if err.is::<tower::timeout::error::Elapsed>() {
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "timeout",
                        format!("request took longer than {limit:?}"),
                    )
                    .with_retry_after(DEPENDENCY_RETRY_AFTER_SECS)
                } else {
                    ApiError::internal(anyhow::anyhow!("middleware failed: {err}"))
                }
            }))
            .timeout(limit),
    )
}

async fn ready(State(r): State<Readiness>) -> Response {
    let check = async {
        if let Some(db) = &r.db {
            sqlx::query("SELECT 1")
                .execute(db)
                .await
                .context("database")?;
        }
        if let Some(redis) = &r.redis {
            crate::redis::ping(redis).await.context("redis")?;
        }
        anyhow::Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(())) => Json(json!({"status": "ready"})).into_response(),
        Ok(Err(e)) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("{e:#}"),
        )
        .into_response(),
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "readiness check timed out",
        )
        .into_response(),
    }
}

async fn record_metrics(service: &'static str, req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let labels = [
        ("service", service.to_string()),
        ("method", method),
        ("path", path),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The process-wide Prometheus recorder (installed once; tests run several services per process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
                ])
                .expect("static buckets are valid")
                .install_recorder()
                .expect("installing the Prometheus recorder")
        })
        .clone()
}

/// A service's HTTP server, answering from the moment its listener is bound. Until
/// [`Server::ready`] hands it the service's router, every request — `/health/*` included — gets
/// a 503 `starting` with Retry-After: a process still waiting for its database, or migrating,
/// answers at once, instead of leaving connections the kernel accepted into the listen backlog
/// unread until its clients time out. The Kubernetes startup probe keeps waiting on that 503.
pub struct Server {
    app: Arc<OnceLock<Router>>,
    serving: JoinHandle<Result<()>>,
}

impl Server {
    /// Serves on `listener` at once (503 `starting` until [`Server::ready`]); stops, draining
    /// in-flight requests, when `shutdown` resolves.
    pub fn start(
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        let app = Arc::new(OnceLock::<Router>::new());
        let current = app.clone();
        let service = tower::service_fn(move |req: Request| {
            let app = current.get().cloned();
            async move {
                match app {
                    Some(app) => app.oneshot(req).await,
                    None => Ok(starting()),
                }
            }
        });
        // Outside the router, so that `/api/orders/` is rewritten before routing picks
        // `/api/orders`.
        let service = NormalizePathLayer::trim_trailing_slash().layer(service);
        let serving = tokio::spawn(async move {
            let addr = listener.local_addr().context("reading the bound address")?;
            tracing::info!(%addr, "listening");
            axum::serve(
                listener,
                axum::ServiceExt::<Request>::into_make_service(service),
            )
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP")
        });
        Self { app, serving }
    }

    /// From now on, requests go to `app` (the first router given; a second is ignored).
    pub fn ready(&self, app: Router) {
        if self.app.set(app).is_ok() {
            tracing::info!("serving");
        }
    }

    /// Until the server has stopped (on `shutdown`, once in-flight requests are answered).
    pub async fn stopped(mut self) -> Result<()> {
        (&mut self.serving)
            .await
            .context("the HTTP server panicked")?
    }

    /// [`Server::ready`] with `app`, then [`Server::stopped`].
    pub async fn serve(self, app: Router) -> Result<()> {
        self.ready(app);
        self.stopped().await
    }
}

impl Drop for Server {
    /// A `run` that fails while starting stops answering `starting` too.
    fn drop(&mut self) {
        self.serving.abort();
    }
}

/// What every request gets before the service's router is ready.
fn starting() -> Response {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "starting",
        "the service is starting: connecting to its database or migrating",
    )
    .with_retry_after(DEPENDENCY_RETRY_AFTER_SECS)
    .into_response()
}

/// Binds the configured address.
pub async fn bind(http: &HttpConfig) -> Result<TcpListener> {
    TcpListener::bind(http.listen_addr)
        .await
        .with_context(|| format!("binding {}", http.listen_addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    /// Bound and not built yet: every path, the probes' too, is a 503 `starting` with
    /// Retry-After at once; once ready, the service's routes (trailing slash or not).
    #[tokio::test]
    async fn a_server_answers_starting_until_it_is_ready() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = tokio_util::sync::CancellationToken::new();
        let server = Server::start(listener, stop.clone().cancelled_owned());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        for path in ["/api/things", "/health/live", "/health/ready"] {
            let r = http.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
            assert!(r.headers().contains_key("retry-after"), "{path}");
            let body: crate::error::ErrorBody = r.json().await.unwrap();
            assert_eq!(body.error, "starting", "{path}");
        }
        let api = Router::new().route("/api/things", get(|| async { "things" }));
        server.ready(app(
            "test",
            api,
            Readiness::default(),
            &HttpConfig::for_tests(),
        ));
        for path in ["/api/things", "/api/things/"] {
            let r = http.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(r.text().await.unwrap(), "things");
        }
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), server.stopped())
            .await
            .expect("stopped on shutdown")
            .unwrap();
    }

    /// A handler slower than REQUEST_TIMEOUT_MS answers 503 `timeout` in the shop's error shape,
    /// with Retry-After, after the timeout, not after the handler.
    #[tokio::test]
    async fn a_request_slower_than_the_timeout_is_a_503() {
        let http = HttpConfig {
            request_timeout: Duration::from_millis(50),
            ..HttpConfig::for_tests()
        };
        let slow = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "too late"
            }),
        );
        let app = app("test", slow, Readiness::default(), &http);
        let request = Request::builder().uri("/slow").body(Body::empty()).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(30), app.oneshot(request))
            .await
            .expect("answered by the timeout, not by the handler")
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get("retry-after").map(|v| v.as_bytes()),
            Some(DEPENDENCY_RETRY_AFTER_SECS.to_string().as_bytes())
        );
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: crate::error::ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(body.error, "timeout");
    }

    /// A long-poll route runs under the request timeout plus its longest wait; every other route
    /// keeps the request timeout alone.
    #[tokio::test]
    async fn long_polls_get_their_wait_on_top_of_the_request_timeout() {
        let http = HttpConfig {
            request_timeout: Duration::from_millis(200),
            ..HttpConfig::for_tests()
        };
        // Longer than the request timeout, well within it plus the longest wait.
        let takes_400_ms = || async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            "done"
        };
        let never = || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            "too late"
        };
        let api = Router::new().route("/short", get(takes_400_ms));
        let long_polls = LongPolls {
            routes: Router::new()
                .route("/poll", get(takes_400_ms))
                .route("/stuck", get(never)),
            longest_wait: Duration::from_secs(1),
        };
        let app = app_with_long_polls("test", api, long_polls, Readiness::default(), &http);
        let status = |path: &'static str| {
            let app = app.clone();
            async move {
                let request = Request::builder().uri(path).body(Body::empty()).unwrap();
                let started = Instant::now();
                let response = tokio::time::timeout(Duration::from_secs(30), app.oneshot(request))
                    .await
                    .expect("answered")
                    .unwrap();
                (response.status(), started.elapsed())
            }
        };
        assert_eq!(status("/short").await.0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status("/poll").await.0, StatusCode::OK);
        let (stuck, after) = status("/stuck").await;
        assert_eq!(stuck, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            after >= Duration::from_millis(1200),
            "timed out after {after:?}"
        );
        assert_eq!(status("/nowhere").await.0, StatusCode::NOT_FOUND);
    }
}
