//! The projector's just-committed batches, handed to the relay of the same
//! process so it can publish them without reading and decoding them from the
//! log a second time (under load that re-read was about a tenth of the
//! server's CPU). It is only a shortcut: a relay whose cursor does not sit
//! exactly where a kept batch starts reads the log as before, so a restart,
//! a relay that fell behind, or a projector in another process change
//! nothing but speed.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::broker::LiveEvent;
use crate::eventlog::Cursor;

/// How many batches are kept for a relay that is slow to wake.
const KEPT: usize = 32;

/// One committed projector batch.
#[derive(Debug, Clone)]
pub struct ProjectedBatch {
    /// The projector's checkpoint before the batch (exclusive start).
    pub after: Cursor,
    /// The last log entry the batch covered.
    pub last: Cursor,
    /// How many log entries it covered (Prefect events or not).
    pub covered: usize,
    /// Its Prefect events, in log order.
    pub events: Vec<LiveEvent>,
}

/// Recently committed batches, oldest first.
#[derive(Debug, Default)]
pub struct RecentBatches {
    batches: Mutex<VecDeque<ProjectedBatch>>,
}

impl RecentBatches {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps a batch the projector has committed.
    pub fn push(&self, batch: ProjectedBatch) {
        let mut batches = self.batches.lock().unwrap_or_else(|p| p.into_inner());
        batches.push_back(batch);
        while batches.len() > KEPT {
            batches.pop_front();
        }
    }

    /// The kept batch that starts right after `cursor`, if any; batches at or
    /// before `cursor` are dropped on the way.
    pub fn take_after(&self, cursor: Cursor) -> Option<ProjectedBatch> {
        let mut batches = self.batches.lock().unwrap_or_else(|p| p.into_inner());
        while batches.front().is_some_and(|b| b.last <= cursor) {
            batches.pop_front();
        }
        if batches.front().is_some_and(|b| b.after == cursor) {
            batches.pop_front()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(position: i64) -> Cursor {
        Cursor { tx_id: 0, position }
    }

    fn batch(after: i64, last: i64) -> ProjectedBatch {
        ProjectedBatch { after: at(after), last: at(last), covered: (last - after) as usize, events: vec![] }
    }

    #[test]
    fn given_kept_batches_when_the_relay_is_where_one_starts_then_it_gets_them_in_order() {
        let recent = RecentBatches::new();
        recent.push(batch(0, 5));
        recent.push(batch(5, 9));
        assert_eq!(recent.take_after(at(0)).map(|b| b.last), Some(at(5)));
        assert_eq!(recent.take_after(at(5)).map(|b| b.last), Some(at(9)));
        assert!(recent.take_after(at(9)).is_none());
    }

    #[test]
    fn given_a_relay_that_read_the_log_past_a_batch_start_when_asked_then_it_misses_and_stale_batches_go() {
        let recent = RecentBatches::new();
        recent.push(batch(0, 5));
        recent.push(batch(5, 9));
        // The relay read entries 1..=7 from the log: no kept batch starts there.
        assert!(recent.take_after(at(7)).is_none());
        // The first batch, wholly behind it, is gone; once it catches up to 9
        // the next batch lines up again.
        recent.push(batch(9, 12));
        assert_eq!(recent.take_after(at(9)).map(|b| b.covered), Some(3));
    }

    #[test]
    fn given_more_batches_than_kept_when_pushing_then_the_oldest_go() {
        let recent = RecentBatches::new();
        for i in 0..(KEPT as i64 + 3) {
            recent.push(batch(i, i + 1));
        }
        assert!(recent.take_after(at(0)).is_none());
        assert!(recent.take_after(at(3)).is_some());
    }
}
