//! Global (v2) concurrency limits as pure decisions: how many slots a limit
//! has taken, whether a request for slots is granted, and what a release
//! does to the limit's counters (Prefect's `models/concurrency_limits_v2.py`
//! and the acquire / 423 logic of its `concurrency_limits_v2` router).
//!
//! One difference from Prefect is deliberate. Prefect adds a lease's slots
//! to the limit's `active_slots` counter and relies on the repossessor to
//! take them back when a lease expires, so the counter and the lease list
//! can drift apart and slots leak. Here a limit's occupied slots are its
//! stored counter (slots taken without a lease, which decay for rate limits)
//! plus the slots of its live leases and, for a deployment's limit, of the
//! deployment's runs that hold one: an expired lease or a finished run stops
//! counting at once, so `active_slots` always equals what is really held.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Prefect's `OCCUPANCY_SAMPLES_MULTIPLIER`: the average occupancy is a
/// moving average over `limit * 2` releases.
const OCCUPANCY_SAMPLES_MULTIPLIER: f64 = 2.0;
/// Prefect's `MINIMUM_OCCUPANCY_SECONDS_PER_SLOT`.
const MINIMUM_OCCUPANCY_SECONDS_PER_SLOT: f64 = 0.1;

/// The server settings the wait calculations read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaitSettings {
    /// `PREFECT_SERVER_TASKS_TAG_CONCURRENCY_SLOT_WAIT_SECONDS` (10), for `tag:*` limits.
    pub tag_max_wait: f64,
    /// `PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS` (30).
    pub max_wait: f64,
}

impl Default for WaitSettings {
    fn default() -> Self {
        WaitSettings { tag_max_wait: 10.0, max_wait: 30.0 }
    }
}

/// A limit as a decision sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitState {
    pub id: Uuid,
    pub name: String,
    pub limit: i64,
    pub active: bool,
    /// The stored counter: slots taken without a lease. Decays at
    /// `slot_decay_per_second` from `updated`.
    pub active_slots: i64,
    pub denied_slots: i64,
    pub slot_decay_per_second: f64,
    pub avg_slot_occupancy_seconds: f64,
    pub updated: DateTime<Utc>,
    /// Slots held by live leases (and a deployment limit's runs).
    pub held: i64,
}

/// A limit's counters after a decision. Writing them also restarts decay
/// from the write's time, so they are always the decayed values.
#[derive(Debug, Clone, PartialEq)]
pub struct Counters {
    pub active_slots: i64,
    pub denied_slots: i64,
    pub avg_slot_occupancy_seconds: f64,
}

/// `mode` of an increment request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Concurrency,
    RateLimit,
}

/// What an acquisition decided, with the counters to write per limit.
#[derive(Debug, Clone, PartialEq)]
pub enum Acquisition {
    Granted { updates: Vec<(Uuid, Counters)> },
    /// 423 Locked: the denied counters grew; the client retries after about
    /// `average_interval` seconds (jittered by [`clamped_poisson_interval`]).
    Locked { updates: Vec<(Uuid, Counters)>, average_interval: f64 },
}

/// A request that can never be granted (Prefect's 422s).
#[derive(Debug, Clone, PartialEq)]
pub enum AcquireError {
    /// "Slots requested is greater than the limit".
    SlotsExceedLimit,
    /// A rate limit asked of limits without decay (their names).
    NotDecaying(Vec<String>),
}

impl AcquireError {
    pub fn message(&self) -> String {
        match self {
            AcquireError::SlotsExceedLimit => "Slots requested is greater than the limit".into(),
            AcquireError::NotDecaying(names) => format!(
                "Only concurrency limits with slot decay can be used for rate limiting. The following limits do not have a decay configured: {}",
                crate::py_repr::str_repr(&names.join(","))
            ),
        }
    }
}

impl LimitState {
    fn elapsed(&self, now: DateTime<Utc>) -> f64 {
        ((now - self.updated).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6).max(0.0)
    }

