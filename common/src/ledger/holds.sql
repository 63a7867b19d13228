--! The participant ledger's table, rendered into each participant's migration 1 after its own
--! tables (shop_common::ledger::schema). `--!` lines are this template's notes, never rendered;
--! `{{holds_meaning}}` is the participant's text, its line break included (wrapped by hand when it
--! was released). The text below is released history: sqlx checksums it, byte for byte.
-- The participant ledger (see shop_common::ledger): one row per order, {{holds_meaning}}
CREATE TABLE holds (
    order_id   uuid PRIMARY KEY,
    resource   text,
    quantity   bigint NOT NULL DEFAULT 0 CHECK (quantity >= 0),
    state      text NOT NULL CHECK (state IN ('held', 'rejected', 'released', 'cancelled')),
    error_code text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
