//! Automations: Prefect's event-driven triggers and the actions they take.
//!
//! - [`schema`]: what the API accepts and answers (triggers, actions,
//!   defaults, validators).
//! - [`triggers`]: when a trigger fires, as pure functions over buckets.
//! - [`actions`]: what a firing does, through the same commands as the API.
//! - [`templates`]: rendering a run-deployment action's parameters.
//! - [`service`]: the triggers service, following the event log.

pub mod actions;
pub mod schema;
pub mod service;
pub mod templates;
pub mod triggers;
