//! mediator: the order saga's orchestrator (a worker of the order service).

use shop_common::service;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::main(mediator::run).await
}
