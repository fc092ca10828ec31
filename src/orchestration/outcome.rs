//! The vocabulary of an orchestration decision (status, response details, the
//! proposed state) and the small rule engine both run policies share.
//!
//! The engine reproduces how Prefect nests its rules as context managers:
//! every rule whose FROM/TO sets match the *intended* transition is entered in
//! policy order; a rule only fires its `before` hook if no earlier rule has
//! changed the proposed state's type; after the proposal is validated the rules
//! are exited in reverse order, and a rule whose transition no longer matches
//! ("fizzled") runs `cleanup` instead of `after`. Getting this exactly right
//! matters because several rules have side effects on the run (pause keys,
//! `resuming`, run counts) that Prefect keeps or reverts depending on it.
//!
//! Everything here is pure: the clock and any ids come in through the inputs.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::orchestration::states::{State, StateDetails, StateType};

/// `SetStateStatus` in Prefect's response schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Accept,
    Reject,
    Wait,
    Abort,
}

/// `StateResponseDetails`: the `details` object of an `OrchestrationResult`.
/// Serialized with a `type` tag exactly as Prefect does, e.g.
/// `{"type":"wait_details","delay_seconds":3,"reason":"..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Details {
    #[serde(rename = "accept_details")]
    Accept,
    #[serde(rename = "reject_details")]
    Reject { reason: String },
    #[serde(rename = "wait_details")]
    Wait { delay_seconds: i64, reason: String },
    #[serde(rename = "abort_details")]
    Abort { reason: String },
}

/// Prefect's `StateCreate`: the body a client proposes to `set_state`.
///
/// Like Prefect (`extra="forbid"`), unknown top-level keys are rejected, so a
/// client cannot smuggle in an `id` or `timestamp`; the server mints both.
/// Unknown keys inside `state_details` are ignored, as in Prefect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposedState {
    #[serde(rename = "type")]
    pub state_type: StateType,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default)]
    pub state_details: StateDetails,
}

impl ProposedState {
    /// A bare proposal of the given type (no name, message, data or details).
    pub fn new(state_type: StateType) -> Self {
        ProposedState {
            state_type,
            name: None,
            message: None,
            data: None,
            state_details: StateDetails::default(),
        }
    }

    /// The proposal that re-creates an existing state (used e.g. to force a
    /// subflow's state onto its parent task run).
    pub fn from_state(state: &State) -> Self {
        ProposedState {
            state_type: state.state_type,
            name: Some(state.name.clone()),
            message: state.message.clone(),
            data: state.data.clone(),
            state_details: state.state_details.clone(),
        }
    }

    /// Turns the proposal into the full state Prefect builds from it before any
    /// rule runs: the name defaults to the type's name and a SCHEDULED state
    /// without a `scheduled_time` is scheduled for `now`. Rules compare names
    /// (e.g. "Pending", "Late", "Suspended"), so the default must exist first.
    pub fn into_state(self, id: Uuid, now: DateTime<Utc>) -> State {
        let mut state_details = self.state_details;
        if self.state_type == StateType::Scheduled && state_details.scheduled_time.is_none() {
            state_details.scheduled_time = Some(now);
        }
        State {
            id,
            state_type: self.state_type,
            name: self
                .name
                .unwrap_or_else(|| self.state_type.default_name().to_string()),
            timestamp: now,
            message: self.message,
            data: self.data,
            state_details,
        }
    }
}

/// Prefect's `_has_persisted_result`: a dict whose `type` is not
/// `"unpersisted"` is a persisted result record. Unlike
/// [`State::has_persisted_result`] this takes raw data, because Prefect applies
/// it to proposed data too.
pub fn is_persisted_result(data: &Option<Value>) -> bool {
    matches!(data, Some(Value::Object(map)) if map.get("type").and_then(Value::as_str) != Some("unpersisted"))
}

