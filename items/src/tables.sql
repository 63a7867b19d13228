--! items's own tables: its migration 1 ("items") is this text, a blank line and the ledger's
--! `holds` table (`startup::MIGRATOR`, shop_common::ledger::schema). `--!` lines are notes, not
--! part of the migration; the rest is released history: sqlx checksums it, byte for byte.
-- The catalog. Prices are integer minor units (cents); stock is what is still available and can
-- never go negative. Rows are seeded by the service at startup (the stock comes from ITEM_STOCK,
-- which a migration cannot read).
CREATE TABLE items (
    id    bigint PRIMARY KEY,
    name  text NOT NULL,
    price bigint NOT NULL CHECK (price > 0),
    stock bigint NOT NULL CHECK (stock >= 0)
);
