-- The triggers service's working state, kept beside its checkpoint
-- (`es_checkpoints` row `automations:triggers`) and written in the same
-- transaction: the open buckets of event triggers (`state_key` = the
-- bucketing key as JSON) and the child firings a composite trigger holds
-- (`state_key` = 'children'). Not a read model: it is what the service has
-- counted so far of the log after its checkpoint, so replay leaves it alone.
CREATE TABLE IF NOT EXISTS automation_trigger_state (
    trigger_id      TEXT NOT NULL,
    state_key       TEXT NOT NULL,
    automation_id   TEXT NOT NULL,
    value           TEXT NOT NULL,
    PRIMARY KEY (trigger_id, state_key)
);
