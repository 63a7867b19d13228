//! order: the public order API; each order's saga is run by the mediator.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shop_common::telemetry::init();
    let config: order::Config = shop_common::config::parse();
    let listener = shop_common::http::bind(&config.http).await?;
    order::run(listener, config, shop_common::shutdown::signal()).await
}
