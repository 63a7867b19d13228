--! The participant ledger's two functions, rendered into each participant's migration 2
--! (shop_common::ledger::schema). `--!` lines are this template's notes, never rendered; `{{name}}`
--! is a participant's value; top-level comment paragraphs are re-filled to 100 columns, since a
--! participant's words change their length. The text below is released history: sqlx checksums
--! it, byte for byte, so a change to the ledger is a new migration, not an edit here.
-- The participant ledger's two operations as functions, so that each is ONE round trip and one
-- transaction (shop_common::ledger calls them; the design and the why are in its module docs). Same
-- body in billing, items and slots, only the resource table, its key and the refusal codes differ
-- (here: {{summary}}). Every step is its own statement, so each takes a
-- fresh snapshot after the row lock the previous one may have waited for, and the lock order is
-- always the order's `holds` row first, the resource's row second: operations on the same order
-- queue up behind each other instead of deadlocking.

-- The action: take p_quantity of p_resource for p_order, or return what was recorded for it.
CREATE FUNCTION ledger_hold(p_order uuid, p_resource text, p_quantity bigint,
                            OUT r_state text, OUT r_resource text, OUT r_quantity bigint,
                            OUT r_error_code text)
LANGUAGE plpgsql AS $$
BEGIN
    -- Claim the order. A duplicate (concurrent or late) waits here for an in-flight claim to end,
    -- then finds the row: it answers with the recorded outcome and takes nothing.
    INSERT INTO holds (order_id, resource, quantity, state)
    VALUES (p_order, p_resource, p_quantity, 'held')
    ON CONFLICT (order_id) DO NOTHING;
    IF NOT FOUND THEN
        SELECT h.state, h.resource, h.quantity, h.error_code
          INTO STRICT r_state, r_resource, r_quantity, r_error_code
          FROM holds h WHERE h.order_id = p_order;
        RETURN;
    END IF;
    r_resource := p_resource;
    r_quantity := p_quantity;
    -- Only the claimant takes, and only if enough is available (never overdrawn).
    UPDATE {{table}} SET {{available}} = {{available}} - p_quantity
     WHERE {{key}} = p_resource{{key_cast}} AND {{available}} >= p_quantity;
    IF FOUND THEN
        r_state := 'held';
        RETURN;
    END IF;
    r_state := 'rejected';
    r_error_code := {{refusal}};
    UPDATE holds SET state = r_state, error_code = r_error_code WHERE order_id = p_order;
END
$$;

-- The compensation: give back whatever p_order holds, or leave a tombstone that refuses a late
-- action. Idempotent: on an order already rejected, released or cancelled it changes nothing.
CREATE FUNCTION ledger_release(p_order uuid,
                               OUT r_state text, OUT r_resource text, OUT r_quantity bigint,
                               OUT r_error_code text)
LANGUAGE plpgsql AS $$
BEGIN
    -- Waits on the order's row, so it sees an in-flight action's result.
    INSERT INTO holds AS h (order_id, state) VALUES (p_order, 'cancelled')
    ON CONFLICT (order_id) DO UPDATE SET state = 'released', updated_at = now()
     WHERE h.state = 'held'
    RETURNING h.state, h.resource, h.quantity, h.error_code
         INTO r_state, r_resource, r_quantity, r_error_code;
    IF NOT FOUND THEN
        SELECT h.state, h.resource, h.quantity, h.error_code
          INTO STRICT r_state, r_resource, r_quantity, r_error_code
          FROM holds h WHERE h.order_id = p_order;
    ELSIF r_state = 'released' THEN
        -- Its own statement, after the row lock above: computed from the current amount.
        UPDATE {{table}} SET {{available}} = {{available}} + r_quantity WHERE {{key}} = r_resource{{key_cast}};
    END IF;
END
$$;
