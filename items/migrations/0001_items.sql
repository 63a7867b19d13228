-- The catalog. Prices are integer minor units (cents); stock is what is still available and can
-- never go negative. Rows are seeded by the service at startup (the stock comes from ITEM_STOCK,
-- which a migration cannot read).
CREATE TABLE items (
    id    bigint PRIMARY KEY,
    name  text NOT NULL,
    price bigint NOT NULL CHECK (price > 0),
    stock bigint NOT NULL CHECK (stock >= 0)
);

-- The participant ledger (see shop_common::ledger): one row per order, resource = item id as
-- text, quantity = units reserved.
CREATE TABLE holds (
    order_id   uuid PRIMARY KEY,
    resource   text,
    quantity   bigint NOT NULL DEFAULT 0 CHECK (quantity >= 0),
    state      text NOT NULL CHECK (state IN ('held', 'rejected', 'released', 'cancelled')),
    error_code text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
