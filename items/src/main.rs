//! items: the item catalog and the stock step of the order saga.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shop_common::telemetry::init();
    let config: items::Config = shop_common::config::parse();
    let listener = shop_common::http::bind(&config.http).await?;
    items::run(listener, config, shop_common::shutdown::signal()).await
}
