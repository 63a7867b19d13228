//! items on a fresh database, started through `items::run` (migrations and seeding included), as
//! the ledger kit's [`Listed`] participant: its catalog, its stock, its reservation ledger.

use shop_client::{Endpoints, ShopClient};
use shop_common::{
    config::DatabaseConfig,
    testing::{
        self,
        ledger::{Contract, Listed, Listing},
    },
};
use std::time::Duration;

/// The reservation step as docs/ARCHITECTURE.md states it: a missing and a sold-out item are
/// refused alike.
pub static RESERVATIONS: Contract = Contract {
    route: "reservations",
    unknown_code: "item_unavailable",
    exhausted_code: "item_unavailable",
};

/// `GET /api/items` lists the rows of `items`, keyed by id, with their stock.
static CATALOG: Listing = Listing {
    table: "items",
    key: "id",
    available: "stock",
};

pub async fn spawn_app(stock: i64) -> Listed {
    spawn_on(testing::fresh_database().await, stock).await
}

/// Starts items on `database`, which may already hold an earlier instance's data (a restart).
pub async fn spawn_on(database: DatabaseConfig, stock: i64) -> Listed {
    let config = items::Config {
        participant: testing::participant(database.clone()),
        item_stock: stock,
    };
    let run = |listener| items::run(listener, config, std::future::pending());
    let service = testing::start("items", database, run).await;
    Listed::new(service, &RESERVATIONS, &CATALOG)
}

/// The public API of `app` as a client sees it.
pub fn client(app: &Listed) -> ShopClient {
    ShopClient::new(
        Endpoints::gateway(&app.service.base),
        Duration::from_secs(10),
    )
    .expect("an HTTP client")
}