    /// The stored counter after decay (Prefect's `active_slots_after_decay`).
    pub fn stored_after_decay(&self, now: DateTime<Utc>) -> i64 {
        let decayed = (self.slot_decay_per_second * self.elapsed(now)).floor() as i64;
        (self.active_slots - decayed).max(0)
    }

    fn max_wait(&self, waits: WaitSettings) -> f64 {
        if self.name.starts_with("tag:") {
            waits.tag_max_wait
        } else {
            waits.max_wait
        }
    }

    /// Denied slots after decay (Prefect's `denied_slots_after_decay`): at
    /// the slot decay rate for rate limits, else one per (clamped) average
    /// occupancy.
    pub fn denied_after_decay(&self, now: DateTime<Utc>, waits: WaitSettings) -> i64 {
        let rate = if self.slot_decay_per_second > 0.0 {
            self.slot_decay_per_second
        } else {
            1.0 / self.avg_slot_occupancy_seconds.min(self.max_wait(waits)).max(MINIMUM_OCCUPANCY_SECONDS_PER_SLOT)
        };
        (self.denied_slots - (rate * self.elapsed(now)).floor() as i64).max(0)
    }

    /// Slots taken right now: the decayed counter plus what is held.
    pub fn occupied(&self, now: DateTime<Utc>) -> i64 {
        self.stored_after_decay(now) + self.held
    }
}

/// Decides a request for `slots` of every limit in `limits` (those found by
/// name). Inactive limits are ignored. `leased` slots are held by a lease
/// (counted through it), so the stored counter does not grow for them.
pub fn decide_acquire(
    limits: &[LimitState],
    slots: i64,
    mode: Mode,
    leased: bool,
    now: DateTime<Utc>,
    waits: WaitSettings,
) -> Result<Acquisition, AcquireError> {
    let active: Vec<&LimitState> = limits.iter().filter(|l| l.active).collect();
    if active.iter().any(|l| l.limit < slots) {
        return Err(AcquireError::SlotsExceedLimit);
    }
    let non_decaying: Vec<String> = active.iter().filter(|l| l.slot_decay_per_second == 0.0).map(|l| l.name.clone()).collect();
    if mode == Mode::RateLimit && !non_decaying.is_empty() {
        return Err(AcquireError::NotDecaying(non_decaying));
    }
    if active.iter().all(|l| l.occupied(now) + slots <= l.limit) {
        let added = if leased { 0 } else { slots };
        let updates = active
            .iter()
            .map(|l| {
                let counters = Counters {
                    active_slots: l.stored_after_decay(now) + added,
                    denied_slots: l.denied_after_decay(now, waits),
                    avg_slot_occupancy_seconds: l.avg_slot_occupancy_seconds,
                };
                (l.id, counters)
            })
            .collect();
        return Ok(Acquisition::Granted { updates });
    }
    let updates = active
        .iter()
        .map(|l| {
            let counters = Counters {
                active_slots: l.stored_after_decay(now),
                denied_slots: l.denied_after_decay(now, waits) + slots,
                avg_slot_occupancy_seconds: l.avg_slot_occupancy_seconds,
            };
            (l.id, counters)
        })
        .collect();
    Ok(Acquisition::Locked { updates, average_interval: retry_interval(&active, slots, now, waits) })
}

/// The mean wait before a denied request is retried, from the limit that
/// blocks most (Prefect's `_generate_concurrency_locked_response`).
fn retry_interval(active: &[&LimitState], slots: i64, now: DateTime<Utc>, waits: WaitSettings) -> f64 {
    let blocking_slots = |l: &LimitState| {
        let waiting = (slots + l.denied_after_decay(now, waits)) as f64;
        if l.slot_decay_per_second > 0.0 {
            waiting
        } else {
            waiting / l.limit.max(1) as f64
        }
    };
    let Some(blocking) = active.iter().max_by(|a, b| blocking_slots(a).total_cmp(&blocking_slots(b))) else {
        return 0.0;
    };
    let count = blocking_slots(blocking);
    if blocking.slot_decay_per_second == 0.0 {
        let max_wait = blocking.max_wait(waits);
        (blocking.avg_slot_occupancy_seconds.min(max_wait) * count).min(max_wait)
    } else {
        count / blocking.slot_decay_per_second
    }
}

