//! Group commit for client events.
//!
//! Every `/events/in` socket used to append what it had received in a
//! transaction of its own. A flow run's client sends its task-run events a
//! few at a time, so with many runs in flight the server ran thousands of
//! tiny transactions a second, each with its round trips and its commit
//! flush, and Postgres's per-transaction cost, not the events, set the
//! pace. Here the sockets hand their batches to a few writers instead; a
//! writer takes every batch that is waiting and appends them together in
//! one transaction ([`ingest`]). An idle server adds no delay (a lone
//! batch is written at once); a busy one writes bigger transactions.
//!
//! A socket still waits for its own batch to be in the log before it reads
//! on, so acknowledgement and per-socket order are unchanged. If a group
//! fails, each batch in it is written again on its own, so one socket's bad
//! batch fails only that socket.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use super::client_events::{ingest, ClientEvent};
use crate::api::error::{AppError, ApiResult};
use crate::db::Db;

/// Writers appending groups at the same time: enough to keep both the
/// server and Postgres busy, few enough that groups grow under load.
const WRITERS: usize = 2;
/// A writer stops gathering once its group holds this many events.
const MAX_GROUP_EVENTS: usize = 1000;
/// Batches waiting for a writer; a socket has at most one waiting.
const QUEUE: usize = 1024;

struct Job {
    events: Vec<ClientEvent>,
    done: oneshot::Sender<ApiResult<()>>,
}

/// The sockets' side of the group committer: cheap to clone.
#[derive(Clone)]
pub struct IngestQueue {
    sender: mpsc::Sender<Job>,
}

impl IngestQueue {
    /// Starts the writers (on the current Tokio runtime). They stop when
    /// every clone of the queue is dropped.
    pub fn start(db: Db) -> IngestQueue {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..WRITERS {
            tokio::spawn(write_groups(db.clone(), receiver.clone()));
        }
        IngestQueue { sender }
    }

    /// Appends `events` (in a group with other sockets' batches) and
    /// returns once they are committed.
    pub async fn ingest(&self, events: Vec<ClientEvent>) -> ApiResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let (done, result) = oneshot::channel();
        let stopped = || AppError::Unavailable("the event writers have stopped".into());
        self.sender.send(Job { events, done }).await.map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}

/// A writer: gathers the batches waiting (holding the receiver only while
/// gathering, so the other writer can gather the next group meanwhile) and
/// writes them as one group.
async fn write_groups(db: Db, receiver: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let group = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else { return };
            let mut events = first.events.len();
            let mut group = vec![first];
            while events < MAX_GROUP_EVENTS {
                match receiver.try_recv() {
                    Ok(job) => {
                        events += job.events.len();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            group
        };
        write_group(&db, group).await;
    }
}

/// Writes a group in one transaction; if that fails, writes each batch in
/// it on its own, so that only the batch at fault fails. The batches are
/// moved into one list, not copied, and split again only on failure.
async fn write_group(db: &Db, group: Vec<Job>) {
    let mut events = Vec::with_capacity(group.iter().map(|job| job.events.len()).sum());
    let mut waiting: Vec<(usize, oneshot::Sender<ApiResult<()>>)> = Vec::with_capacity(group.len());
    for job in group {
        waiting.push((job.events.len(), job.done));
        events.extend(job.events);
    }
    if waiting.len() > 1 {
        tracing::debug!(batches = waiting.len(), events = events.len(), "ingest group");
    }
    match ingest(db, &events).await {
        Ok(_) => {
            for (_, done) in waiting {
                let _ = done.send(Ok(()));
            }
        }
        Err(e) if waiting.len() == 1 => {
            let (_, done) = waiting.pop().expect("one batch");
            let _ = done.send(Err(e));
        }
        Err(e) => {
            tracing::debug!(error = %e, batches = waiting.len(), "group append failed; writing its batches one by one");
            let mut from = 0;
            for (len, done) in waiting {
                let _ = done.send(ingest(db, &events[from..from + len]).await.map(drop));
                from += len;
            }
        }
    }
}
