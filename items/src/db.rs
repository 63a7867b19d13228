//! All of items' own SQL: seeding and reading the catalog (the reservation ledger's SQL is the shared
//! one in `shop_common::ledger`).

use anyhow::{Context, Result};
use shop_common::domain::Money;
use sqlx::PgPool;

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

/// A catalog entry, as the database holds it and `GET /api/items` shows it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Item {
    pub id: i64,
    pub name: String,
    #[sqlx(try_from = "i64")]
    pub price: Money,
    /// What is still available to reserve.
    pub stock: i64,
}

/// Inserts the catalog rows that are missing; existing rows (and their stock) are left alone, so a
/// restart never resets what the saga has reserved.
pub async fn seed(pool: &PgPool, stock: i64) -> Result<()> {
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
    .execute(pool)
    .await
    .context("seeding the catalog")?;
    Ok(())
}

pub async fn list_items(pool: &PgPool) -> Result<Vec<Item>> {
    let select = "SELECT id, name, price, stock FROM items ORDER BY id";
    shop_common::db::fetch_all(pool, select, "listing items").await
}
