//! The worker channel (`/work_pools/{name}/workers/connect`), new in Prefect
//! 3.8: a worker opens one WebSocket, says hello, and from then on sends its
//! heartbeats over it and receives its work pool as snapshots pushed when
//! the pool changes, instead of polling `GET /work_pools/{name}` and
//! `POST .../workers/heartbeat`. Scheduled runs are still fetched over REST.
//!
//! - [`frames`]: the wire frames, read strictly.
//! - [`decide`]: pure decisions (versions, capabilities, queues, close codes,
//!   which live events call for a snapshot).
//! - [`session`]: the reads and writes a connection makes, through the same
//!   commands as the REST routes, so every change is in the event log.
//!
//! Snapshots follow the event feed through the broker, so a connection on
//! one API process sees pool changes made through any other.

pub mod decide;
pub mod frames;
pub mod session;
