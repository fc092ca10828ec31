//! prefect-server: an event-sourced, drop-in replacement for the Prefect 3
//! orchestration server.
//!
//! # Layout
//! - [`config`]: typed settings from `PREFECT_*` variables.
//! - [`eventlog`]: the append-only log, the source of truth.
//! - [`orchestration`]: Prefect's state rules as pure functions.
//! - [`commands`]: write paths: lock, decide, append, project inline.
//! - [`projections`]: read models built from the log (`server`).
//! - [`server_model`]: queries over the server read model, Prefect's JSON shapes.
//! - [`api`]: the HTTP and WebSocket surface, one module per Prefect router.
//! - [`replay`]: rebuilding a read model from the log.
//! - [`worker_channel`]: the workers' WebSocket (heartbeats in, pool snapshots out).
//! - [`startup`]: wiring it all into a running server.

pub mod api;
pub mod automations;
pub mod broker;
pub mod cli;
pub mod commands;
pub mod config;
pub mod db;
pub mod eventlog;
pub mod events_model;
pub mod orchestration;
pub mod projections;
pub mod py_json;
pub mod py_repr;
pub mod replay;
pub mod schedules;
pub mod server_events;
pub mod server_model;
pub mod services;
pub mod startup;
pub mod telemetry;
pub mod time;
pub mod web_ui;
pub mod worker_channel;
