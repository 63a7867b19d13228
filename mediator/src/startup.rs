//! Wiring: the database pool and the shared Redis connection, the participants' clients, the executor, the stream
//! consumer, and the health/metrics server that stays up until the consumer has drained.

use crate::{config::Config, consumer::Consumer, executor::Executor, participants::Participants};
use anyhow::Result;
use axum::Router;
use shop_common::{
    db,
    http::{self, Readiness},
    redis,
    shutdown::Shutdown,
};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub async fn run(listener: TcpListener, config: Config, shutdown: impl Shutdown) -> Result<()> {
    // Stopped only once the consumer has drained, not on the signal: health stays readable.
    let server_stop = CancellationToken::new();
    let server = http::Server::start(listener, server_stop.clone().cancelled_owned());
    // The order service's migrations: both processes may apply them, sqlx serialises that.
    let pool = db::connect_and_migrate(&config.server.database, &order_store::MIGRATOR).await?;
    let redis = redis::connect(&config.redis_url)?;

    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        on_signal.cancel();
    });

    let participants =
        Participants::new(&config.participants, &config.internal_token, stop.clone())?;
    let executor = Arc::new(Executor::new(pool.clone(), participants));
    let consumer = Consumer::new(
        config.stream.clone(),
        config.redis_url.clone(),
        redis.clone(),
        executor,
        stop.clone(),
    );

    let readiness = Readiness::database_and_redis(pool, redis);
    let app = http::app("mediator", Router::new(), readiness, &config.server.http);
    server.ready(app);

    if let Some(broken) = config.participants.broken_compensation {
        tracing::error!(
            participant = broken.name(),
            "TEST ONLY: MEDIATOR_BROKEN_COMPENSATION is set; this mediator loses money and stock"
        );
    }
    tracing::info!(
        consumer = %config.stream.consumer,
        concurrency = config.stream.concurrency,
        "mediator started"
    );
    let consumed = consumer.run().await;
    server_stop.cancel();
    let served = server.stopped().await;
    consumed.and(served)
}
