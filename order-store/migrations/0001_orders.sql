-- Orders and their saga outcome. Owned by the order service; the mediator (the order service's
-- worker) drives `status` through guarded transitions: pending -> completed, or
-- pending -> compensating -> failed (pending -> failed when nothing was held).
CREATE TABLE orders (
    id              uuid PRIMARY KEY,          -- UUID v7: time-ordered, so inserts stay local
    username        text NOT NULL,
    amount          bigint NOT NULL CHECK (amount > 0),   -- minor units (cents)
    item            bigint NOT NULL CHECK (item > 0),
    slot            text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'compensating', 'completed', 'failed')),
    reason          text,
    idempotency_key text,
    -- When the order was put on the saga stream; NULL = not yet (the sweep re-publishes those).
    published_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- NULL keys never conflict, so orders without an Idempotency-Key are all distinct.
    UNIQUE (username, idempotency_key)
);

-- Only the few unpublished orders are in it, so the sweep's scan is cheap.
CREATE INDEX orders_unpublished ON orders (created_at) WHERE published_at IS NULL;
CREATE INDEX orders_by_user ON orders (username, created_at);
-- Unfinished orders, by publication time: the safety net re-publishes those stuck far too long
-- (e.g. the stream was lost with a Redis restart). Small: finished orders leave it.
CREATE INDEX orders_unfinished ON orders (published_at) WHERE status IN ('pending', 'compensating');

-- The saga log: every participant call the mediator made for an order, written in the same
-- statement as the status transition it led to.
CREATE TABLE saga_steps (
    order_id    uuid NOT NULL REFERENCES orders (id),
    seq         int NOT NULL,
    participant text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('action', 'compensation')),
    outcome     text NOT NULL CHECK (outcome IN ('ok', 'rejected', 'unknown')),
    error_code  text,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    PRIMARY KEY (order_id, seq)
);
