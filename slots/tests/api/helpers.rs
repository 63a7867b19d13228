//! slots on a fresh database, started through `slots::run` (migrations and seeding included), as
//! the ledger kit's [`Listed`] participant: its slot list, its free couriers, its booking ledger.

use shop_client::{Endpoints, ShopClient};
use shop_common::{
    config::DatabaseConfig,
    testing::{
        self,
        ledger::{Contract, Listed, Listing},
    },
};
use std::time::Duration;

/// The booking step as docs/ARCHITECTURE.md states it: a slot that is not served and a slot
/// without free couriers are refused alike.
pub static BOOKINGS: Contract = Contract {
    route: "bookings",
    unknown_code: "slot_unavailable",
    exhausted_code: "slot_unavailable",
};

/// `GET /api/slots` lists the rows of `slots`, keyed by the hour, with their free couriers.
static SLOT_LIST: Listing = Listing {
    table: "slots",
    key: "slot",
    available: "free_couriers",
};

pub async fn spawn_app(capacity: i64) -> Listed {
    spawn_on(testing::fresh_database().await, capacity).await
}

/// Starts slots on `database`, which may already hold an earlier instance's data (a restart).
pub async fn spawn_on(database: DatabaseConfig, capacity: i64) -> Listed {
    let config = slots::Config {
        participant: testing::participant(database.clone()),
        slot_capacity: capacity,
    };
    let run = |listener| slots::run(listener, config, std::future::pending());
    let service = testing::start("slots", database, run).await;
    Listed::new(service, &BOOKINGS, &SLOT_LIST)
}

/// The public API of `app` as a client sees it.
pub fn client(app: &Listed) -> ShopClient {
    ShopClient::new(
        Endpoints::gateway(&app.service.base),
        Duration::from_secs(10),
    )
    .expect("an HTTP client")
}