/// A release of `slots` from `limit` after they were held for
/// `occupancy_seconds` (Prefect's `bulk_decrement_active_slots`). Leased
/// slots were never in the stored counter, so only the average changes.
pub fn decide_release(limit: &LimitState, slots: i64, occupancy_seconds: Option<f64>, leased: bool, now: DateTime<Utc>, waits: WaitSettings) -> Counters {
    let taken = if leased { 0 } else { slots };
    let mut avg = limit.avg_slot_occupancy_seconds;
    if let Some(seconds) = occupancy_seconds.filter(|s| *s > 0.0) {
        if limit.limit > 0 && slots > 0 {
            let per_slot = (seconds / slots as f64).max(MINIMUM_OCCUPANCY_SECONDS_PER_SLOT);
            let samples = limit.limit as f64 * OCCUPANCY_SAMPLES_MULTIPLIER;
            avg = avg + per_slot / samples - avg / samples;
        }
    }
    Counters {
        active_slots: (limit.stored_after_decay(now) - taken).max(0),
        denied_slots: limit.denied_after_decay(now, waits),
        avg_slot_occupancy_seconds: avg,
    }
}

/// What `SecureTaskConcurrencySlots` decides for a task run proposing
/// RUNNING, given the `tag:*` limits of its tags.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskSlots {
    /// No active limit applies.
    Free,
    /// Take one slot of each of these limits (under one lease).
    Acquire(Vec<Uuid>),
    Abort(String),
    Wait { delay_seconds: i64, reason: String },
}

/// Prefect's `SecureTaskConcurrencySlots` for v2 tag limits: a limit of 0
/// would deadlock (ABORT); a full limit makes the task WAIT about the
/// average occupancy of the most contended one, capped at the tag wait.
/// `u` is the uniform draw for the jitter.
pub fn decide_task_slots(limits: &[LimitState], now: DateTime<Utc>, waits: WaitSettings, u: f64) -> TaskSlots {
    let tag = |l: &LimitState| l.name.trim_start_matches("tag:").to_owned();
    if let Some(zero) = limits.iter().find(|l| l.active && l.limit == 0) {
        return TaskSlots::Abort(format!("The concurrency limit on tag \"{}\" is 0 and will deadlock if the task tries to run again.", tag(zero)));
    }
    let active: Vec<&LimitState> = limits.iter().filter(|l| l.active && l.limit > 0).collect();
    if active.is_empty() {
        return TaskSlots::Free;
    }
    if active.iter().all(|l| l.occupied(now) < l.limit) {
        return TaskSlots::Acquire(active.iter().map(|l| l.id).collect());
    }
    let load = |l: &&LimitState| l.occupied(now) as f64 / l.limit as f64;
    let blocking = active.iter().max_by(|a, b| load(a).total_cmp(&load(b))).copied().unwrap_or(active[0]);
    let occupancy = if blocking.avg_slot_occupancy_seconds > 0.0 { blocking.avg_slot_occupancy_seconds } else { waits.tag_max_wait };
    let delay = clamped_poisson_interval(occupancy.min(waits.tag_max_wait), u);
    let tags: Vec<String> = active.iter().map(|l| tag(l)).collect();
    TaskSlots::Wait { delay_seconds: delay.round() as i64, reason: format!("Concurrency limit reached for tags: {}", tags.join(", ")) }
}

