-- Delivery slots ("HH:MM"), each with a fixed number of couriers; free_couriers is what is still
-- available and stays within [0, capacity]. Rows are seeded by the service at startup (the capacity
-- comes from SLOT_CAPACITY, which a migration cannot read).
CREATE TABLE slots (
    slot          text PRIMARY KEY,
    capacity      bigint NOT NULL CHECK (capacity >= 0),
    free_couriers bigint NOT NULL CHECK (free_couriers >= 0 AND free_couriers <= capacity)
);

-- The participant ledger (see shop_common::ledger): one row per order, resource = slot,
-- quantity = couriers booked.
CREATE TABLE holds (
    order_id   uuid PRIMARY KEY,
    resource   text,
    quantity   bigint NOT NULL DEFAULT 0 CHECK (quantity >= 0),
    state      text NOT NULL CHECK (state IN ('held', 'rejected', 'released', 'cancelled')),
    error_code text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
