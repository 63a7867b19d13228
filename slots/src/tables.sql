--! slots's own tables: its migration 1 ("slots") is this text, a blank line and the ledger's
--! `holds` table (`startup::MIGRATOR`, shop_common::ledger::schema). `--!` lines are notes, not
--! part of the migration; the rest is released history: sqlx checksums it, byte for byte.
-- Delivery slots ("HH:MM"), each with a fixed number of couriers; free_couriers is what is still
-- available and stays within [0, capacity]. Rows are seeded by the service at startup (the capacity
-- comes from SLOT_CAPACITY, which a migration cannot read).
CREATE TABLE slots (
    slot          text PRIMARY KEY,
    capacity      bigint NOT NULL CHECK (capacity >= 0),
    free_couriers bigint NOT NULL CHECK (free_couriers >= 0 AND free_couriers <= capacity)
);
