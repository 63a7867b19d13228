//! auth: sign-up and tokens.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shop_common::telemetry::init();
    let config = auth::Config::from_env()?;
    let listener = shop_common::http::bind(&config.http).await?;
    auth::run(listener, config, shop_common::shutdown::signal()).await
}
