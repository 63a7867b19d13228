//! mediator: the order saga's orchestrator (a worker of the order service).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shop_common::telemetry::init();
    let config: mediator::Config = shop_common::config::parse();
    let listener = shop_common::http::bind(&config.http).await?;
    mediator::run(listener, config, shop_common::shutdown::signal()).await
}