/// Python truthiness of state data. Prefect guards its "completed with a
/// persisted result" checks with `initial_state.data and ...`, so an empty
/// dict or list never counts as a persisted result on the *current* state.
pub fn is_truthy(data: &Option<Value>) -> bool {
    match data {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

/// True when the current state is COMPLETED and carries a persisted result,
/// which Prefect refuses to discard.
pub(crate) fn completed_with_persisted_result(state: &State) -> bool {
    state.state_type == StateType::Completed
        && is_truthy(&state.data)
        && is_persisted_result(&state.data)
}

// ---------------------------------------------------------------------------
// State sets (FROM_STATES / TO_STATES)
// ---------------------------------------------------------------------------

/// A set of `Option<StateType>`; `None` stands for "no state" (a run's first
/// state, or a transition a rule nullified). Prefect's `ALL_ORCHESTRATION_STATES`
/// includes `None`; its `TERMINAL_STATES` does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StateSet(u16);

const NONE_SLOT: u16 = 9;

impl StateSet {
    /// Every state type plus `None`.
    pub const ALL: StateSet = StateSet((1 << 10) - 1);
    /// COMPLETED, FAILED, CANCELLED, CRASHED (without `None`).
    pub const TERMINAL: StateSet = StateSet::of(&[
        StateType::Completed,
        StateType::Failed,
        StateType::Cancelled,
        StateType::Crashed,
    ]);

    pub const fn of(types: &[StateType]) -> StateSet {
        let mut bits = 0u16;
        let mut i = 0;
        while i < types.len() {
            bits |= 1 << (types[i] as u16);
            i += 1;
        }
        StateSet(bits)
    }

    pub const fn without(self, t: StateType) -> StateSet {
        StateSet(self.0 & !(1 << (t as u16)))
    }

    pub fn contains(self, t: Option<StateType>) -> bool {
        let slot = match t {
            Some(t) => t as u16,
            None => NONE_SLOT,
        };
        self.0 & (1 << slot) != 0
    }
}

// ---------------------------------------------------------------------------
// The transition being orchestrated
// ---------------------------------------------------------------------------

/// The mutable heart of an orchestration: Prefect's `OrchestrationContext`
/// minus the database session.
#[derive(Debug, Clone)]
pub(crate) struct Transition {
    pub initial: Option<State>,
    /// The state that will be written; `None` once a rule nullified the transition.
    pub proposed: Option<State>,
    pub status: Status,
    pub details: Details,
    /// Set by validation: the state actually written (if any).
    pub validated: Option<State>,
    pub now: DateTime<Utc>,
    /// The id any state written by this decision gets.
    pub new_state_id: Uuid,
}

impl Transition {
    pub fn new(
        initial: Option<State>,
        proposed: State,
        now: DateTime<Utc>,
        new_state_id: Uuid,
    ) -> Self {
        Transition {
            initial,
            proposed: Some(proposed),
            status: Status::Accept,
            details: Details::Accept,
            validated: None,
            now,
            new_state_id,
        }
    }

    pub fn initial_type(&self) -> Option<StateType> {
        self.initial.as_ref().map(|s| s.state_type)
    }

    pub fn proposed_type(&self) -> Option<StateType> {
        self.proposed.as_ref().map(|s| s.state_type)
    }

    /// A brand-new state of `state_type` that a rule substitutes for the
    /// proposal (Prefect's `states.Cancelled()`, `states.AwaitingRetry()`, ...).
    /// It gets this decision's id and timestamp.
    pub fn new_state(&self, state_type: StateType, name: Option<&str>) -> State {
        let proposal = ProposedState {
            name: name.map(str::to_string),
            ..ProposedState::new(state_type)
        };
        proposal.into_state(self.new_state_id, self.now)
    }

    /// Renames the proposal, if there still is one (Prefect's `rename_state`).
    /// A rename never changes the type, so it never makes other rules fizzle.
    pub fn rename(&mut self, name: &str) {
        if let Some(p) = self.proposed.as_mut() {
            p.name = name.to_string();
        }
    }

    /// Applies a rule's intervention and returns the state type the rule now
    /// governs (so the rule itself does not fizzle because of its own change).
    fn intervene(&mut self, intervention: Intervention) -> Option<StateType> {
        match intervention {
            Intervention::Reject { state, reason } => {
                self.proposed = state.map(|s| *s);
                self.status = Status::Reject;
                self.details = Details::Reject { reason };
            }
            Intervention::Wait {
                delay_seconds,
                reason,
            } => {
                self.proposed = None;
                self.status = Status::Wait;
                self.details = Details::Wait {
                    delay_seconds,
                    reason,
                };
            }
            Intervention::Abort { reason } => {
                self.proposed = None;
                self.status = Status::Abort;
                self.details = Details::Abort { reason };
            }
        }
        self.proposed_type()
    }
}

/// What a rule's `before` hook may do to a transition besides editing the
/// proposal in place.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Intervention {
    /// Replace the proposal with `state`, or with nothing (the current state is
    /// then returned to the client).
    Reject {
        state: Option<Box<State>>,
        reason: String,
    },
    /// Write nothing and tell the client to retry after `delay_seconds`.
    Wait { delay_seconds: i64, reason: String },
    /// Write nothing and tell the client to stop.
    Abort { reason: String },
}

impl Intervention {
    pub fn reject(state: Option<State>, reason: impl Into<String>) -> Option<Intervention> {
        Some(Intervention::Reject {
            state: state.map(Box::new),
            reason: reason.into(),
        })
    }

    pub fn wait(delay_seconds: i64, reason: impl Into<String>) -> Option<Intervention> {
        Some(Intervention::Wait {
            delay_seconds,
            reason: reason.into(),
        })
    }

    pub fn abort(reason: impl Into<String>) -> Option<Intervention> {
        Some(Intervention::Abort {
            reason: reason.into(),
        })
    }
}

// ---------------------------------------------------------------------------
// Run access shared by flow and task contexts
// ---------------------------------------------------------------------------

/// Mutable views of the run fields the common bookkeeping maintains.
pub(crate) struct RunClock<'a> {
    pub start_time: &'a mut Option<DateTime<Utc>>,
    pub end_time: &'a mut Option<DateTime<Utc>>,
    pub total_run_time: &'a mut f64,
    pub expected_start_time: &'a mut Option<DateTime<Utc>>,
    pub next_scheduled_start_time: &'a mut Option<DateTime<Utc>>,
}

/// What the shared rules need from a flow- or task-run context.
pub(crate) trait RunContext {
    fn transition(&self) -> &Transition;
    fn transition_mut(&mut self) -> &mut Transition;
    fn run_count(&self) -> i64;
    fn clock(&mut self) -> RunClock<'_>;
}

// ---------------------------------------------------------------------------
// Rules and the nesting engine
// ---------------------------------------------------------------------------

/// One orchestration rule or universal transform.
///
/// Rules (`universal() == false`) follow Prefect's `BaseOrchestrationRule`
/// lifecycle; universal transforms follow `BaseUniversalTransform`: they act
/// on every transition that still has a proposal and can never fizzle.
pub(crate) trait Rule<C> {
    fn name(&self) -> &'static str;
    /// Prefect's `FROM_STATES`: current state types the rule governs.
    fn governed_from(&self) -> StateSet {
        StateSet::ALL
    }
    /// Prefect's `TO_STATES`: proposed state types the rule governs.
    fn governed_to(&self) -> StateSet {
        StateSet::ALL
    }
    fn universal(&self) -> bool {
        false
    }
    /// Runs before the proposal is validated.
    fn before(&mut self, _ctx: &mut C) -> Option<Intervention> {
        None
    }
    /// Runs after validation when the rule still governs the transition.
    fn after(&mut self, _ctx: &mut C) {}
    /// Runs after validation instead of `after` when a later rule changed the
    /// proposal so this rule no longer applies; reverts `before`'s side effects.
    fn cleanup(&mut self, _ctx: &mut C) {}
}

