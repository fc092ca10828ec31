-- The event log: the single source of truth (see the Postgres migration for
-- the column meanings). SQLite has one writer at a time, so position is
-- commit-ordered by construction and tx_id is always 0.
CREATE TABLE es_events (
    position        INTEGER PRIMARY KEY AUTOINCREMENT,
    tx_id           INTEGER NOT NULL DEFAULT 0,
    event_id        TEXT    NOT NULL,
    stream_type     TEXT    NOT NULL,
    stream_id       TEXT    NOT NULL,
    stream_version  INTEGER NOT NULL,
    event_type      TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL DEFAULT 1,
    workspace_id    TEXT    NOT NULL,
    occurred        TEXT    NOT NULL,
    recorded        TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    correlation_id  TEXT,
    causation_id    TEXT,
    payload         TEXT    NOT NULL,
    metadata        TEXT    NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX es_events_event_id ON es_events (event_id);
CREATE UNIQUE INDEX es_events_stream_version ON es_events (stream_type, stream_id, stream_version);

CREATE TABLE es_checkpoints (
    name        TEXT    PRIMARY KEY,
    tx_id       INTEGER NOT NULL DEFAULT 0,
    position    INTEGER NOT NULL DEFAULT 0,
    updated     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
