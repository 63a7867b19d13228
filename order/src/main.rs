//! order: the public order API; each order's saga is run by the mediator.

use shop_common::service;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::main(order::run).await
}
