--! billing's own tables: its migration 1 ("accounts") is this text, a blank line and the ledger's
--! `holds` table (`startup::MIGRATOR`, shop_common::ledger::schema). `--!` lines are notes, not
--! part of the migration; the rest is released history: sqlx checksums it, byte for byte.
-- Wallets in integer minor units (cents); a wallet can never go negative.
CREATE TABLE accounts (
    username   text PRIMARY KEY,
    email      text NOT NULL,
    wallet     bigint NOT NULL CHECK (wallet >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Every deposit; a client-chosen Idempotency-Key makes a retried deposit apply once.
CREATE TABLE deposits (
    id              bigserial PRIMARY KEY,
    username        text NOT NULL REFERENCES accounts (username),
    idempotency_key text,
    amount          bigint NOT NULL CHECK (amount > 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (username, idempotency_key)
);
