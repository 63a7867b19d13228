-- Cancellation by the customer. The order API moves a pending or completed order to `cancelling`
-- (a guarded transition, like the mediator's, with a `cancel` row in the saga log) and puts it on
-- the saga stream again; the mediator compensates every step, in reverse order, and moves it to
-- `cancelled`. A failed order (or one already being aborted) cannot be cancelled.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('pending', 'compensating', 'completed', 'failed', 'cancelling', 'cancelled'));

ALTER TABLE saga_steps DROP CONSTRAINT saga_steps_kind_check;
ALTER TABLE saga_steps ADD CONSTRAINT saga_steps_kind_check
    CHECK (kind IN ('action', 'compensation', 'cancel'));

-- Unfinished now includes `cancelling`.
DROP INDEX orders_unfinished;
CREATE INDEX orders_unfinished ON orders (published_at)
    WHERE status IN ('pending', 'compensating', 'cancelling');

-- A cancelled order needs publishing again (`published_at` back to NULL): the sweep counts the
-- delay from the order's last change, not from its creation, or it would publish a cancel of an
-- old order at once, beside the API's own publication.
DROP INDEX orders_unpublished;
CREATE INDEX orders_unpublished ON orders (updated_at) WHERE published_at IS NULL;
