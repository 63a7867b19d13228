-- The Redis server the outbox last saw holding the saga stream, by its run id (a new one at every
-- start of a Redis process). When the outbox meets another run id, that Redis may have lost the
-- tail of its append-only file (or all of it), and with it stream entries of unfinished orders:
-- those are published again at once instead of after REPUBLISH_STALE_AFTER_SECS (order::outbox).
CREATE TABLE outbox_redis_run (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    run_id    text NOT NULL,
    seen_at   timestamptz NOT NULL DEFAULT now()
);
