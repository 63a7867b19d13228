//! items: the item catalog and the stock step of the order saga.

use shop_common::service;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::main(items::run).await
}
