//! Helpers shared by integration test binaries.

pub mod nats;
