//! All of slots' own SQL: its tables and the booking ledger's mapping onto them ([`BOOKINGS`]; the
//! ledger's SQL itself is the shared one in `shop_common::ledger`), seeding and reading the slots.

use anyhow::Result;
use shop_common::{
    api::Slot,
    domain::SlotTime,
    ledger::{KeyType, LedgerSpec, OwnTables, Resources, Seed},
};
use sqlx::PgPool;

/// The courier step of the saga: book = hold `quantity` free couriers of the slot `resource`.
pub static BOOKINGS: LedgerSpec = LedgerSpec {
    route: "bookings",
    unknown_code: "slot_unavailable",
    // A well-formed time we do not serve ("19:00") is still refused, by the database lookup.
    valid_key: |key| SlotTime::try_from(key.to_owned()).is_ok(),
    resources: Resources {
        table: "slots",
        key: "slot",
        key_type: KeyType::Text,
        available: "free_couriers",
        exhausted_code: "slot_unavailable",
        summary: "slots.free_couriers by slot",
        holds_meaning: "resource = slot,\n-- quantity = couriers booked.",
    },
    tables: OwnTables::new("slots", include_str!("tables.sql")),
};

/// How many hourly slots exist, from "00:00".
const SLOT_COUNT: u32 = 10;

/// The statement inserting the slots that are missing, each with `capacity` free couriers; existing
/// rows (and their bookings) are left alone, so a restart never resets what the saga has booked.
pub fn seed(capacity: i64) -> Seed {
    let slots: Vec<String> = (0..SLOT_COUNT).map(|h| format!("{h:02}:00")).collect();
    sqlx::query(
        "INSERT INTO slots (slot, capacity, free_couriers) \
         SELECT slot, $2, $2 FROM UNNEST($1::text[]) AS s (slot) \
         ON CONFLICT (slot) DO NOTHING",
    )
    .bind(&slots)
    .bind(capacity)
}

pub async fn list_slots(pool: &PgPool) -> Result<Vec<Slot>> {
    // "HH:MM" sorts chronologically as text.
    let select = "SELECT slot, free_couriers FROM slots ORDER BY slot";
    shop_common::db::fetch_all(pool, select, "listing slots").await
}
