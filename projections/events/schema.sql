-- The events read model: the Prefect event feed (client-emitted events from
-- /events/in and POST /events, and the events the server emits such as
-- prefect.flow-run.<State>). Projected asynchronously from the log by the
-- events projector (checkpoint 'proj:events'), idempotently: an event applied
-- twice is stored once. Disposable: `prefect-server replay events` rebuilds it.
-- Same conventions as the server model: UUID and timestamp text (UTC, six
-- fractional digits), JSON as text.

CREATE TABLE IF NOT EXISTS events (
    id                      TEXT PRIMARY KEY,
    workspace_id            TEXT NOT NULL,
    occurred                TEXT NOT NULL,
    event                   TEXT NOT NULL,
    resource_id             TEXT NOT NULL,
    resource                TEXT NOT NULL,               -- the resource's labels, JSON object
    related_resource_ids    TEXT NOT NULL DEFAULT '[]',  -- JSON array of related prefect.resource.id
    related                 TEXT NOT NULL DEFAULT '[]',  -- JSON array of related resources (label objects)
    payload                 TEXT NOT NULL DEFAULT '{}',
    received                TEXT NOT NULL,
    recorded                TEXT NOT NULL,
    follows                 TEXT,
    log_position            BIGINT NOT NULL              -- where the event is in the log
);
-- The feed's main path: a time window in occurred order (ORDER BY occurred,
-- id reads it forwards or backwards and stops after one page). `event` is
-- a key column too so that the filter's `total` (COUNT over the window with
-- an event-name prefix / name condition) is an index-only scan instead of a
-- heap (table) lookup per row: with 1M events, 14 ms -> 1.5 ms on Postgres
-- and 127 ms -> 2 ms on SQLite for the last hour (docs/performance.md).
-- It supersedes ix_events__ws_occurred (workspace_id, occurred, id), a
-- prefix of it.
CREATE INDEX IF NOT EXISTS ix_events__ws_occurred_id_event ON events (workspace_id, occurred, id, event);
DROP INDEX IF EXISTS ix_events__ws_occurred;
CREATE INDEX IF NOT EXISTS ix_events__event_occurred ON events (event, occurred);
CREATE INDEX IF NOT EXISTS ix_events__resource_id_occurred ON events (resource_id, occurred);

-- One row per resource an event names: the primary resource (role '') and
-- each related resource (its prefect.resource.role). Related / any-resource
-- filters go through this table.
CREATE TABLE IF NOT EXISTS event_resources (
    event_id        TEXT NOT NULL,
    occurred        TEXT NOT NULL,
    resource_id     TEXT NOT NULL,
    resource_role   TEXT NOT NULL,
    resource        TEXT NOT NULL,   -- labels minus prefect.resource.id and prefect.resource.role, JSON object
    PRIMARY KEY (event_id, resource_id, resource_role)
);
CREATE INDEX IF NOT EXISTS ix_event_resources__resource_id_occurred ON event_resources (resource_id, occurred);
