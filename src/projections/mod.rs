//! Read models built from the event log. The server model is applied inline,
//! in the append transaction (read-your-writes for the Prefect API); replay
//! rebuilds it from the log with the same code.

pub mod server;
