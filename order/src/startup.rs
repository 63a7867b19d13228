//! Wiring: state, the router, and `run` (the HTTP server plus the outbox's sweeper and flusher).

use crate::{
    admin,
    config::Config,
    outbox::{self, Outbox},
    pages, routes,
    signals::FinalSignals,
};
use anyhow::Result;
use axum::{Router, extract::FromRef};
use order_store::{
    MIGRATOR,
    db::{self, NewOrder, Order, OrderWithLog, Wanted},
    stream::final_channel,
};
use shop_common::{
    auth::JwtKeys,
    batched::{BatchFailed, Batched, Limits},
    db as pg,
    http::{self, LongPolls, Readiness},
    redis::{self, Redis},
    shutdown::Shutdown,
};
use sqlx::PgPool;
use std::{sync::Arc, time::Duration};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// The order API's OpenAPI document: every public route, from the handlers' annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::public()
        .merge(routes::long_polls())
        .merge(admin::router())
        .into_openapi()
}

/// How long `run` waits, after the server stopped, for the last publication flags to be written.
const FLUSH_GRACE: Duration = Duration::from_secs(5);

/// New orders, stored together (`shop_common::batched`): one INSERT and one commit for
/// whatever POSTs wait while [`BATCHES`]' statements run, each POST answered once its own commits.
pub type Inserts = Batched<NewOrder, Option<Order>, BatchFailed>;

/// Orders read with their saga logs for the customer, together: one query for whatever reads
/// wait (the long polls that a burst of final signals wakes at once).
pub type Reads = Batched<Wanted, Option<OrderWithLog>, BatchFailed>;

/// How inserts and reads are batched: statements of each at once, and the most in one.
const BATCHES: Limits = Limits {
    in_flight: 1,
    max: 64,
};

#[derive(Clone, FromRef)]
pub struct AppState {
    pub pool: PgPool,
    pub inserts: Inserts,
    pub reads: Reads,
    pub jwt: JwtKeys,
    pub outbox: Outbox,
    pub signals: Arc<FinalSignals>,
    /// Shown to operators (`/api/admin/dead-letters`); the mediator writes it.
    pub dead_letter_stream: Arc<str>,
}

/// The router, and the tasks behind it: the flusher (ends when the router is dropped) and the
/// final-state listener (ends on `stop`).
fn build(
    pool: PgPool,
    redis: Redis,
    config: &Config,
    stop: CancellationToken,
) -> (Router, JoinHandle<()>, JoinHandle<()>) {
    let signals = Arc::<FinalSignals>::default();
    let listener = tokio::spawn(signals.clone().listen(
        config.redis_url.clone(),
        final_channel(&config.streams.orders_stream),
        stop,
    ));
    let (outbox, flusher) = Outbox::new(pool.clone(), redis, &config.streams.orders_stream);
    let store = pool.clone();
    let inserts = Batched::start(BATCHES, move |new: Vec<NewOrder>| {
        let pool = store.clone();
        async move { Ok(db::insert_orders(&pool, &new).await?) }
    });
    let store = pool.clone();
    let reads = Batched::start(BATCHES, move |wanted: Vec<Wanted>| {
        let pool = store.clone();
        async move { Ok(db::find_orders_with_log(&pool, &wanted).await?) }
    });
    let state = AppState {
        pool: pool.clone(),
        inserts,
        reads,
        jwt: JwtKeys::new(&config.jwt_secret),
        outbox,
        signals,
        dead_letter_stream: config.streams.dead_letter_stream.as_str().into(),
    };
    let api = Router::from(routes::public().merge(admin::router()))
        .merge(pages::router())
        .with_state(state.clone());
    let long_polls = LongPolls {
        routes: Router::from(routes::long_polls()).with_state(state),
        longest_wait: routes::MAX_WAIT,
    };
    // Only the database: a POST with Redis down is stored and published later by the sweep, and
    // reads never need Redis, so a Redis outage must not take the order API out of the Ingress.
    let readiness = Readiness::database(pool);
    (
        http::app_with_long_polls("order", api, long_polls, readiness, &config.server.http),
        flusher,
        listener,
    )
}

pub async fn run(listener: TcpListener, config: Config, shutdown: impl Shutdown) -> Result<()> {
    let server = http::Server::start(listener, shutdown);
    let pool = pg::connect_and_migrate(&config.server.database, &MIGRATOR).await?;
    let redis = redis::connect(&config.redis_url)?;
    let stop_sweeping = CancellationToken::new();
    let sweeper = tokio::spawn(outbox::run_sweeper(
        pool.clone(),
        redis.clone(),
        config.streams.orders_stream.clone(),
        outbox::SweepAfter {
            unpublished: config.republish_after,
            stale: config.republish_stale_after,
        },
        stop_sweeping.clone(),
    ));
    let (router, flusher, signal_listener) = build(pool, redis, &config, stop_sweeping.clone());
    let served = server.serve(router).await;
    stop_sweeping.cancel();
    let _ = sweeper.await;
    let _ = signal_listener.await;
    // The router (and so every sender to the flusher) is gone: the flusher drains and ends.
    if tokio::time::timeout(FLUSH_GRACE, flusher).await.is_err() {
        tracing::warn!("publication flags not all written; the sweep will re-publish those");
    }
    served
}