/// A universal transform that only has a `before` hook, which is the shape of
/// nearly all of Prefect's bookkeeping.
pub(crate) struct Transform<C> {
    pub name: &'static str,
    pub apply: fn(&mut C),
}

impl<C> Rule<C> for Transform<C> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn universal(&self) -> bool {
        true
    }
    fn before(&mut self, ctx: &mut C) -> Option<Intervention> {
        (self.apply)(ctx);
        None
    }
}

/// A stateless rule with only a `before` hook.
pub(crate) struct SimpleRule<C> {
    pub name: &'static str,
    pub from: StateSet,
    pub to: StateSet,
    pub before: fn(&mut C) -> Option<Intervention>,
}

impl<C> Rule<C> for SimpleRule<C> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn governed_from(&self) -> StateSet {
        self.from
    }
    fn governed_to(&self) -> StateSet {
        self.to
    }
    fn before(&mut self, ctx: &mut C) -> Option<Intervention> {
        (self.before)(ctx)
    }
}

/// A rule entered into the nest, with the bookkeeping Prefect keeps per rule.
struct Entered<C> {
    rule: Box<dyn Rule<C>>,
    /// The transition the rule governs; updated when the rule itself intervenes.
    to_type: Option<StateType>,
    invalid_on_entry: Option<bool>,
}

impl<C> Entered<C> {
    /// Prefect's `invalid()`: the rule's own FROM/TO no longer match (sticky),
    /// or, decided once on entry, another rule already changed the transition.
    fn is_invalid(&mut self, from: Option<StateType>, t: &Transition) -> bool {
        if !self.rule.governed_from().contains(from)
            || !self.rule.governed_to().contains(self.to_type)
        {
            self.invalid_on_entry = Some(true);
        }
        *self
            .invalid_on_entry
            .get_or_insert_with(|| t.initial_type() != from || t.proposed_type() != self.to_type)
    }

    /// Prefect's `fizzled()`: valid on entry but the transition changed since.
    fn is_fizzled(&self, from: Option<StateType>, t: &Transition) -> bool {
        self.invalid_on_entry != Some(true)
            && (t.initial_type() != from || t.proposed_type() != self.to_type)
    }
}

/// Runs `rules` (a policy's rules followed by its global transforms) over the
/// context exactly as Prefect's nested context managers do, validating the
/// proposal (recording it in `transition.validated`) in the middle.
///
/// Returns the names of the rules whose `before` hook fired, in order
/// (Prefect's `rule_signature`), for diagnostics and tests.
pub(crate) fn orchestrate<C: RunContext>(
    ctx: &mut C,
    rules: Vec<Box<dyn Rule<C>>>,
) -> Vec<&'static str> {
    let from = ctx.transition().initial_type();
    let to = ctx.transition().proposed_type();
    let mut entered: Vec<Entered<C>> = Vec::new();
    let mut signature = Vec::new();

    for rule in rules {
        // `compile_transition_rules`: only rules matching the intended transition.
        if !(rule.governed_from().contains(from) && rule.governed_to().contains(to)) {
            continue;
        }
        let mut entry = Entered {
            rule,
            to_type: to,
            invalid_on_entry: None,
        };
        if entry.rule.universal() {
            if ctx.transition().proposed.is_some() {
                signature.push(entry.rule.name());
                entry.rule.before(ctx);
            }
        } else if !entry.is_invalid(from, ctx.transition()) {
            signature.push(entry.rule.name());
            if let Some(intervention) = entry.rule.before(ctx) {
                entry.to_type = ctx.transition_mut().intervene(intervention);
            }
        }
        entered.push(entry);
    }

    let t = ctx.transition_mut();
    t.validated = t.proposed.clone();

    for mut entry in entered.into_iter().rev() {
        if entry.rule.universal() {
            if ctx.transition().proposed.is_some() {
                entry.rule.after(ctx);
            }
        } else if entry.is_invalid(from, ctx.transition()) {
            // never applied: nothing to do
        } else if entry.is_fizzled(from, ctx.transition()) {
            entry.rule.cleanup(ctx);
        } else {
            entry.rule.after(ctx);
        }
    }
    signature
}

// ---------------------------------------------------------------------------
// Rules shared by flow and task policies
// ---------------------------------------------------------------------------

/// Prefect's WAIT delay: the time until `scheduled_time`, as whole seconds
/// plus one when the sub-second part is over half a second (Python's
/// `round()` rounds 0.5 down to even, hence strictly greater).
pub(crate) fn wait_seconds(scheduled_time: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    let delay = scheduled_time - now;
    match delay.num_microseconds() {
        Some(us) => us.div_euclid(1_000_000) + i64::from(us.rem_euclid(1_000_000) > 500_000),
        None => delay.num_seconds(),
    }
}

/// `delay` seconds as a duration, rounded to the microsecond like Python's
/// `timedelta(seconds=...)`.
pub(crate) fn seconds_to_duration(delay: f64) -> Duration {
    let micros = (delay * 1_000_000.0).round_ties_even();
    if micros.is_finite() && micros.abs() < i64::MAX as f64 {
        Duration::microseconds(micros as i64)
    } else {
        Duration::zero()
    }
}

