//! All of slots' own SQL: seeding and reading the slots (the booking ledger's SQL is the shared one
//! in `shop_common::ledger`).

use anyhow::{Context, Result};
use sqlx::PgPool;

/// How many hourly slots exist, from "00:00".
const SLOT_COUNT: u32 = 10;

/// A delivery slot, as the database holds it and `GET /api/slots` shows it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Slot {
    pub slot: String,
    pub free_couriers: i64,
}

/// Inserts the slots that are missing; existing rows (and their bookings) are left alone, so a
/// restart never resets what the saga has booked.
pub async fn seed(pool: &PgPool, capacity: i64) -> Result<()> {
    let slots: Vec<String> = (0..SLOT_COUNT).map(|h| format!("{h:02}:00")).collect();
    sqlx::query(
        "INSERT INTO slots (slot, capacity, free_couriers) \
         SELECT slot, $2, $2 FROM UNNEST($1::text[]) AS s (slot) \
         ON CONFLICT (slot) DO NOTHING",
    )
    .bind(&slots)
    .bind(capacity)
    .execute(pool)
    .await
    .context("seeding the slots")?;
    Ok(())
}

pub async fn list_slots(pool: &PgPool) -> Result<Vec<Slot>> {
    // "HH:MM" sorts chronologically as text.
    let select = "SELECT slot, free_couriers FROM slots ORDER BY slot";
    shop_common::db::fetch_all(pool, select, "listing slots").await
}
