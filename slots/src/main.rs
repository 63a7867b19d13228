//! slots: delivery slots and the courier step of the order saga.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shop_common::telemetry::init();
    let config: slots::Config = shop_common::config::parse();
    let listener = shop_common::http::bind(&config.http).await?;
    slots::run(listener, config, shop_common::shutdown::signal()).await
}
