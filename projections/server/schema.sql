-- The server read model: flows, flow runs, task runs, their states, and logs.
--
-- This is a *projection*: disposable, rebuilt from the event log by
-- `prefect-server replay server`. It is not migrated; when this file changes,
-- the model is dropped and rebuilt. The same DDL runs on Postgres and SQLite,
-- so it sticks to portable types: ids are lowercase hyphenated UUID text,
-- timestamps are UTC RFC 3339 text with exactly six fractional digits (so
-- they sort as text), JSON is text, booleans are 0/1 integers.
-- Every table is keyed by workspace id (the nil UUID in single-tenant mode).

CREATE TABLE IF NOT EXISTS flow (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL,
    created         TEXT NOT NULL,
    updated         TEXT NOT NULL,
    name            TEXT NOT NULL,
    tags            TEXT NOT NULL DEFAULT '[]',
    labels          TEXT NOT NULL DEFAULT '{}',
    version         BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_flow__workspace_name ON flow (workspace_id, name);

CREATE TABLE IF NOT EXISTS flow_run (
    id                          TEXT PRIMARY KEY,
    workspace_id                TEXT NOT NULL,
    created                     TEXT NOT NULL,
    updated                     TEXT NOT NULL,
    name                        TEXT NOT NULL,
    flow_id                     TEXT NOT NULL,
    state_id                    TEXT,
    deployment_id               TEXT,
    deployment_version          TEXT,
    work_queue_id               TEXT,
    work_queue_name             TEXT,
    work_pool_id                TEXT,
    work_pool_name              TEXT,
    flow_version                TEXT,
    parameters                  TEXT NOT NULL DEFAULT '{}',
    idempotency_key             TEXT,
    context                     TEXT NOT NULL DEFAULT '{}',
    empirical_policy            TEXT NOT NULL DEFAULT '{}',
    tags                        TEXT NOT NULL DEFAULT '[]',
    labels                      TEXT NOT NULL DEFAULT '{}',
    parent_task_run_id          TEXT,
    state_type                  TEXT,
    state_name                  TEXT,
    state_timestamp             TEXT,
    run_count                   BIGINT NOT NULL DEFAULT 0,
    expected_start_time         TEXT,
    next_scheduled_start_time   TEXT,
    start_time                  TEXT,
    end_time                    TEXT,
    total_run_time              DOUBLE PRECISION NOT NULL DEFAULT 0,
    auto_scheduled              BIGINT NOT NULL DEFAULT 0,
    infrastructure_document_id  TEXT,
    infrastructure_pid          TEXT,
    created_by                  TEXT,
    job_variables               TEXT NOT NULL DEFAULT '{}',
    version                     BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_flow_run__flow_id_idempotency_key ON flow_run (flow_id, idempotency_key);
CREATE INDEX IF NOT EXISTS ix_flow_run__flow_id ON flow_run (flow_id);
CREATE INDEX IF NOT EXISTS ix_flow_run__parent_task_run_id ON flow_run (parent_task_run_id);
CREATE INDEX IF NOT EXISTS ix_flow_run__expected_start_time ON flow_run (workspace_id, expected_start_time);
CREATE INDEX IF NOT EXISTS ix_flow_run__state_type ON flow_run (workspace_id, state_type);
CREATE INDEX IF NOT EXISTS ix_flow_run__next_scheduled ON flow_run (workspace_id, next_scheduled_start_time);

CREATE TABLE IF NOT EXISTS flow_run_state (
    id              TEXT PRIMARY KEY,
    flow_run_id     TEXT NOT NULL,
    created         TEXT NOT NULL,
    type            TEXT NOT NULL,
    name            TEXT NOT NULL,
    timestamp       TEXT NOT NULL,
    message         TEXT,
    state_details   TEXT NOT NULL DEFAULT '{}',
    data            TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_flow_run_state__flow_run_id_timestamp ON flow_run_state (flow_run_id, timestamp);

CREATE TABLE IF NOT EXISTS task_run (
    id                          TEXT PRIMARY KEY,
    workspace_id                TEXT NOT NULL,
    created                     TEXT NOT NULL,
    updated                     TEXT NOT NULL,
    name                        TEXT NOT NULL,
    flow_run_id                 TEXT,
    task_key                    TEXT NOT NULL,
    dynamic_key                 TEXT NOT NULL,
    cache_key                   TEXT,
    cache_expiration            TEXT,
    task_version                TEXT,
    flow_run_run_count          BIGINT NOT NULL DEFAULT 0,
    empirical_policy            TEXT NOT NULL DEFAULT '{}',
    task_inputs                 TEXT NOT NULL DEFAULT '{}',
    tags                        TEXT NOT NULL DEFAULT '[]',
    labels                      TEXT NOT NULL DEFAULT '{}',
    state_id                    TEXT,
    state_type                  TEXT,
    state_name                  TEXT,
    state_timestamp             TEXT,
    run_count                   BIGINT NOT NULL DEFAULT 0,
    expected_start_time         TEXT,
    next_scheduled_start_time   TEXT,
    start_time                  TEXT,
    end_time                    TEXT,
    total_run_time              DOUBLE PRECISION NOT NULL DEFAULT 0,
    version                     BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_task_run__flow_run_id_task_key_dynamic_key ON task_run (flow_run_id, task_key, dynamic_key);
CREATE INDEX IF NOT EXISTS ix_task_run__flow_run_id ON task_run (flow_run_id);
CREATE INDEX IF NOT EXISTS ix_task_run__expected_start_time ON task_run (workspace_id, expected_start_time);

CREATE TABLE IF NOT EXISTS task_run_state (
    id              TEXT PRIMARY KEY,
    task_run_id     TEXT NOT NULL,
    created         TEXT NOT NULL,
    type            TEXT NOT NULL,
    name            TEXT NOT NULL,
    timestamp       TEXT NOT NULL,
    message         TEXT,
    state_details   TEXT NOT NULL DEFAULT '{}',
    data            TEXT
);
CREATE INDEX IF NOT EXISTS ix_task_run_state__task_run_id ON task_run_state (task_run_id, timestamp);

CREATE TABLE IF NOT EXISTS task_run_state_cache (
    cache_key           TEXT NOT NULL,
    cache_expiration    TEXT,
    task_run_state_id   TEXT NOT NULL,
    created             TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_task_run_state_cache__key ON task_run_state_cache (cache_key, created);

CREATE TABLE IF NOT EXISTS log (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL,
    created         TEXT NOT NULL,
    name            TEXT NOT NULL,
    level           BIGINT NOT NULL,
    flow_run_id     TEXT,
    task_run_id     TEXT,
    message         TEXT NOT NULL,
    timestamp       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_log__flow_run_id_timestamp ON log (flow_run_id, timestamp);
CREATE INDEX IF NOT EXISTS ix_log__timestamp ON log (workspace_id, timestamp);

-- Work pools, their queues and workers (Prefect's `workers` router).
CREATE TABLE IF NOT EXISTS work_pool (
    id                      TEXT PRIMARY KEY,
    workspace_id            TEXT NOT NULL,
    created                 TEXT NOT NULL,
    updated                 TEXT NOT NULL,
    name                    TEXT NOT NULL,
    description             TEXT,
    type                    TEXT NOT NULL,
    base_job_template       TEXT NOT NULL DEFAULT '{}',
    is_paused               BIGINT NOT NULL DEFAULT 0,
    concurrency_limit       BIGINT,
    status                  TEXT,
    default_queue_id        TEXT,
    storage_configuration   TEXT NOT NULL DEFAULT '{}',
    version                 BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_work_pool__workspace_name ON work_pool (workspace_id, name);

CREATE TABLE IF NOT EXISTS work_queue (
    id                  TEXT PRIMARY KEY,
    workspace_id        TEXT NOT NULL,
    created             TEXT NOT NULL,
    updated             TEXT NOT NULL,
    name                TEXT NOT NULL,
    description         TEXT,
    is_paused           BIGINT NOT NULL DEFAULT 0,
    concurrency_limit   BIGINT,
    priority            BIGINT NOT NULL DEFAULT 1,
    work_pool_id        TEXT NOT NULL,
    filter              TEXT,
    last_polled         TEXT,
    status              TEXT,
    version             BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_work_queue__pool_name ON work_queue (work_pool_id, name);

CREATE TABLE IF NOT EXISTS worker (
    id                          TEXT PRIMARY KEY,
    workspace_id                TEXT NOT NULL,
    created                     TEXT NOT NULL,
    updated                     TEXT NOT NULL,
    name                        TEXT NOT NULL,
    work_pool_id                TEXT NOT NULL,
    last_heartbeat_time         TEXT,
    heartbeat_interval_seconds  BIGINT,
    status                      TEXT NOT NULL DEFAULT 'OFFLINE',
    version                     BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_worker__pool_name ON worker (work_pool_id, name);

-- Deployments and their schedules.
CREATE TABLE IF NOT EXISTS deployment (
    id                          TEXT PRIMARY KEY,
    workspace_id                TEXT NOT NULL,
    created                     TEXT NOT NULL,
    updated                     TEXT NOT NULL,
    name                        TEXT NOT NULL,
    deployment_version          TEXT,
    version_info                TEXT,
    description                 TEXT,
    flow_id                     TEXT NOT NULL,
    paused                      BIGINT NOT NULL DEFAULT 0,
    status                      TEXT NOT NULL DEFAULT 'NOT_READY',
    tags                        TEXT NOT NULL DEFAULT '[]',
    labels                      TEXT NOT NULL DEFAULT '{}',
    parameters                  TEXT NOT NULL DEFAULT '{}',
    parameter_openapi_schema    TEXT,
    enforce_parameter_schema    BIGINT NOT NULL DEFAULT 1,
    pull_steps                  TEXT,
    job_variables               TEXT NOT NULL DEFAULT '{}',
    work_queue_id               TEXT,
    work_queue_name             TEXT,
    path                        TEXT,
    entrypoint                  TEXT,
    storage_document_id         TEXT,
    infrastructure_document_id  TEXT,
    concurrency_limit           BIGINT,
    concurrency_options         TEXT,
    created_by                  TEXT,
    updated_by                  TEXT,
    last_polled                 TEXT,
    version                     BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_deployment__flow_id_name ON deployment (flow_id, name);
CREATE INDEX IF NOT EXISTS ix_deployment__work_queue_id ON deployment (work_queue_id);

CREATE TABLE IF NOT EXISTS deployment_schedule (
    id                  TEXT PRIMARY KEY,
    workspace_id        TEXT NOT NULL,
    created             TEXT NOT NULL,
    updated             TEXT NOT NULL,
    deployment_id       TEXT NOT NULL,
    schedule            TEXT NOT NULL,
    active              BIGINT NOT NULL DEFAULT 1,
    max_scheduled_runs  BIGINT,
    parameters          TEXT NOT NULL DEFAULT '{}',
    slug                TEXT,
    version             BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_deployment_schedule__deployment_id ON deployment_schedule (deployment_id);
CREATE INDEX IF NOT EXISTS ix_flow_run__deployment_id ON flow_run (deployment_id, state_type);
CREATE INDEX IF NOT EXISTS ix_flow_run__work_queue_id ON flow_run (work_queue_id, state_type, next_scheduled_start_time);

-- Workspace variables (Prefect's `variables` router); `value` is JSON text.
CREATE TABLE IF NOT EXISTS variable (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL,
    created         TEXT NOT NULL,
    updated         TEXT NOT NULL,
    name            TEXT NOT NULL,
    value           TEXT,
    tags            TEXT NOT NULL DEFAULT '[]',
    version         BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_variable__workspace_name ON variable (workspace_id, name);

-- Flow-run inputs (Prefect's `flow_run_input`: pause/suspend with
-- `wait_for_input`, `send_input`/`receive_input`); `value` is the client's text.
CREATE TABLE IF NOT EXISTS flow_run_input (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL,
    created         TEXT NOT NULL,
    updated         TEXT NOT NULL,
    flow_run_id     TEXT NOT NULL,
    key             TEXT NOT NULL,
    value           TEXT NOT NULL,
    sender          TEXT,
    version         BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_flow_run_input__flow_run_id_key ON flow_run_input (flow_run_id, key);

-- Saved searches (the UI's saved filter views); `filters` is JSON text.
CREATE TABLE IF NOT EXISTS saved_search (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL,
    created         TEXT NOT NULL,
    updated         TEXT NOT NULL,
    name            TEXT NOT NULL,
    filters         TEXT NOT NULL DEFAULT '[]',
    version         BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_saved_search__workspace_name ON saved_search (workspace_id, name);

-- Automations; trigger and actions are JSON text as Prefect returns them.
-- `owner_resource` is the resource that owns the automation (a deployment
-- that declared it as a trigger), which `DELETE /automations/owned-by/..`
-- removes with it.
CREATE TABLE IF NOT EXISTS automation (
    id                  TEXT PRIMARY KEY,
    workspace_id        TEXT NOT NULL,
    created             TEXT NOT NULL,
    updated             TEXT NOT NULL,
    name                TEXT NOT NULL,
    description         TEXT NOT NULL DEFAULT '',
    enabled             BIGINT NOT NULL DEFAULT 1,
    tags                TEXT NOT NULL DEFAULT '[]',
    trigger_def         TEXT NOT NULL,
    actions             TEXT NOT NULL DEFAULT '[]',
    actions_on_trigger  TEXT NOT NULL DEFAULT '[]',
    actions_on_resolve  TEXT NOT NULL DEFAULT '[]',
    owner_resource      TEXT,
    version             BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_automation__owner_resource ON automation (owner_resource);

-- Global (v2) concurrency limits; `active_slots` counts only slots taken
-- without a lease (leases are rows of `concurrency_lease`).
CREATE TABLE IF NOT EXISTS concurrency_limit_v2 (
    id                          TEXT PRIMARY KEY,
    workspace_id                TEXT NOT NULL,
    created                     TEXT NOT NULL,
    updated                     TEXT NOT NULL,
    name                        TEXT NOT NULL,
    slot_limit                  BIGINT NOT NULL,
    active                      BIGINT NOT NULL DEFAULT 1,
    active_slots                BIGINT NOT NULL DEFAULT 0,
    denied_slots                BIGINT NOT NULL DEFAULT 0,
    slot_decay_per_second       TEXT NOT NULL DEFAULT '0.0',
    avg_slot_occupancy_seconds  TEXT NOT NULL DEFAULT '2.0',
    version                     BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_concurrency_limit_v2__workspace_name ON concurrency_limit_v2 (workspace_id, name);

-- Leases on concurrency slots; `resource_ids` is a JSON list of limit ids.
CREATE TABLE IF NOT EXISTS concurrency_lease (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL,
    created         TEXT NOT NULL,
    updated         TEXT NOT NULL,
    resource_ids    TEXT NOT NULL DEFAULT '[]',
    slots           BIGINT NOT NULL,
    holder          TEXT,
    expiration      TEXT NOT NULL,
    version         BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_concurrency_lease__expiration ON concurrency_lease (expiration);

-- Deliveries of deferred (background) task runs to task workers: one row
-- per SCHEDULED state handed out (its id is that state's id), so a
-- scheduling is claimed by one subscriber across all API processes.
-- `released` (0/1) marks one whose worker left before acknowledging it;
-- `acked` (0/1) one whose worker acknowledged it.
CREATE TABLE IF NOT EXISTS task_run_delivery (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL,
    created         TEXT NOT NULL,
    updated         TEXT NOT NULL,
    task_run_id     TEXT NOT NULL,
    task_key        TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    released        BIGINT NOT NULL DEFAULT 0,
    acked           BIGINT NOT NULL DEFAULT 0,
    version         BIGINT NOT NULL
);
-- Deferred runs waiting for a task worker are found by key among the
-- SCHEDULED ones; partial, so other task runs cost this index nothing.
CREATE INDEX IF NOT EXISTS ix_task_run__scheduled_task_key ON task_run (task_key) WHERE state_type = 'SCHEDULED';

-- Artifacts (Prefect's `artifacts` router); `data` and `metadata_` are JSON
-- text. `key` is optional; keyed artifacts also update `artifact_collection`.
CREATE TABLE IF NOT EXISTS artifact (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL,
    created         TEXT NOT NULL,
    updated         TEXT NOT NULL,
    key             TEXT,
    type            TEXT,
    description     TEXT,
    data            TEXT,
    metadata_       TEXT,
    flow_run_id     TEXT,
    task_run_id     TEXT,
    version         BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_artifact__key_created ON artifact (key, created);
CREATE INDEX IF NOT EXISTS ix_artifact__flow_run_id ON artifact (flow_run_id);
CREATE INDEX IF NOT EXISTS ix_artifact__task_run_id ON artifact (task_run_id);

-- The latest artifact of each key, with a copy of its fields.
CREATE TABLE IF NOT EXISTS artifact_collection (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL,
    created         TEXT NOT NULL,
    updated         TEXT NOT NULL,
    key             TEXT NOT NULL,
    latest_id       TEXT NOT NULL,
    type            TEXT,
    description     TEXT,
    data            TEXT,
    metadata_       TEXT,
    flow_run_id     TEXT,
    task_run_id     TEXT,
    version         BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_artifact_collection__workspace_key ON artifact_collection (workspace_id, key);

-- Blocks (Prefect's `block_types`, `block_schemas` and `block_documents`
-- routers). A schema's `fields` is the JSON schema as registered (with its
-- definitions and `block_schema_references`); `schema_version` is Prefect's
-- `version` (the `version` column is the stream version). A document's
-- `data` holds its values without nested-block references, which are kept
-- in `document_refs` as `{field: referenced document id}`.
CREATE TABLE IF NOT EXISTS block_type (
    id                  TEXT PRIMARY KEY,
    workspace_id        TEXT NOT NULL,
    created             TEXT NOT NULL,
    updated             TEXT NOT NULL,
    name                TEXT NOT NULL,
    slug                TEXT NOT NULL,
    logo_url            TEXT,
    documentation_url   TEXT,
    description         TEXT,
    code_example        TEXT,
    is_protected        BIGINT NOT NULL DEFAULT 0,
    version             BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_block_type__workspace_slug ON block_type (workspace_id, slug);

CREATE TABLE IF NOT EXISTS block_schema (
    id                  TEXT PRIMARY KEY,
    workspace_id        TEXT NOT NULL,
    created             TEXT NOT NULL,
    updated             TEXT NOT NULL,
    checksum            TEXT NOT NULL,
    fields              TEXT NOT NULL,
    capabilities        TEXT NOT NULL DEFAULT '[]',
    schema_version      TEXT NOT NULL,
    block_type_id       TEXT NOT NULL,
    version             BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_block_schema__workspace_checksum_version ON block_schema (workspace_id, checksum, schema_version);
CREATE INDEX IF NOT EXISTS ix_block_schema__block_type_id ON block_schema (block_type_id);

CREATE TABLE IF NOT EXISTS block_document (
    id                  TEXT PRIMARY KEY,
    workspace_id        TEXT NOT NULL,
    created             TEXT NOT NULL,
    updated             TEXT NOT NULL,
    name                TEXT NOT NULL,
    data                TEXT NOT NULL DEFAULT '{}',
    is_anonymous        BIGINT NOT NULL DEFAULT 0,
    block_type_name     TEXT,
    block_type_id       TEXT NOT NULL,
    block_schema_id     TEXT NOT NULL,
    document_refs       TEXT NOT NULL DEFAULT '{}',
    version             BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_block_document__workspace_type_name ON block_document (workspace_id, block_type_id, name);
CREATE INDEX IF NOT EXISTS ix_block_document__block_schema_id ON block_document (block_schema_id);

-- Server configuration (Prefect's `configuration` table): one row per key,
-- `value` JSON. Holds the server default result storage block.
CREATE TABLE IF NOT EXISTS configuration (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL,
    created         TEXT NOT NULL,
    updated         TEXT NOT NULL,
    key             TEXT NOT NULL,
    value           TEXT,
    version         BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_configuration__workspace_key ON configuration (workspace_id, key);
