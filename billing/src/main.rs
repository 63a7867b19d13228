//! billing: wallets, deposits and the money step of the order saga.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shop_common::telemetry::init();
    let config: billing::Config = shop_common::config::parse();
    let listener = shop_common::http::bind(&config.http).await?;
    billing::run(listener, config, shop_common::shutdown::signal()).await
}
