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

-- The participant ledger (see shop_common::ledger): one row per order, resource = username,
-- quantity = amount charged in cents.
CREATE TABLE holds (
    order_id   uuid PRIMARY KEY,
    resource   text,
    quantity   bigint NOT NULL DEFAULT 0 CHECK (quantity >= 0),
    state      text NOT NULL CHECK (state IN ('held', 'rejected', 'released', 'cancelled')),
    error_code text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