/// WaitForScheduledTime (SCHEDULED/PENDING → RUNNING): a run may not start
/// before the server's clock reaches its scheduled time, so the client is told
/// to wait instead of anything being written.
pub(crate) fn wait_for_scheduled_time<C: RunContext + 'static>() -> Box<dyn Rule<C>> {
    Box::new(SimpleRule {
        name: "WaitForScheduledTime",
        from: StateSet::of(&[StateType::Scheduled, StateType::Pending]),
        to: StateSet::of(&[StateType::Running]),
        before: |ctx: &mut C| {
            let t = ctx.transition();
            let scheduled = t.initial.as_ref()?.state_details.scheduled_time?;
            t.proposed.as_ref()?;
            let delay = wait_seconds(scheduled, t.now);
            if delay > 0 {
                Intervention::wait(delay, "Scheduled time is in the future")
            } else {
                None
            }
        },
    })
}

/// CopyScheduledTime (SCHEDULED → PENDING): keeps the run's scheduled time on
/// the Pending state unless the proposal brings its own.
pub(crate) fn copy_scheduled_time<C: RunContext + 'static>() -> Box<dyn Rule<C>> {
    Box::new(SimpleRule {
        name: "CopyScheduledTime",
        from: StateSet::of(&[StateType::Scheduled]),
        to: StateSet::of(&[StateType::Pending]),
        before: |ctx: &mut C| {
            let t = ctx.transition_mut();
            let scheduled = t.initial.as_ref()?.state_details.scheduled_time;
            let proposed = t.proposed.as_mut()?;
            if proposed.state_details.scheduled_time.is_none() {
                proposed.state_details.scheduled_time = scheduled;
            }
            None
        },
    })
}

/// PreventPendingTransitions ({PENDING, CANCELLING, RUNNING, CANCELLED} →
/// PENDING): PENDING is the claim a worker takes before submitting a run, so a
/// second PENDING means a duplicate submission and is aborted. Named Pending
/// sub-states (Submitting, InfrastructurePending, ...) may still follow a
/// Pending state; they carry the scheduled time and lease forward.
pub(crate) fn prevent_pending_transitions<C: RunContext + 'static>() -> Box<dyn Rule<C>> {
    Box::new(SimpleRule {
        name: "PreventPendingTransitions",
        from: StateSet::of(&[
            StateType::Pending,
            StateType::Cancelling,
            StateType::Running,
            StateType::Cancelled,
        ]),
        to: StateSet::of(&[StateType::Pending]),
        before: |ctx: &mut C| {
            let t = ctx.transition_mut();
            let initial = t.initial.as_ref()?;
            let proposed = t.proposed.as_mut()?;
            let named_sub_state = initial.state_type == StateType::Pending
                && proposed.state_type == StateType::Pending
                && initial.name != proposed.name
                && proposed.name != "Pending";
            if named_sub_state {
                proposed.state_details.scheduled_time = initial.state_details.scheduled_time;
                proposed.state_details.deployment_concurrency_lease_id =
                    initial.state_details.deployment_concurrency_lease_id;
                return None;
            }
            Intervention::abort(format!(
                "This run is in a {} state and cannot transition to a PENDING state.",
                initial.state_type.as_str()
            ))
        },
    })
}

/// RenameReruns (→ RUNNING): a run that has run before is "Retrying" when it
/// comes from AwaitingRetry and "Rerunning" otherwise, so the UI can tell runs
/// apart from first attempts.
pub(crate) fn rename_reruns<C: RunContext + 'static>() -> Box<dyn Rule<C>> {
    Box::new(SimpleRule {
        name: "RenameReruns",
        from: StateSet::ALL,
        to: StateSet::of(&[StateType::Running]),
        before: |ctx: &mut C| {
            let run_count = ctx.run_count();
            let t = ctx.transition_mut();
            let initial_name = t.initial.as_ref()?.name.clone();
            t.proposed.as_ref()?;
            if run_count > 0 {
                t.rename(if initial_name == "AwaitingRetry" {
                    "Retrying"
                } else {
                    "Rerunning"
                });
            }
            None
        },
    })
}

// ---- Common global bookkeeping (COMMON_GLOBAL_TRANSFORMS) ----
//
// SetRunStateType / SetRunStateName / SetRunStateTimestamp are realised by the
// policies storing the written state as `run.state` after validation.

/// SetStartTime: the first entry into RUNNING starts the run's clock.
pub(crate) fn set_start_time<C: RunContext>(ctx: &mut C) {
    let Some(p) = ctx.transition().proposed.clone() else {
        return;
    };
    let clock = ctx.clock();
    if p.state_type == StateType::Running && clock.start_time.is_none() {
        *clock.start_time = Some(p.timestamp);
    }
}

/// SetEndTime: entering a final state stamps `end_time` (and `start_time` for
/// runs that end before ever running); leaving final for non-final clears it.
pub(crate) fn set_end_time<C: RunContext>(ctx: &mut C) {
    let t = ctx.transition();
    let Some(p) = t.proposed.clone() else { return };
    let leaving_final =
        t.initial.as_ref().is_some_and(|i| i.state_type.is_final()) && !p.state_type.is_final();
    let clock = ctx.clock();
    if leaving_final {
        *clock.end_time = None;
    }
    if p.state_type.is_final() && clock.end_time.is_none() {
        if clock.start_time.is_none() {
            *clock.start_time = Some(p.timestamp);
        }
        *clock.end_time = Some(p.timestamp);
    }
}

/// IncrementRunTime: time spent in RUNNING is added when the run leaves it.
pub(crate) fn increment_run_time<C: RunContext>(ctx: &mut C) {
    let t = ctx.transition();
    let (Some(p), Some(i)) = (t.proposed.as_ref(), t.initial.as_ref()) else {
        return;
    };
    if i.state_type != StateType::Running {
        return;
    }
    let elapsed = p.timestamp - i.timestamp;
    let seconds = elapsed
        .num_microseconds()
        .map(|us| us as f64 / 1_000_000.0)
        .unwrap_or(elapsed.num_seconds() as f64);
    *ctx.clock().total_run_time += seconds;
}

