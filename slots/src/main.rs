//! slots: delivery slots and the courier step of the order saga.

use shop_common::service;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::main(slots::run).await
}
