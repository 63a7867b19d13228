//! billing: wallets, deposits and the money step of the order saga.

use shop_common::service;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::main(billing::run).await
}
