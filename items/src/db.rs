//! All of items' own SQL: its tables and the reservation ledger's mapping onto them
//! ([`RESERVATIONS`]; the ledger's SQL itself is the shared one in `shop_common::ledger`), seeding
//! and reading the catalog.

use anyhow::Result;
use shop_common::{
    api::Item,
    ledger::{KeyType, LedgerSpec, OwnTables, Resources, Seed},
};
use sqlx::PgPool;

/// The stock step of the saga: reserve = hold `quantity` units of the item `resource` ("3").
pub static RESERVATIONS: LedgerSpec = LedgerSpec {
    route: "reservations",
    unknown_code: "item_unavailable",
    // Anything else would make Postgres' `::bigint` cast fail; it is simply not an item.
    valid_key: |key| key.parse::<i64>().is_ok_and(|id| id > 0),
    resources: Resources {
        table: "items",
        key: "id",
        key_type: KeyType::Bigint,
        available: "stock",
        exhausted_code: "item_unavailable",
        summary: "items.stock by item id",
        holds_meaning: "resource = item id as\n-- text, quantity = units reserved.",
    },
    tables: OwnTables::new("items", include_str!("tables.sql")),
};

/// The catalog every fresh database starts with: (id, name, price in cents).
const CATALOG: [(i64, &str, i64); 10] = [
    (1, "Espresso beans 1 kg", 2490),
    (2, "Green tea 100 bags", 650),
    (3, "Oat milk 1 l", 199),
    (4, "Dark chocolate 100 g", 250),
    (5, "Sourdough bread", 450),
    (6, "Olive oil 0.75 l", 1290),
    (7, "Basmati rice 2 kg", 599),
    (8, "Parmesan 250 g", 775),
    (9, "Free-range eggs x10", 389),
    (10, "Maple syrup 250 ml", 1250),
];

/// The statement inserting the catalog rows that are missing, each with `stock`; existing rows (and
/// their stock) are left alone, so a restart never resets what the saga has reserved.
pub fn seed(stock: i64) -> Seed {
    let (ids, (names, prices)): (Vec<i64>, (Vec<&str>, Vec<i64>)) = CATALOG
        .iter()
        .map(|&(id, name, price)| (id, (name, price)))
        .unzip();
    sqlx::query(
        "INSERT INTO items (id, name, price, stock) \
         SELECT id, name, price, $4 FROM UNNEST($1::bigint[], $2::text[], $3::bigint[]) \
             AS c (id, name, price) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&names)
    .bind(&prices)
    .bind(stock)
}

pub async fn list_items(pool: &PgPool) -> Result<Vec<Item>> {
    let select = "SELECT id, name, price, stock FROM items ORDER BY id";
    shop_common::db::fetch_all(pool, select, "listing items").await
}