/// Prefect's `clamped_poisson_interval` (clamping factor 0.3) with the
/// uniform draw `u` in [0, 1) passed in: an exponential variate around
/// `average_interval`, bounded so its mean stays about the average.
pub fn clamped_poisson_interval(average_interval: f64, u: f64) -> f64 {
    if average_interval <= 0.0 {
        return 0.0;
    }
    let k: f64 = 1.3;
    let lower_multiple = if k >= 50.0 { 0.0 } else { (2f64.powf(k) / (2f64.powf(k) - 1.0)).max(1e-10).log2() };
    let cdf = |x: f64| 1.0 - (-x / average_interval).exp();
    let lower = cdf((average_interval * lower_multiple).max(0.0));
    let upper = cdf(average_interval * k);
    let draw = lower + u * (upper - lower);
    -(1.0 - draw).max(1e-10).ln() * average_interval
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn limit(name: &str, max: i64) -> LimitState {
        LimitState {
            id: Uuid::from_u128(name.len() as u128 + max as u128 * 1000),
            name: name.into(),
            limit: max,
            active: true,
            active_slots: 0,
            denied_slots: 0,
            slot_decay_per_second: 0.0,
            avg_slot_occupancy_seconds: 2.0,
            updated: t0(),
            held: 0,
        }
    }

    fn w() -> WaitSettings {
        WaitSettings::default()
    }

    #[test]
    fn given_free_slots_when_acquiring_without_lease_then_the_counter_grows() {
        let l = limit("db", 3);
        let out = decide_acquire(std::slice::from_ref(&l), 2, Mode::Concurrency, false, t0(), w()).unwrap();
        let Acquisition::Granted { updates } = out else { panic!("not granted") };
        assert_eq!(updates, vec![(l.id, Counters { active_slots: 2, denied_slots: 0, avg_slot_occupancy_seconds: 2.0 })]);
    }

    #[test]
    fn given_free_slots_when_acquiring_with_a_lease_then_the_counter_is_unchanged() {
        let l = limit("db", 3);
        let Acquisition::Granted { updates } = decide_acquire(&[l], 2, Mode::Concurrency, true, t0(), w()).unwrap() else { panic!() };
        assert_eq!(updates[0].1.active_slots, 0);
    }

    #[test]
    fn given_leases_holding_the_limit_when_acquiring_then_it_is_locked_and_denials_count() {
        let mut l = limit("db", 2);
        l.held = 2;
        let out = decide_acquire(&[l.clone()], 1, Mode::Concurrency, true, t0(), w()).unwrap();
        let Acquisition::Locked { updates, average_interval } = out else { panic!("granted") };
        assert_eq!(updates[0].1.denied_slots, 1);
        // one waiting slot over a limit of 2, at the 2 s average occupancy
        assert!((average_interval - 1.0).abs() < 1e-9, "{average_interval}");
    }

    #[test]
    fn given_one_full_limit_among_several_then_none_is_taken() {
        let a = limit("a", 5);
        let mut b = limit("bb", 1);
        b.active_slots = 1;
        let out = decide_acquire(&[a, b], 1, Mode::Concurrency, false, t0(), w()).unwrap();
        assert!(matches!(out, Acquisition::Locked { .. }));
    }

    #[test]
    fn given_an_inactive_limit_then_it_neither_blocks_nor_counts() {
        let mut l = limit("db", 1);
        l.active = false;
        l.active_slots = 1;
        let Acquisition::Granted { updates } = decide_acquire(&[l], 5, Mode::Concurrency, false, t0(), w()).unwrap() else { panic!() };
        assert!(updates.is_empty());
    }

    #[test]
    fn given_more_slots_than_the_limit_then_the_request_is_invalid() {
        assert_eq!(decide_acquire(&[limit("db", 2)], 3, Mode::Concurrency, false, t0(), w()), Err(AcquireError::SlotsExceedLimit));
    }

    #[test]
    fn given_a_rate_limit_request_on_a_limit_without_decay_then_it_is_invalid_with_prefects_message() {
        let err = decide_acquire(&[limit("a", 2), limit("b", 2)], 1, Mode::RateLimit, false, t0(), w()).unwrap_err();
        assert_eq!(
            err.message(),
            "Only concurrency limits with slot decay can be used for rate limiting. The following limits do not have a decay configured: 'a,b'"
        );
    }

    #[test]
    fn given_a_decaying_limit_then_slots_come_back_over_time() {
        let mut l = limit("rl", 10);
        l.slot_decay_per_second = 2.0;
        l.active_slots = 10;
        assert_eq!(l.stored_after_decay(t0()), 10);
        assert_eq!(l.stored_after_decay(t0() + Duration::milliseconds(1600)), 7);
        assert_eq!(l.stored_after_decay(t0() + Duration::seconds(60)), 0);
        let out = decide_acquire(&[l.clone()], 1, Mode::RateLimit, false, t0(), w()).unwrap();
        assert!(matches!(out, Acquisition::Locked { average_interval, .. } if (average_interval - 0.5).abs() < 1e-9));
        let out = decide_acquire(&[l], 1, Mode::RateLimit, false, t0() + Duration::seconds(1), w()).unwrap();
        let Acquisition::Granted { updates } = out else { panic!() };
        assert_eq!(updates[0].1.active_slots, 9);
    }

    #[test]
    fn denied_slots_of_a_concurrency_limit_decay_at_the_clamped_average_occupancy() {
        let mut l = limit("tag:x", 1);
        l.denied_slots = 10;
        l.avg_slot_occupancy_seconds = 100.0; // clamped to the 10 s tag wait
        assert_eq!(l.denied_after_decay(t0() + Duration::seconds(25), w()), 8);
        l.name = "other".into(); // clamped to 30 s
        assert_eq!(l.denied_after_decay(t0() + Duration::seconds(25), w()), 10);
    }

    #[test]
    fn the_retry_wait_of_a_concurrency_limit_is_capped_at_the_maximum_wait() {
        let mut l = limit("tag:x", 1);
        l.held = 1;
        l.avg_slot_occupancy_seconds = 500.0;
        l.denied_slots = 50;
        let Acquisition::Locked { average_interval, .. } = decide_acquire(&[l], 1, Mode::Concurrency, true, t0(), w()).unwrap() else { panic!() };
        assert_eq!(average_interval, 10.0);
    }

    #[test]
    fn a_release_frees_unleased_slots_and_moves_the_average_occupancy() {
        let mut l = limit("db", 2);
        l.active_slots = 2;
        let c = decide_release(&l, 1, Some(10.0), false, t0(), w());
        // avg + 10/4 - 2/4
        assert_eq!(c, Counters { active_slots: 1, denied_slots: 0, avg_slot_occupancy_seconds: 4.0 });
        let leased = decide_release(&l, 1, Some(10.0), true, t0(), w());
        assert_eq!(leased.active_slots, 2);
        assert_eq!(decide_release(&l, 5, None, false, t0(), w()).active_slots, 0, "never below zero");
    }

    #[test]
    fn given_tag_limits_when_a_task_asks_to_run_then_it_acquires_waits_or_aborts() {
        let mut free = limit("tag:a", 2);
        free.held = 1;
        let mut full = limit("tag:bb", 1);
        full.held = 1;
        full.avg_slot_occupancy_seconds = 4.0;
        assert_eq!(decide_task_slots(std::slice::from_ref(&free), t0(), w(), 0.5), TaskSlots::Acquire(vec![free.id]));
        let TaskSlots::Wait { delay_seconds, reason } = decide_task_slots(&[free.clone(), full.clone()], t0(), w(), 0.5) else { panic!() };
        assert_eq!(reason, "Concurrency limit reached for tags: a, bb");
        assert!((3..=6).contains(&delay_seconds), "{delay_seconds}");
        let zero = limit("tag:z", 0);
        assert_eq!(
            decide_task_slots(&[free.clone(), zero], t0(), w(), 0.5),
            TaskSlots::Abort("The concurrency limit on tag \"z\" is 0 and will deadlock if the task tries to run again.".into())
        );
        full.active = false;
        assert_eq!(decide_task_slots(&[full], t0(), w(), 0.5), TaskSlots::Free);
    }

    #[test]
    fn the_jittered_interval_stays_within_prefects_clamps() {
        for i in 0..100 {
            let v = clamped_poisson_interval(10.0, i as f64 / 100.0);
            assert!((7.5..=13.0 + 1e-9).contains(&v), "{v}");
        }
        assert_eq!(clamped_poisson_interval(0.0, 0.5), 0.0);
    }
}
