//! The events read model (the Prefect event feed): its projector, the relay
//! to the broker, queries, and the background loops that drive them.

pub mod count_by;
pub mod event_row;
pub mod filter;
pub mod handoff;
pub mod matcher;
pub mod page_token;
pub mod projector;
pub mod relay;
pub mod service;