/// SetExpectedStartTime: fixed once, from the schedule for Scheduled states or
/// from the first state's timestamp otherwise.
pub(crate) fn set_expected_start_time<C: RunContext>(ctx: &mut C) {
    let Some(p) = ctx.transition().proposed.clone() else {
        return;
    };
    let clock = ctx.clock();
    if clock.expected_start_time.is_none() {
        *clock.expected_start_time = if p.state_type == StateType::Scheduled {
            p.state_details.scheduled_time
        } else {
            Some(p.timestamp)
        };
    }
}

/// SetNextScheduledStartTime: tracks the pending schedule while the run is
/// SCHEDULED (the late-runs service and work-queue polling read it).
pub(crate) fn set_next_scheduled_start_time<C: RunContext>(ctx: &mut C) {
    let t = ctx.transition();
    let Some(p) = t.proposed.clone() else { return };
    let leaving_scheduled = t
        .initial
        .as_ref()
        .is_some_and(|i| i.state_type == StateType::Scheduled);
    let clock = ctx.clock();
    if leaving_scheduled {
        *clock.next_scheduled_start_time = None;
    }
    if p.state_type == StateType::Scheduled {
        *clock.next_scheduled_start_time = p.state_details.scheduled_time;
    }
}

/// The common global transforms, in Prefect's order, ready to append to a
/// policy (UpdateStateDetails differs per run kind and is added by the caller).
pub(crate) fn common_clock_transforms<C: RunContext + 'static>() -> Vec<Box<dyn Rule<C>>> {
    vec![
        Box::new(Transform {
            name: "SetStartTime",
            apply: set_start_time::<C>,
        }),
        Box::new(Transform {
            name: "SetEndTime",
            apply: set_end_time::<C>,
        }),
        Box::new(Transform {
            name: "IncrementRunTime",
            apply: increment_run_time::<C>,
        }),
        Box::new(Transform {
            name: "SetExpectedStartTime",
            apply: set_expected_start_time::<C>,
        }),
        Box::new(Transform {
            name: "SetNextScheduledStartTime",
            apply: set_next_scheduled_start_time::<C>,
        }),
    ]
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Builders shared by the policy tests.
    use super::*;
    use chrono::TimeZone;

    pub fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    pub fn secs(n: i64) -> Duration {
        Duration::seconds(n)
    }

    pub fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// A stored state of `state_type` named `name`, stamped `timestamp`.
    pub fn state(state_type: StateType, name: &str, timestamp: DateTime<Utc>) -> State {
        State {
            id: id(0xAAAA),
            state_type,
            name: name.to_string(),
            timestamp,
            message: None,
            data: None,
            state_details: StateDetails::default(),
        }
    }

    pub fn proposal(state_type: StateType) -> ProposedState {
        ProposedState::new(state_type)
    }

    pub fn named(state_type: StateType, name: &str) -> ProposedState {
        ProposedState {
            name: Some(name.to_string()),
            ..ProposedState::new(state_type)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use serde_json::json;

    // ---- serialization ----

    #[test]
    fn details_serialize_with_prefect_type_tags() {
        // given each kind of details / when serialized / then Prefect's shape
        assert_eq!(
            serde_json::to_value(Details::Accept).unwrap(),
            json!({"type": "accept_details"})
        );
        assert_eq!(
            serde_json::to_value(Details::Reject { reason: "r".into() }).unwrap(),
            json!({"type": "reject_details", "reason": "r"})
        );
        assert_eq!(
            serde_json::to_string(&Details::Wait {
                delay_seconds: 3,
                reason: "w".into()
            })
            .unwrap(),
            r#"{"type":"wait_details","delay_seconds":3,"reason":"w"}"#
        );
        assert_eq!(
            serde_json::to_value(Details::Abort { reason: "a".into() }).unwrap(),
            json!({"type": "abort_details", "reason": "a"})
        );
    }

    #[test]
    fn status_serializes_uppercase() {
        assert_eq!(
            serde_json::to_value(Status::Accept).unwrap(),
            json!("ACCEPT")
        );
        assert_eq!(
            serde_json::to_value(Status::Reject).unwrap(),
            json!("REJECT")
        );
        assert_eq!(serde_json::to_value(Status::Wait).unwrap(), json!("WAIT"));
        assert_eq!(serde_json::to_value(Status::Abort).unwrap(), json!("ABORT"));
    }

    #[test]
    fn details_round_trip() {
        let d = Details::Wait {
            delay_seconds: 5,
            reason: "x".into(),
        };
        let back: Details = serde_json::from_value(serde_json::to_value(&d).unwrap()).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn proposed_state_accepts_state_create_fields() {
        // given a full StateCreate body
        let body = json!({
            "type": "RUNNING", "name": "Retrying", "message": "m", "data": {"type": "unpersisted"},
            "state_details": {"transition_id": "00000000-0000-0000-0000-000000000001", "unknown": 1}
        });
        // when parsed
        let p: ProposedState = serde_json::from_value(body).unwrap();
        // then every field is kept and unknown detail keys are ignored
        assert_eq!(p.state_type, StateType::Running);
        assert_eq!(p.name.as_deref(), Some("Retrying"));
        assert_eq!(p.message.as_deref(), Some("m"));
        assert_eq!(p.state_details.transition_id, Some(id(1)));
    }

    #[test]
    fn proposed_state_needs_only_type() {
        let p: ProposedState = serde_json::from_value(json!({"type": "PENDING"})).unwrap();
        assert_eq!(p, ProposedState::new(StateType::Pending));
        let p: ProposedState =
            serde_json::from_value(json!({"type": "PENDING", "name": null, "data": null})).unwrap();
        assert_eq!(p, ProposedState::new(StateType::Pending));
    }

    #[test]
    fn proposed_state_rejects_unknown_keys_like_extra_forbid() {
        for extra in ["timestamp", "id", "bogus"] {
            let mut body = json!({"type": "PENDING"});
            body[extra] = json!("x");
            assert!(
                serde_json::from_value::<ProposedState>(body).is_err(),
                "{extra}"
            );
        }
        assert!(serde_json::from_value::<ProposedState>(json!({"name": "x"})).is_err());
        assert!(serde_json::from_value::<ProposedState>(json!({"type": "NOPE"})).is_err());
    }

    #[test]
    fn into_state_defaults_name_and_schedule() {
        // given a nameless Scheduled proposal / when turned into a state
        let s = proposal(StateType::Scheduled).into_state(id(7), t0());
        // then it is named after its type and scheduled for now
        assert_eq!(s.name, "Scheduled");
        assert_eq!(s.state_details.scheduled_time, Some(t0()));
        assert_eq!((s.id, s.timestamp), (id(7), t0()));
        // and an explicit (even empty) name is kept
        assert_eq!(
            named(StateType::Running, "").into_state(id(1), t0()).name,
            ""
        );
    }

    #[test]
    fn persisted_result_detection_matches_prefect() {
        assert!(is_persisted_result(&Some(json!({"type": "reference"}))));
        assert!(is_persisted_result(&Some(json!({}))));
        assert!(!is_persisted_result(&Some(json!({"type": "unpersisted"}))));
        assert!(!is_persisted_result(&Some(json!("text"))));
        assert!(!is_persisted_result(&None));
        let mut s = state(StateType::Completed, "Completed", t0());
        s.data = Some(json!({}));
        assert!(
            !completed_with_persisted_result(&s),
            "empty dict is falsy in Prefect's guard"
        );
        s.data = Some(json!({"storage_key": "k"}));
        assert!(completed_with_persisted_result(&s));
    }

    #[test]
    fn state_sets() {
        assert!(StateSet::ALL.contains(None));
        assert!(!StateSet::TERMINAL.contains(None));
        assert!(StateSet::TERMINAL.contains(Some(StateType::Crashed)));
        let s = StateSet::ALL.without(StateType::Cancelled);
        assert!(!s.contains(Some(StateType::Cancelled)) && s.contains(Some(StateType::Running)));
    }

    #[test]
    fn wait_seconds_rounds_like_python() {
        let us = Duration::microseconds;
        assert_eq!(wait_seconds(t0() + secs(10) + us(600_000), t0()), 11);
        assert_eq!(wait_seconds(t0() + secs(10) + us(500_000), t0()), 10);
        assert_eq!(wait_seconds(t0() + us(300_000), t0()), 0);
        assert_eq!(wait_seconds(t0() + us(700_000), t0()), 1);
        assert_eq!(wait_seconds(t0() - us(300_000), t0()), 0);
        assert_eq!(wait_seconds(t0() - secs(5), t0()), -5);
    }

    #[test]
    fn seconds_to_duration_rounds_to_microseconds() {
        assert_eq!(seconds_to_duration(1.5), Duration::microseconds(1_500_000));
        assert_eq!(seconds_to_duration(0.0000015), Duration::microseconds(2));
        assert_eq!(seconds_to_duration(f64::NAN), Duration::zero());
    }

    // ---- the engine, exercised with toy rules ----

    struct Toy {
        t: Transition,
        run_count: i64,
        log: Vec<String>,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        total: f64,
        expected: Option<DateTime<Utc>>,
        next: Option<DateTime<Utc>>,
    }

    impl RunContext for Toy {
        fn transition(&self) -> &Transition {
            &self.t
        }
        fn transition_mut(&mut self) -> &mut Transition {
            &mut self.t
        }
        fn run_count(&self) -> i64 {
            self.run_count
        }
        fn clock(&mut self) -> RunClock<'_> {
            RunClock {
                start_time: &mut self.start,
                end_time: &mut self.end,
                total_run_time: &mut self.total,
                expected_start_time: &mut self.expected,
                next_scheduled_start_time: &mut self.next,
            }
        }
    }

    fn toy(initial: Option<State>, proposed: ProposedState) -> Toy {
        Toy {
            t: Transition::new(initial, proposed.into_state(id(9), t0()), t0(), id(9)),
            run_count: 0,
            log: vec![],
            start: None,
            end: None,
            total: 0.0,
            expected: None,
            next: None,
        }
    }

    /// Logs its hooks; optionally intervenes in `before`.
    struct Logger {
        name: &'static str,
        to: StateSet,
        action: Option<Intervention>,
    }

    impl Rule<Toy> for Logger {
        fn name(&self) -> &'static str {
            self.name
        }
        fn governed_to(&self) -> StateSet {
            self.to
        }
        fn before(&mut self, ctx: &mut Toy) -> Option<Intervention> {
            ctx.log.push(format!("{}:before", self.name));
            self.action.take()
        }
        fn after(&mut self, ctx: &mut Toy) {
            ctx.log.push(format!("{}:after", self.name));
        }
        fn cleanup(&mut self, ctx: &mut Toy) {
            ctx.log.push(format!("{}:cleanup", self.name));
        }
    }

    fn logger(
        name: &'static str,
        to: StateSet,
        action: Option<Intervention>,
    ) -> Box<dyn Rule<Toy>> {
        Box::new(Logger { name, to, action })
    }

    fn running() -> Option<State> {
        Some(state(StateType::Running, "Running", t0() - secs(10)))
    }

    #[test]
    fn engine_runs_befores_in_order_and_afters_in_reverse() {
        // given two passive rules / when orchestrated
        let mut ctx = toy(running(), proposal(StateType::Completed));
        orchestrate(
            &mut ctx,
            vec![
                logger("a", StateSet::ALL, None),
                logger("b", StateSet::ALL, None),
            ],
        );
        // then hooks nest like context managers and the proposal is validated
        assert_eq!(ctx.log, ["a:before", "b:before", "b:after", "a:after"]);
        assert_eq!(
            ctx.t.validated.as_ref().unwrap().state_type,
            StateType::Completed
        );
        assert_eq!(ctx.t.status, Status::Accept);
    }

    #[test]
    fn engine_skips_rules_not_matching_the_intended_transition() {
        let mut ctx = toy(running(), proposal(StateType::Completed));
        let only_failed = StateSet::of(&[StateType::Failed]);
        orchestrate(&mut ctx, vec![logger("a", only_failed, None)]);
        assert!(ctx.log.is_empty());
    }

    #[test]
    fn engine_fizzles_earlier_rules_when_a_later_rule_changes_the_type() {
        // given a rule followed by one that rejects into a different type
        let cancelled = ctx_state(StateType::Cancelled);
        let mut ctx = toy(running(), proposal(StateType::Completed));
        orchestrate(
            &mut ctx,
            vec![
                logger("a", StateSet::ALL, None),
                logger(
                    "b",
                    StateSet::ALL,
                    Intervention::reject(Some(cancelled), "no"),
                ),
                logger("c", StateSet::ALL, None),
            ],
        );
        // then the earlier rule cleans up, the rejecting rule still runs its after
        // hook (its TO set contains the new type), and the later rule never fires
        assert_eq!(ctx.log, ["a:before", "b:before", "b:after", "a:cleanup"]);
        assert_eq!(ctx.t.status, Status::Reject);
        assert_eq!(
            ctx.t.validated.as_ref().unwrap().state_type,
            StateType::Cancelled
        );
    }

    #[test]
    fn engine_rule_whose_intervention_leaves_its_to_set_goes_silent() {
        // given a COMPLETED-only rule that aborts / when orchestrated
        let mut ctx = toy(running(), proposal(StateType::Completed));
        let completed = StateSet::of(&[StateType::Completed]);
        orchestrate(
            &mut ctx,
            vec![logger("a", completed, Intervention::abort("stop"))],
        );
        // then it runs neither after nor cleanup, and nothing is validated
        assert_eq!(ctx.log, ["a:before"]);
        assert!(ctx.t.validated.is_none());
        assert_eq!(
            ctx.t.details,
            Details::Abort {
                reason: "stop".into()
            }
        );
    }

    #[test]
    fn engine_universal_transforms_skip_nullified_transitions() {
        // given a wait followed by a bookkeeping transform
        let mut ctx = toy(running(), proposal(StateType::Completed));
        let rules: Vec<Box<dyn Rule<Toy>>> = vec![
            logger("w", StateSet::ALL, Intervention::wait(3, "later")),
            Box::new(Transform {
                name: "t",
                apply: |c: &mut Toy| c.log.push("t".into()),
            }),
        ];
        orchestrate(&mut ctx, rules);
        // then the transform never acts
        assert_eq!(ctx.log, ["w:before", "w:after"]);
        assert_eq!(ctx.t.status, Status::Wait);
    }

    fn ctx_state(state_type: StateType) -> State {
        ProposedState::new(state_type).into_state(id(9), t0())
    }

    // ---- shared rules ----

    #[test]
    fn wait_for_scheduled_time_waits_for_future_schedule() {
        // given a run scheduled 30 s from now
        let mut initial = state(StateType::Scheduled, "Scheduled", t0() - secs(60));
        initial.state_details.scheduled_time = Some(t0() + secs(30));
        let mut ctx = toy(Some(initial), proposal(StateType::Running));
        // when it proposes Running
        orchestrate(&mut ctx, vec![wait_for_scheduled_time()]);
        // then it must wait 30 s and nothing is written
        assert_eq!(
            ctx.t.details,
            Details::Wait {
                delay_seconds: 30,
                reason: "Scheduled time is in the future".into()
            }
        );
        assert!(ctx.t.validated.is_none());
    }

    #[test]
    fn wait_for_scheduled_time_accepts_due_runs() {
        let mut initial = state(StateType::Pending, "Pending", t0() - secs(60));
        initial.state_details.scheduled_time = Some(t0() - secs(1));
        let mut ctx = toy(Some(initial), proposal(StateType::Running));
        orchestrate(&mut ctx, vec![wait_for_scheduled_time()]);
        assert_eq!(ctx.t.status, Status::Accept);
    }

    #[test]
    fn copy_scheduled_time_fills_missing_time_only() {
        let mut initial = state(StateType::Scheduled, "Scheduled", t0());
        initial.state_details.scheduled_time = Some(t0() + secs(5));
        // given no proposed time / then the initial one is copied
        let mut ctx = toy(Some(initial.clone()), proposal(StateType::Pending));
        orchestrate(&mut ctx, vec![copy_scheduled_time()]);
        assert_eq!(
            ctx.t.validated.unwrap().state_details.scheduled_time,
            Some(t0() + secs(5))
        );
        // given a proposed time / then it wins
        let mut p = proposal(StateType::Pending);
        p.state_details.scheduled_time = Some(t0() + secs(9));
        let mut ctx = toy(Some(initial), p);
        orchestrate(&mut ctx, vec![copy_scheduled_time()]);
        assert_eq!(
            ctx.t.validated.unwrap().state_details.scheduled_time,
            Some(t0() + secs(9))
        );
    }

    #[test]
    fn prevent_pending_aborts_second_claim() {
        for from in [
            StateType::Pending,
            StateType::Running,
            StateType::Cancelling,
            StateType::Cancelled,
        ] {
            let mut ctx = toy(
                Some(state(from, from.default_name(), t0())),
                proposal(StateType::Pending),
            );
            orchestrate(&mut ctx, vec![prevent_pending_transitions()]);
            assert_eq!(
                ctx.t.details,
                Details::Abort {
                    reason: format!(
                        "This run is in a {} state and cannot transition to a PENDING state.",
                        from.as_str()
                    )
                }
            );
        }
    }

    #[test]
    fn prevent_pending_allows_named_sub_states_and_carries_details() {
        // given a Pending run holding a schedule and a lease
        let mut initial = state(StateType::Pending, "Pending", t0());
        initial.state_details.scheduled_time = Some(t0() - secs(3));
        initial.state_details.deployment_concurrency_lease_id = Some(id(42));
        // when a worker proposes Pending("Submitting")
        let mut ctx = toy(
            Some(initial.clone()),
            named(StateType::Pending, "Submitting"),
        );
        orchestrate(&mut ctx, vec![prevent_pending_transitions()]);
        // then it is accepted with the details carried forward
        let v = ctx.t.validated.unwrap();
        assert_eq!(ctx.t.status, Status::Accept);
        assert_eq!(v.state_details.scheduled_time, Some(t0() - secs(3)));
        assert_eq!(
            v.state_details.deployment_concurrency_lease_id,
            Some(id(42))
        );
        // but re-proposing the same name aborts
        let mut ctx = toy(Some(initial), named(StateType::Pending, "Pending"));
        orchestrate(&mut ctx, vec![prevent_pending_transitions()]);
        assert_eq!(ctx.t.status, Status::Abort);
    }

    #[test]
    fn prevent_pending_ignores_other_origins() {
        let mut ctx = toy(
            Some(state(StateType::Scheduled, "Scheduled", t0())),
            proposal(StateType::Pending),
        );
        orchestrate(&mut ctx, vec![prevent_pending_transitions()]);
        assert_eq!(ctx.t.status, Status::Accept);
    }

    #[test]
    fn rename_reruns_names_by_origin() {
        for (initial_name, expect) in [("AwaitingRetry", "Retrying"), ("Scheduled", "Rerunning")] {
            let mut ctx = toy(
                Some(state(StateType::Scheduled, initial_name, t0())),
                proposal(StateType::Running),
            );
            ctx.run_count = 1;
            orchestrate(&mut ctx, vec![rename_reruns()]);
            assert_eq!(ctx.t.validated.unwrap().name, expect);
        }
        // first attempts keep their name
        let mut ctx = toy(
            Some(state(StateType::Pending, "Pending", t0())),
            proposal(StateType::Running),
        );
        orchestrate(&mut ctx, vec![rename_reruns()]);
        assert_eq!(ctx.t.validated.unwrap().name, "Running");
    }

    #[test]
    fn clock_transforms_track_start_end_and_run_time() {
        // given a run that has been running for 10 s / when it completes
        let mut ctx = toy(running(), proposal(StateType::Completed));
        ctx.start = Some(t0() - secs(10));
        orchestrate(&mut ctx, common_clock_transforms());
        // then end time is stamped, run time accrues, expected start is filled
        assert_eq!(ctx.end, Some(t0()));
        assert_eq!(ctx.start, Some(t0() - secs(10)));
        assert_eq!(ctx.total, 10.0);
        assert_eq!(ctx.expected, Some(t0()));
    }

    #[test]
    fn clock_transforms_set_start_on_first_running_only() {
        let mut ctx = toy(
            Some(state(StateType::Pending, "Pending", t0())),
            proposal(StateType::Running),
        );
        orchestrate(&mut ctx, common_clock_transforms());
        assert_eq!(ctx.start, Some(t0()));
        let mut ctx = toy(
            Some(state(StateType::Pending, "Pending", t0())),
            proposal(StateType::Running),
        );
        ctx.start = Some(t0() - secs(99));
        orchestrate(&mut ctx, common_clock_transforms());
        assert_eq!(ctx.start, Some(t0() - secs(99)));
    }

    #[test]
    fn clock_transforms_start_runs_that_end_without_running() {
        let mut ctx = toy(
            Some(state(StateType::Scheduled, "Scheduled", t0())),
            proposal(StateType::Cancelled),
        );
        orchestrate(&mut ctx, common_clock_transforms());
        assert_eq!((ctx.start, ctx.end), (Some(t0()), Some(t0())));
        assert_eq!(ctx.total, 0.0);
    }

    #[test]
    fn clock_transforms_clear_end_time_when_leaving_final() {
        let mut ctx = toy(
            Some(state(StateType::Failed, "Failed", t0() - secs(5))),
            proposal(StateType::Scheduled),
        );
        ctx.end = Some(t0() - secs(5));
        ctx.expected = Some(t0() - secs(50));
        orchestrate(&mut ctx, common_clock_transforms());
        assert_eq!(ctx.end, None);
        assert_eq!(ctx.next, Some(t0()), "scheduled for now by default");
        assert_eq!(
            ctx.expected,
            Some(t0() - secs(50)),
            "expected start is set only once"
        );
    }

    #[test]
    fn clock_transforms_track_next_scheduled_start() {
        // given a scheduled run / when it becomes Pending / then no schedule is pending
        let mut initial = state(StateType::Scheduled, "Scheduled", t0());
        initial.state_details.scheduled_time = Some(t0());
        let mut ctx = toy(Some(initial), proposal(StateType::Pending));
        ctx.next = Some(t0());
        orchestrate(&mut ctx, common_clock_transforms());
        assert_eq!(ctx.next, None);
        // given a first Scheduled state / then expected start is its schedule
        let mut p = proposal(StateType::Scheduled);
        p.state_details.scheduled_time = Some(t0() + secs(60));
        let mut ctx = toy(None, p);
        orchestrate(&mut ctx, common_clock_transforms());
        assert_eq!(
            (ctx.next, ctx.expected),
            (Some(t0() + secs(60)), Some(t0() + secs(60)))
        );
    }
}
