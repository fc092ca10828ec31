//! Integration tests: the real server (router + database) on port 0, against
//! a fresh SQLite file or a fresh Postgres database per test.

mod helpers;

mod artifacts;
mod automations;
mod bad_input;
mod blocks;
mod concurrency_limits;
mod dashboard;
mod deployments;
mod events;
mod events_in;
mod eventlog_append;
mod flow_runs;
mod follow_horizon;
mod handshake;
mod replay;
mod run_monitors;
mod set_state_race;
mod task_run_subscriptions;
mod variables;
mod web_ui;
mod worker_channel;
