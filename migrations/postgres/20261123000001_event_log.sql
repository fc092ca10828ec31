-- The event log: the single source of truth. Read models under projections/
-- are rebuilt from it; this table is never rewritten.
--
-- position: a sequence value taken inside the append transaction *after* the
--   per-stream lock, so it is unique and follows per-stream order, but it is
--   not commit-ordered across streams.
-- tx_id: the writing transaction's id. Followers read by (tx_id, position)
--   below pg_snapshot_xmin(pg_current_snapshot()), which never skips an event
--   that commits late and needs no global append lock (see docs/architecture.md).
CREATE TABLE es_events (
    position        BIGSERIAL   PRIMARY KEY,
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id        UUID        NOT NULL,
    stream_type     TEXT        NOT NULL,
    stream_id       UUID        NOT NULL,
    stream_version  BIGINT      NOT NULL,
    event_type      TEXT        NOT NULL,
    schema_version  INTEGER     NOT NULL DEFAULT 1,
    workspace_id    UUID        NOT NULL,
    occurred        TIMESTAMPTZ NOT NULL,
    recorded        TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    correlation_id  UUID,
    causation_id    UUID,
    payload         JSON        NOT NULL, -- JSON, not JSONB: kept byte for byte
    metadata        JSON        NOT NULL DEFAULT '{}'::json
);
CREATE UNIQUE INDEX es_events_event_id ON es_events (event_id);
CREATE UNIQUE INDEX es_events_stream_version ON es_events (stream_type, stream_id, stream_version);
CREATE INDEX es_events_tx_position ON es_events (tx_id, position);

-- Checkpoints of asynchronous followers (projectors, relays).
CREATE TABLE es_checkpoints (
    name        TEXT        PRIMARY KEY,
    tx_id       BIGINT      NOT NULL DEFAULT 0,
    position    BIGINT      NOT NULL DEFAULT 0,
    updated     TIMESTAMPTZ NOT NULL DEFAULT now()
);
