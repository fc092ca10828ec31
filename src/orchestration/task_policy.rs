//! Task-run state orchestration: Prefect's `CoreTaskPolicy` (task
//! `set_state`), `BackgroundTaskPolicy` (deferred tasks), `MinimalTaskPolicy`
//! (`force=true`) and the `GlobalTaskPolicy` bookkeeping, as one pure function.
//!
//! Facts about other objects are looked up by the caller and passed in: the
//! parent flow run ([`ParentFlowRun`]) and the cached state for the proposal's
//! cache key. The caller persists `run` whenever it differs from the input and
//! records `cache_insert` in the task-run state cache.
//!
//! Out of scope (need other objects or side effects; the caller owns them):
//! tag concurrency (`SecureTaskConcurrencySlots`, `ReleaseTaskConcurrencySlots`)
//! and pushing deferred Scheduled task runs onto the task queue
//! (`EnqueueScheduledTasks`: after a SCHEDULED state with `deferred` is
//! written, "AwaitingRetry" goes to the retry queue, anything else is enqueued).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::orchestration::outcome::{
    common_clock_transforms, completed_with_persisted_result, copy_scheduled_time, orchestrate,
    prevent_pending_transitions, rename_reruns, seconds_to_duration, wait_for_scheduled_time,
    Details, Intervention, ProposedState, Rule, RunClock, RunContext, SimpleRule, StateSet, Status,
    Transform, Transition,
};
use crate::orchestration::states::{State, StateType, TaskRunPolicy};

/// Longest cache key the server accepts
/// (`PREFECT_SERVER_TASKS_MAX_CACHE_KEY_LENGTH` default).
pub const MAX_CACHE_KEY_LENGTH: usize = 2000;

/// The task-run fields orchestration reads and maintains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRunSnapshot {
    pub id: Uuid,
    pub flow_run_id: Option<Uuid>,
    pub state: Option<State>,
    pub empirical_policy: TaskRunPolicy,
    pub run_count: i64,
    /// The flow run's `run_count` when this task last entered RUNNING.
    pub flow_run_run_count: i64,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub total_run_time: f64,
    pub expected_start_time: Option<DateTime<Utc>>,
    pub next_scheduled_start_time: Option<DateTime<Utc>>,
}

/// What task rules need to know about the task's flow run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParentFlowRun {
    pub state_type: Option<StateType>,
    pub state_name: Option<String>,
    pub run_count: i64,
    /// `state_details.pause_timeout` of the flow run's current state.
    pub pause_timeout: Option<DateTime<Utc>>,
    /// `state_details.pause_reschedule` of the flow run's current state
    /// (carried onto the "NotReady" Paused state of tasks of a paused flow).
    pub pause_reschedule: bool,
}

/// Everything one task-run `set_state` decision depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskTransitionInput {
    pub run: TaskRunSnapshot,
    pub proposed: ProposedState,
    /// `true` selects `MinimalTaskPolicy` (ignored for deferred proposals,
    /// which always use `BackgroundTaskPolicy`, as in Prefect).
    pub force: bool,
    pub now: DateTime<Utc>,
    /// Id for any state this decision writes.
    pub new_state_id: Uuid,
    /// The task's flow run; `None` when the task has no flow run.
    pub parent_flow_run: Option<ParentFlowRun>,
    /// The newest unexpired cached state for `proposed.state_details.cache_key`
    /// (only consulted for RUNNING proposals with a key and no `refresh_cache`).
    pub cached_state: Option<State>,
    /// A uniform sample in [0, 1) standing in for Prefect's `random.random()`
    /// in the retry jitter.
    pub jitter_sample: f64,
}

/// The decision for one task-run `set_state`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskTransitionOutcome {
    pub status: Status,
    pub details: Details,
    /// The state row to persist; `None` when nothing is written.
    pub written: Option<State>,
    /// The run after bookkeeping, with `state` set to `written` when written.
    pub run: TaskRunSnapshot,
    /// The state for the response body: the written state, else the current one.
    pub returned_state: Option<State>,
    /// `(cache_key, cache_expiration)` to record for the written state's id.
    pub cache_insert: Option<(String, Option<DateTime<Utc>>)>,
}

/// Orchestrates a proposed task-run state transition.
pub fn decide_task_transition(input: TaskTransitionInput) -> TaskTransitionOutcome {
    decide_with_signature(input).0
}

/// [`decide_task_transition`] plus the names of the rules that fired, in order.
pub(crate) fn decide_with_signature(
    input: TaskTransitionInput,
) -> (TaskTransitionOutcome, Vec<&'static str>) {
    let TaskTransitionInput {
        run,
        proposed,
        force,
        now,
        new_state_id,
        parent_flow_run,
        cached_state,
        jitter_sample,
    } = input;
    let deferred = proposed.state_details.deferred == Some(true);
    let proposed = proposed.into_state(new_state_id, now);
    let mut ctx = TaskCtx {
        t: Transition::new(run.state.clone(), proposed, now, new_state_id),
        run,
        parent_flow_run,
        cached_state,
        jitter_sample,
        cache_insert: None,
    };
    let mut rules = if deferred {
        background_task_policy()
    } else if force {
        minimal_task_policy()
    } else {
        core_task_policy()
    };
    rules.extend(global_task_policy());
    let signature = orchestrate(&mut ctx, rules);

    let TaskCtx {
        t,
        mut run,
        cache_insert,
        ..
    } = ctx;
    let written = t.validated;
    if let Some(state) = &written {
        // SetRunStateType / SetRunStateName / SetRunStateTimestamp
        run.state = Some(state.clone());
    }
    let returned_state = written.clone().or_else(|| run.state.clone());
    let outcome = TaskTransitionOutcome {
        status: t.status,
        details: t.details,
        written,
        run,
        returned_state,
        cache_insert,
    };
    (outcome, signature)
}

/// The state the server force-sets on a subflow's parent task run when the
/// child flow run transitions (UpdateSubflowParentTask): a copy of the child
/// state with a new id and child_flow_run_id set.
///
/// The copy keeps the child's timestamp (Prefect stamps it a moment later).
/// To apply the parent task run's bookkeeping, feed it through
/// [`decide_task_transition`] with `force: true`,
/// `proposed: ProposedState::from_state(&state)`, `new_state_id: state.id` and
/// `now: state.timestamp`; that also stamps the parent's `flow_run_id`.
pub fn subflow_parent_task_state(
    child_state: &State,
    child_flow_run_id: Uuid,
    parent_task_run_id: Uuid,
    new_state_id: Uuid,
) -> State {
    let mut state = child_state.clone();
    state.id = new_state_id;
    state.state_details.child_flow_run_id = Some(child_flow_run_id);
    state.state_details.task_run_id = Some(parent_task_run_id);
    state
}

/// The orchestration context for a task run.
pub(crate) struct TaskCtx {
    t: Transition,
    run: TaskRunSnapshot,
    parent_flow_run: Option<ParentFlowRun>,
    cached_state: Option<State>,
    jitter_sample: f64,
    cache_insert: Option<(String, Option<DateTime<Utc>>)>,
}

impl RunContext for TaskCtx {
    fn transition(&self) -> &Transition {
        &self.t
    }
    fn transition_mut(&mut self) -> &mut Transition {
        &mut self.t
    }
    fn run_count(&self) -> i64 {
        self.run.run_count
    }
    fn clock(&mut self) -> RunClock<'_> {
        RunClock {
            start_time: &mut self.run.start_time,
            end_time: &mut self.run.end_time,
            total_run_time: &mut self.run.total_run_time,
            expected_start_time: &mut self.run.expected_start_time,
            next_scheduled_start_time: &mut self.run.next_scheduled_start_time,
        }
    }
}

type TaskRule = Box<dyn Rule<TaskCtx>>;

fn states(types: &[StateType]) -> StateSet {
    StateSet::of(types)
}

/// `CoreTaskPolicy`, in Prefect's order.
fn core_task_policy() -> Vec<TaskRule> {
    vec![
        cache_retrieval(),
        Box::new(HandleTaskTerminalStateTransitions::default()),
        prevent_running_tasks_from_stopped_flows(),
        // SecureTaskConcurrencySlots: tag concurrency, out of scope.
        copy_scheduled_time(),
        wait_for_scheduled_time(),
        retry_failed_tasks(),
        rename_reruns(),
        Box::new(UpdateFlowRunTrackerOnTasks),
        Box::new(CacheInsertion),
        // ReleaseTaskConcurrencySlots: tag concurrency, out of scope.
    ]
}

/// `BackgroundTaskPolicy`, for deferred task runs driven by task workers.
fn background_task_policy() -> Vec<TaskRule> {
    vec![
        prevent_pending_transitions(),
        cache_retrieval(),
        Box::new(HandleTaskTerminalStateTransitions::default()),
        copy_scheduled_time(),
        copy_task_parameters_id(),
        wait_for_scheduled_time(),
        retry_failed_tasks(),
        rename_reruns(),
        Box::new(UpdateFlowRunTrackerOnTasks),
        Box::new(CacheInsertion),
        // ReleaseTaskConcurrencySlots: tag concurrency, out of scope.
        // EnqueueScheduledTasks: the caller pushes written deferred SCHEDULED runs onto the task queue.
    ]
}

/// `MinimalTaskPolicy` (force): only concurrency release, which is out of
/// scope, so only the global bookkeeping applies.
fn minimal_task_policy() -> Vec<TaskRule> {
    Vec::new()
}

/// `GlobalTaskPolicy`: bookkeeping applied to every written task state.
fn global_task_policy() -> Vec<TaskRule> {
    let mut rules = common_clock_transforms();
    rules.push(Box::new(Transform {
        name: "UpdateStateDetails",
        apply: update_state_details,
    }));
    rules.push(Box::new(Transform {
        name: "IncrementTaskRunCount",
        apply: increment_task_run_count,
    }));
    rules
}

// ---------------------------------------------------------------------------
// Core rules
// ---------------------------------------------------------------------------

/// CacheRetrieval: a task about to run whose cache key already has an
/// unexpired Completed state is given a fresh "Cached" copy of that state
/// instead, so it does not run again.
fn cache_retrieval() -> TaskRule {
    Box::new(SimpleRule {
        name: "CacheRetrieval",
        from: StateSet::ALL,
        to: states(&[StateType::Running]),
        before: |ctx: &mut TaskCtx| {
            let details = &ctx.t.proposed.as_ref()?.state_details;
            let has_key = details.cache_key.as_deref().is_some_and(|k| !k.is_empty());
            if !has_key || details.refresh_cache == Some(true) {
                return None;
            }
            let cached = ctx.cached_state.as_ref()?;
            if cached
                .state_details
                .cache_expiration
                .is_some_and(|exp| exp <= ctx.t.now)
            {
                return None;
            }
            let mut fresh = cached.clone();
            fresh.id = ctx.t.new_state_id;
            fresh.timestamp = ctx.t.now;
            fresh.name = "Cached".to_string();
            Intervention::reject(Some(fresh), "Retrieved state from cache")
        },
    })
}

/// HandleTaskTerminalStateTransitions: a finished task may be re-run (e.g. by
/// a flow retry) but not crashed, paused or cancelled after the fact, nor
/// re-run over a persisted result. Re-running resets `run_count` so task
/// retries start over (reverted if a later rule changes the transition), and a
/// re-run caused by a flow retry is named "Retrying".
#[derive(Default)]
struct HandleTaskTerminalStateTransitions {
    original_run_count: Option<i64>,
}

impl Rule<TaskCtx> for HandleTaskTerminalStateTransitions {
    fn name(&self) -> &'static str {
        "HandleTaskTerminalStateTransitions"
    }
    fn governed_from(&self) -> StateSet {
        StateSet::TERMINAL
    }
    fn before(&mut self, ctx: &mut TaskCtx) -> Option<Intervention> {
        let initial = ctx.t.initial.as_ref()?;
        let to = ctx.t.proposed.as_ref()?.state_type;
        self.original_run_count = Some(ctx.run.run_count);

        if matches!(
            to,
            StateType::Cancelling | StateType::Paused | StateType::Crashed
        ) {
            return Intervention::abort(format!("Run is already {}.", initial.state_type.as_str()));
        }
        if completed_with_persisted_result(initial) {
            return Intervention::reject(None, "This run is already completed.");
        }
        if !to.is_final() {
            ctx.run.run_count = 0;
        }
        if to == StateType::Running && ctx.run.flow_run_id.is_some() {
            let flow_retrying = ctx
                .parent_flow_run
                .as_ref()
                .is_some_and(|flow| ctx.run.flow_run_run_count < flow.run_count);
            if flow_retrying {
                ctx.t.rename("Retrying");
            }
        }
        None
    }
    fn cleanup(&mut self, ctx: &mut TaskCtx) {
        if let Some(run_count) = self.original_run_count.take() {
            ctx.run.run_count = run_count;
        }
    }
}

/// PreventRunningTasksFromStoppedFlows: tasks only run inside a running flow.
/// Tasks of a paused flow get a "NotReady" Paused state carrying the flow's
/// pause deadline; any other flow state aborts the task.
fn prevent_running_tasks_from_stopped_flows() -> TaskRule {
    Box::new(SimpleRule {
        name: "PreventRunningTasksFromStoppedFlows",
        from: StateSet::ALL,
        to: states(&[StateType::Running]),
        before: |ctx: &mut TaskCtx| {
            let flow = ctx.parent_flow_run.as_ref()?;
            match flow.state_type {
                Some(StateType::Running) => None,
                Some(StateType::Paused) => {
                    let mut paused = ctx.t.new_state(StateType::Paused, Some("NotReady"));
                    paused.state_details.pause_timeout = flow.pause_timeout;
                    paused.state_details.pause_reschedule = flow.pause_reschedule;
                    let flow_run_id = ctx
                        .run
                        .flow_run_id
                        .map(|id| id.to_string())
                        .unwrap_or_default();
                    Intervention::reject(
                        Some(paused),
                        format!("The flow is paused, new tasks can execute after resuming flow run: {flow_run_id}."),
                    )
                }
                _ => Intervention::abort(
                    "The enclosing flow must be running to begin task execution.",
                ),
            }
        },
    })
}

/// CopyTaskParametersID (deferred tasks): the stored parameters of a
/// background task follow it from Scheduled to Pending to Running.
fn copy_task_parameters_id() -> TaskRule {
    Box::new(SimpleRule {
        name: "CopyTaskParametersID",
        from: states(&[StateType::Scheduled, StateType::Pending]),
        to: states(&[StateType::Pending, StateType::Running]),
        before: |ctx: &mut TaskCtx| {
            let t = &mut ctx.t;
            let parameters_id = t.initial.as_ref()?.state_details.task_parameters_id;
            let proposed = t.proposed.as_mut()?;
            if proposed.state_details.task_parameters_id.is_none() {
                proposed.state_details.task_parameters_id = parameters_id;
            }
            None
        },
    })
}

/// The configured delay before retry number `run_count`: a list is indexed by
/// attempt (its last value repeating; Python indexing, so attempt 0 uses the
/// last value), a number applies to every retry.
fn base_retry_delay(retry_delay: &Option<Value>, run_count: i64) -> f64 {
    match retry_delay {
        Some(Value::Array(list)) if !list.is_empty() => {
            let len = list.len() as i64;
            let mut index = (run_count - 1).min(len - 1);
            if index < 0 {
                index += len;
            }
            usize::try_from(index)
                .ok()
                .and_then(|i| list[i].as_f64())
                .unwrap_or(0.0)
        }
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// Prefect's `clamped_poisson_interval` with its `random.random()` draw
/// replaced by `sample`: an exponential inter-arrival time around
/// `average_interval`, confined to `[c·avg, (1+clamping_factor)·avg]` where the
/// lower multiple `c` balances the mass around the median. `sample` 0 gives
/// the lower bound, values towards 1 the upper bound.
pub fn clamped_poisson_interval(average_interval: f64, clamping_factor: f64, sample: f64) -> f64 {
    if average_interval <= 0.0 {
        return 0.0;
    }
    let upper_multiple = 1.0 + clamping_factor;
    let upper_bound = average_interval * upper_multiple;
    let lower_bound = (average_interval * lower_clamp_multiple(upper_multiple)).max(0.0);
    let upper_rv = exponential_cdf(upper_bound, average_interval);
    let lower_rv = exponential_cdf(lower_bound, average_interval);
    // random.uniform(a, b) == a + (b - a) * random.random()
    let u = lower_rv + (upper_rv - lower_rv) * sample.clamp(0.0, 1.0);
    -(1.0 - u).max(1e-10).ln() * average_interval
}

fn exponential_cdf(x: f64, average_interval: f64) -> f64 {
    1.0 - (-x / average_interval).exp()
}

fn lower_clamp_multiple(k: f64) -> f64 {
    if k >= 50.0 {
        return 0.0;
    }
    let p = k.exp2();
    (p / (p - 1.0)).max(1e-10).log2()
}

/// RetryFailedTasks: a failing task with retries left (and not marked
/// non-retriable by the client's retry condition) is rescheduled as
/// AwaitingRetry after its delay, jittered when `retry_jitter_factor` is set.
fn retry_failed_tasks() -> TaskRule {
    Box::new(SimpleRule {
        name: "RetryFailedTasks",
        from: states(&[StateType::Running]),
        to: states(&[StateType::Failed]),
        before: |ctx: &mut TaskCtx| {
            ctx.t.initial.as_ref()?;
            let proposed = ctx.t.proposed.as_ref()?;
            let policy = &ctx.run.empirical_policy;
            let run_count = ctx.run.run_count;
            if proposed.state_details.retriable == Some(false) {
                return None;
            }
            if policy.retries.is_none_or(|retries| run_count > retries) {
                return None;
            }
            let base_delay = base_retry_delay(&policy.retry_delay, run_count);
            let delay = match policy.retry_jitter_factor {
                Some(jitter) if jitter > 0.0 && base_delay > 0.0 => {
                    clamped_poisson_interval(base_delay, jitter, ctx.jitter_sample)
                }
                _ => base_delay,
            };
            let mut retry = ctx.t.new_state(StateType::Scheduled, Some("AwaitingRetry"));
            retry.state_details.scheduled_time = Some(ctx.t.now + seconds_to_duration(delay));
            retry.message = proposed.message.clone();
            retry.data = proposed.data.clone();
            Intervention::reject(Some(retry), "Retrying")
        },
    })
}

/// UpdateFlowRunTrackerOnTasks: remembers which flow attempt the task last
/// ran in, so a later flow retry can be recognised (see the "Retrying" rename).
struct UpdateFlowRunTrackerOnTasks;

impl Rule<TaskCtx> for UpdateFlowRunTrackerOnTasks {
    fn name(&self) -> &'static str {
        "UpdateFlowRunTrackerOnTasks"
    }
    fn governed_to(&self) -> StateSet {
        states(&[StateType::Running])
    }
    fn after(&mut self, ctx: &mut TaskCtx) {
        if let (Some(_), Some(flow)) = (ctx.run.flow_run_id, ctx.parent_flow_run.as_ref()) {
            ctx.run.flow_run_run_count = flow.run_count;
        }
    }
}

/// CacheInsertion: a Completed state with a cache key is recorded in the cache
/// after it is written. An over-long key is "rejected" with the proposal
/// itself, which Prefect still writes and caches; kept for fidelity.
struct CacheInsertion;

impl Rule<TaskCtx> for CacheInsertion {
    fn name(&self) -> &'static str {
        "CacheInsertion"
    }
    fn governed_to(&self) -> StateSet {
        states(&[StateType::Completed])
    }
    fn before(&mut self, ctx: &mut TaskCtx) -> Option<Intervention> {
        let proposed = ctx.t.proposed.as_ref()?;
        let too_long = proposed
            .state_details
            .cache_key
            .as_ref()
            .is_some_and(|key| key.chars().count() > MAX_CACHE_KEY_LENGTH);
        if too_long {
            return Intervention::reject(
                Some(proposed.clone()),
                format!("Cache key exceeded maximum allowed length of {MAX_CACHE_KEY_LENGTH} characters."),
            );
        }
        None
    }
    fn after(&mut self, ctx: &mut TaskCtx) {
        let Some(validated) = ctx.t.validated.as_ref() else {
            return;
        };
        if let Some(key) = validated
            .state_details
            .cache_key
            .as_ref()
            .filter(|k| !k.is_empty())
        {
            ctx.cache_insert = Some((key.clone(), validated.state_details.cache_expiration));
        }
    }
}

// ---------------------------------------------------------------------------
// Global bookkeeping specific to task runs
// ---------------------------------------------------------------------------

/// UpdateStateDetails: a task state names its task run and that run's flow
/// run (overwriting whatever the client sent).
fn update_state_details(ctx: &mut TaskCtx) {
    if let Some(p) = ctx.t.proposed.as_mut() {
        p.state_details.flow_run_id = ctx.run.flow_run_id;
        p.state_details.task_run_id = Some(ctx.run.id);
    }
}

/// IncrementTaskRunCount: each entry into RUNNING is an attempt.
fn increment_task_run_count(ctx: &mut TaskCtx) {
    if ctx
        .t
        .proposed
        .as_ref()
        .is_some_and(|p| p.state_type == StateType::Running)
    {
        ctx.run.run_count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestration::outcome::test_support::*;
    use chrono::Duration;
    use serde_json::json;

    const TASK: u128 = 0x7A5;
    const FLOW: u128 = 0xF10;
    const NEW: u128 = 0x5EED;

    fn run_in(state: Option<State>) -> TaskRunSnapshot {
        TaskRunSnapshot {
            id: id(TASK),
            flow_run_id: Some(id(FLOW)),
            state,
            empirical_policy: TaskRunPolicy::default(),
            run_count: 0,
            flow_run_run_count: 0,
            start_time: None,
            end_time: None,
            total_run_time: 0.0,
            expected_start_time: None,
            next_scheduled_start_time: None,
        }
    }

    fn run_at(state_type: StateType) -> TaskRunSnapshot {
        run_in(Some(state(
            state_type,
            state_type.default_name(),
            t0() - secs(10),
        )))
    }

    fn flow_in(state_type: Option<StateType>, run_count: i64) -> Option<ParentFlowRun> {
        Some(ParentFlowRun {
            state_type,
            state_name: state_type.map(|t| t.default_name().to_string()),
            run_count,
            pause_timeout: None,
            pause_reschedule: false,
        })
    }

    fn input(run: TaskRunSnapshot, proposed: ProposedState) -> TaskTransitionInput {
        TaskTransitionInput {
            run,
            proposed,
            force: false,
            now: t0(),
            new_state_id: id(NEW),
            parent_flow_run: flow_in(Some(StateType::Running), 1),
            cached_state: None,
            jitter_sample: 0.5,
        }
    }

    fn decide(run: TaskRunSnapshot, proposed: ProposedState) -> TaskTransitionOutcome {
        decide_task_transition(input(run, proposed))
    }

    fn written(out: &TaskTransitionOutcome) -> &State {
        out.written.as_ref().expect("a state is written")
    }

    fn reject(reason: &str) -> Details {
        Details::Reject {
            reason: reason.into(),
        }
    }

    fn abort(reason: &str) -> Details {
        Details::Abort {
            reason: reason.into(),
        }
    }

    fn deferred(state_type: StateType) -> ProposedState {
        let mut p = proposal(state_type);
        p.state_details.deferred = Some(true);
        p
    }

    // ---- accept path and bookkeeping ----

    #[test]
    fn accepts_pending_to_running_and_does_bookkeeping() {
        // given a Pending task in a running flow on its first attempt
        let out = decide(run_at(StateType::Pending), proposal(StateType::Running));
        // then Running is written, stamped with both run ids
        assert_eq!(
            (out.status, &out.details),
            (Status::Accept, &Details::Accept)
        );
        let s = written(&out);
        assert_eq!(
            (s.id, s.timestamp, s.name.as_str()),
            (id(NEW), t0(), "Running")
        );
        assert_eq!(s.state_details.task_run_id, Some(id(TASK)));
        assert_eq!(s.state_details.flow_run_id, Some(id(FLOW)));
        // and the run counts the attempt and tracks the flow attempt
        assert_eq!(out.run.run_count, 1);
        assert_eq!(out.run.flow_run_run_count, 1);
        assert_eq!(out.run.start_time, Some(t0()));
        assert_eq!(out.run.state.as_ref(), Some(s));
        assert_eq!(out.returned_state.as_ref(), Some(s));
        assert_eq!(out.cache_insert, None);
    }

    #[test]
    fn update_state_details_overwrites_client_ids() {
        let mut run = run_at(StateType::Running);
        run.flow_run_id = None;
        let mut p = proposal(StateType::Completed);
        p.state_details.flow_run_id = Some(id(1));
        p.state_details.task_run_id = Some(id(2));
        let out = decide_task_transition(TaskTransitionInput {
            parent_flow_run: None,
            ..input(run, p)
        });
        assert_eq!(written(&out).state_details.flow_run_id, None);
        assert_eq!(written(&out).state_details.task_run_id, Some(id(TASK)));
    }

    #[test]
    fn completing_records_end_and_run_time() {
        let mut run = run_at(StateType::Running);
        run.start_time = Some(t0() - secs(10));
        let out = decide(run, proposal(StateType::Completed));
        assert_eq!(out.run.end_time, Some(t0()));
        assert_eq!(out.run.total_run_time, 10.0);
    }

    #[test]
    fn task_timestamps_are_not_bumped() {
        // given a current state stamped now (GlobalTaskPolicy has no uniqueness transform)
        let run = run_in(Some(state(StateType::Pending, "Pending", t0())));
        let out = decide(run, proposal(StateType::Running));
        assert_eq!(written(&out).timestamp, t0());
    }

    #[test]
    fn forced_transitions_only_do_bookkeeping() {
        // given a completed task with a persisted result / when forced to Running
        let mut run = run_at(StateType::Completed);
        run.state.as_mut().unwrap().data = Some(json!({"storage_key": "k"}));
        run.run_count = 1;
        let out = decide_task_transition(TaskTransitionInput {
            force: true,
            parent_flow_run: flow_in(Some(StateType::Paused), 1),
            ..input(run, proposal(StateType::Running))
        });
        // then no rule interferes
        assert_eq!(out.status, Status::Accept);
        assert_eq!(out.run.run_count, 2);
        assert_eq!(out.run.flow_run_run_count, 0, "tracker is a core rule");
    }

    #[test]
    fn task_without_state_gets_its_first_state() {
        let out = decide_task_transition(TaskTransitionInput {
            force: true,
            ..input(run_in(None), proposal(StateType::Pending))
        });
        assert_eq!(out.status, Status::Accept);
        assert_eq!(out.run.expected_start_time, Some(t0()));
    }

    // ---- CacheRetrieval ----

    fn cached_completed() -> State {
        let mut s = state(StateType::Completed, "Completed", t0() - secs(3600));
        s.id = id(0xCAC4E);
        s.data = Some(json!({"storage_key": "r"}));
        s.message = Some("done".into());
        s.state_details.cache_key = Some("key".into());
        s.state_details.task_run_id = Some(id(0x0_74E4));
        s
    }

    fn running_with_key(key: &str) -> ProposedState {
        let mut p = proposal(StateType::Running);
        p.state_details.cache_key = Some(key.into());
        p
    }

    #[test]
    fn cached_state_replaces_running() {
        // given a cached Completed state for the key
        let run = run_at(StateType::Pending);
        // when the task proposes Running with that key
        let out = decide_task_transition(TaskTransitionInput {
            cached_state: Some(cached_completed()),
            ..input(run, running_with_key("key"))
        });
        // then it gets a fresh "Cached" copy instead, stamped for this run
        assert_eq!(out.details, reject("Retrieved state from cache"));
        let s = written(&out);
        assert_eq!(
            (s.state_type, s.name.as_str(), s.id, s.timestamp),
            (StateType::Completed, "Cached", id(NEW), t0())
        );
        assert_eq!(s.data, Some(json!({"storage_key": "r"})));
        assert_eq!(s.message.as_deref(), Some("done"));
        assert_eq!(s.state_details.task_run_id, Some(id(TASK)));
        // and the run finished without an attempt; the cache is not re-inserted
        assert_eq!(out.run.run_count, 0);
        assert_eq!(out.run.end_time, Some(t0()));
        assert_eq!(out.cache_insert, None);
    }

    #[test]
    fn refresh_cache_or_missing_entry_runs_normally() {
        let mut p = running_with_key("key");
        p.state_details.refresh_cache = Some(true);
        let out = decide_task_transition(TaskTransitionInput {
            cached_state: Some(cached_completed()),
            ..input(run_at(StateType::Pending), p)
        });
        assert_eq!(written(&out).name, "Running");
        let out = decide(run_at(StateType::Pending), running_with_key("key"));
        assert_eq!(written(&out).name, "Running");
    }

    #[test]
    fn expired_cache_entry_is_ignored() {
        let mut cached = cached_completed();
        cached.state_details.cache_expiration = Some(t0() - secs(1));
        let out = decide_task_transition(TaskTransitionInput {
            cached_state: Some(cached),
            ..input(run_at(StateType::Pending), running_with_key("key"))
        });
        assert_eq!(out.status, Status::Accept);
    }

    #[test]
    fn cache_is_consulted_before_the_flow_state() {
        // given a paused flow / when a cached task proposes Running / then cache wins
        let out = decide_task_transition(TaskTransitionInput {
            cached_state: Some(cached_completed()),
            parent_flow_run: flow_in(Some(StateType::Paused), 1),
            ..input(run_at(StateType::Pending), running_with_key("key"))
        });
        assert_eq!(written(&out).name, "Cached");
    }

    // ---- HandleTaskTerminalStateTransitions ----

    #[test]
    fn terminal_tasks_cannot_crash_pause_or_start_cancelling() {
        for to in [StateType::Crashed, StateType::Paused, StateType::Cancelling] {
            let run = run_at(StateType::Completed);
            let out = decide(run.clone(), proposal(to));
            assert_eq!(out.details, abort("Run is already COMPLETED."), "{to:?}");
            assert!(out.written.is_none());
            assert_eq!(out.returned_state, run.state);
        }
    }

    #[test]
    fn completed_task_with_persisted_result_is_not_rerun() {
        let mut run = run_at(StateType::Completed);
        run.state.as_mut().unwrap().data = Some(json!({"storage_key": "k"}));
        let out = decide(run.clone(), proposal(StateType::Running));
        assert_eq!(out.details, reject("This run is already completed."));
        assert_eq!(out.run, run);
    }

    #[test]
    fn rerunning_a_failed_task_resets_its_retries() {
        // given a failed task that used 3 attempts
        let mut run = run_at(StateType::Failed);
        run.run_count = 3;
        run.flow_run_run_count = 1;
        // when it runs again in the same flow attempt / then count restarts at 1
        let out = decide(run, proposal(StateType::Running));
        assert_eq!(out.run.run_count, 1);
        assert_eq!(written(&out).name, "Running");
    }

    #[test]
    fn rerun_in_a_retried_flow_is_named_retrying() {
        // given a failed task from flow attempt 1 / when flow attempt 2 reruns it
        let mut run = run_at(StateType::Failed);
        run.run_count = 1;
        run.flow_run_run_count = 1;
        let out = decide_task_transition(TaskTransitionInput {
            parent_flow_run: flow_in(Some(StateType::Running), 2),
            ..input(run, proposal(StateType::Running))
        });
        // then it is "Retrying" and tracks the new flow attempt
        assert_eq!(written(&out).name, "Retrying");
        assert_eq!(out.run.run_count, 1);
        assert_eq!(out.run.flow_run_run_count, 2);
    }

    #[test]
    fn run_count_reset_is_reverted_when_the_flow_is_not_running() {
        // given a failed task in a cancelled flow
        let mut run = run_at(StateType::Failed);
        run.run_count = 3;
        // when it proposes Running / then it aborts and keeps its count
        let out = decide_task_transition(TaskTransitionInput {
            parent_flow_run: flow_in(Some(StateType::Cancelled), 1),
            ..input(run.clone(), proposal(StateType::Running))
        });
        assert_eq!(
            out.details,
            abort("The enclosing flow must be running to begin task execution.")
        );
        assert_eq!(out.run, run);
    }

    #[test]
    fn terminal_to_final_keeps_run_count() {
        let mut run = run_at(StateType::Failed);
        run.run_count = 2;
        let out = decide(run, proposal(StateType::Completed));
        assert_eq!(out.run.run_count, 2);
    }

    // ---- PreventRunningTasksFromStoppedFlows ----

    #[test]
    fn tasks_of_a_paused_flow_are_not_ready() {
        // given a flow paused until t0+60 s
        let mut flow = flow_in(Some(StateType::Paused), 1);
        flow.as_mut().unwrap().pause_timeout = Some(t0() + secs(60));
        flow.as_mut().unwrap().pause_reschedule = true;
        // when a task proposes Running
        let out = decide_task_transition(TaskTransitionInput {
            parent_flow_run: flow,
            ..input(run_at(StateType::Pending), proposal(StateType::Running))
        });
        // then it is paused as NotReady with the flow's deadline
        assert_eq!(
            out.details,
            reject(&format!(
                "The flow is paused, new tasks can execute after resuming flow run: {}.",
                id(FLOW)
            ))
        );
        let s = written(&out);
        assert_eq!(
            (s.state_type, s.name.as_str()),
            (StateType::Paused, "NotReady")
        );
        assert_eq!(s.state_details.pause_timeout, Some(t0() + secs(60)));
        assert!(s.state_details.pause_reschedule);
        assert_eq!(out.run.run_count, 0);
        assert_eq!(out.run.flow_run_run_count, 0);
    }

    #[test]
    fn tasks_of_a_stateless_or_finished_flow_abort() {
        for flow_state in [None, Some(StateType::Completed), Some(StateType::Scheduled)] {
            let out = decide_task_transition(TaskTransitionInput {
                parent_flow_run: flow_in(flow_state, 1),
                ..input(run_at(StateType::Pending), proposal(StateType::Running))
            });
            assert_eq!(
                out.details,
                abort("The enclosing flow must be running to begin task execution.")
            );
            assert!(out.written.is_none());
        }
    }

    #[test]
    fn tasks_without_a_flow_run_may_run() {
        let mut run = run_at(StateType::Pending);
        run.flow_run_id = None;
        let out = decide_task_transition(TaskTransitionInput {
            parent_flow_run: None,
            ..input(run, proposal(StateType::Running))
        });
        assert_eq!(out.status, Status::Accept);
        assert_eq!(out.run.flow_run_run_count, 0);
    }

    // ---- CopyScheduledTime / WaitForScheduledTime ----

    #[test]
    fn scheduled_task_waits_for_its_time_then_copies_it_to_pending() {
        let mut run = run_at(StateType::Scheduled);
        run.state.as_mut().unwrap().state_details.scheduled_time = Some(t0() + secs(4));
        // Running too early waits
        let out = decide(run.clone(), proposal(StateType::Running));
        assert_eq!(
            out.details,
            Details::Wait {
                delay_seconds: 4,
                reason: "Scheduled time is in the future".into()
            }
        );
        assert_eq!(out.run, run);
        // Pending inherits the schedule
        let out = decide(run, proposal(StateType::Pending));
        assert_eq!(
            written(&out).state_details.scheduled_time,
            Some(t0() + secs(4))
        );
    }

    // ---- RetryFailedTasks ----

    fn running_task(
        retries: Option<i64>,
        run_count: i64,
        retry_delay: Option<Value>,
    ) -> TaskRunSnapshot {
        let mut run = run_at(StateType::Running);
        run.run_count = run_count;
        run.empirical_policy.retries = retries;
        run.empirical_policy.retry_delay = retry_delay;
        run
    }

    fn retry_time(out: &TaskTransitionOutcome) -> DateTime<Utc> {
        let s = written(out);
        assert_eq!(
            (s.state_type, s.name.as_str()),
            (StateType::Scheduled, "AwaitingRetry")
        );
        s.state_details.scheduled_time.unwrap()
    }

    #[test]
    fn failing_task_with_retries_left_awaits_retry() {
        // given attempt 1 of a task with 2 retries and a 10 s delay
        let run = running_task(Some(2), 1, Some(json!(10)));
        // when it fails
        let mut p = proposal(StateType::Failed);
        p.message = Some("err".into());
        let out = decide(run, p);
        // then it awaits retry in 10 s, keeping the message
        assert_eq!(out.details, reject("Retrying"));
        assert_eq!(retry_time(&out), t0() + secs(10));
        assert_eq!(written(&out).message.as_deref(), Some("err"));
        assert_eq!(out.run.next_scheduled_start_time, Some(t0() + secs(10)));
        assert_eq!(out.run.run_count, 1);
    }

    #[test]
    fn retry_delay_list_is_indexed_by_attempt() {
        let delays = Some(json!([1, 2.5, 7]));
        let at = |run_count| {
            retry_time(&decide(
                running_task(Some(9), run_count, delays.clone()),
                proposal(StateType::Failed),
            ))
        };
        assert_eq!(at(1), t0() + secs(1));
        assert_eq!(at(2), t0() + Duration::milliseconds(2500));
        assert_eq!(at(3), t0() + secs(7));
        assert_eq!(at(5), t0() + secs(7), "the last delay repeats");
        assert_eq!(at(0), t0() + secs(7), "Python's [-1] index");
    }

    #[test]
    fn exhausted_or_missing_retries_fail() {
        let out = decide(running_task(Some(1), 2, None), proposal(StateType::Failed));
        assert_eq!(
            (out.status, written(&out).state_type),
            (Status::Accept, StateType::Failed)
        );
        let out = decide(running_task(None, 1, None), proposal(StateType::Failed));
        assert_eq!(out.status, Status::Accept);
    }

    #[test]
    fn non_retriable_failure_fails() {
        let mut p = proposal(StateType::Failed);
        p.state_details.retriable = Some(false);
        let out = decide(running_task(Some(3), 1, None), p);
        assert_eq!(written(&out).state_type, StateType::Failed);
    }

    #[test]
    fn jitter_is_derived_from_the_sample_within_prefects_bounds() {
        // given a 10 s delay with jitter factor 0.5
        let mut run = running_task(Some(3), 1, Some(json!(10)));
        run.empirical_policy.retry_jitter_factor = Some(0.5);
        let with = |sample: f64| {
            let out = decide_task_transition(TaskTransitionInput {
                jitter_sample: sample,
                ..input(run.clone(), proposal(StateType::Failed))
            });
            (retry_time(&out) - t0()).num_microseconds().unwrap() as f64 / 1e6
        };
        // then the delay is deterministic and within [c·10, 15]
        let lower = 10.0 * lower_clamp_multiple(1.5);
        assert!((with(0.0) - lower).abs() < 1e-5, "{}", with(0.0));
        assert!((with(0.999_999_9) - 15.0).abs() < 1e-3);
        assert_eq!(with(0.3), with(0.3));
        assert!(with(0.3) < with(0.7));
    }

    #[test]
    fn clamped_poisson_interval_matches_prefect_formula() {
        // expected values computed with prefect.utilities.math, random() fixed
        assert_eq!(clamped_poisson_interval(0.0, 0.3, 0.5), 0.0);
        let k = 1.3f64;
        let c = ((k.exp2()) / (k.exp2() - 1.0)).log2();
        let (lo, hi) = (1.0 - (-c).exp(), 1.0 - (-k).exp());
        let u = lo + (hi - lo) * 0.25;
        assert!((clamped_poisson_interval(1.0, 0.3, 0.25) - (-(1.0 - u).ln())).abs() < 1e-12);
        assert_eq!(lower_clamp_multiple(60.0), 0.0);
        // values from prefect.utilities.math with random.uniform(a, b) patched to a + (b - a) * sample
        for (avg, k, sample, prefect) in [
            (10.0, 0.5, 0.25, 7.864311813631132),
            (3.0, 0.3, 0.9, 3.688572906252703),
            (60.0, 2.0, 0.0, 11.558704676543753),
        ] {
            assert!((clamped_poisson_interval(avg, k, sample) - prefect).abs() < 1e-9);
        }
    }

    #[test]
    fn zero_delay_ignores_jitter() {
        let mut run = running_task(Some(3), 1, Some(json!(0)));
        run.empirical_policy.retry_jitter_factor = Some(0.5);
        assert_eq!(retry_time(&decide(run, proposal(StateType::Failed))), t0());
    }

    // ---- RenameReruns ----

    #[test]
    fn retrying_task_is_named_retrying() {
        // given a task awaiting retry after attempt 1
        let mut run = run_in(Some(state(
            StateType::Scheduled,
            "AwaitingRetry",
            t0() - secs(10),
        )));
        run.state.as_mut().unwrap().state_details.scheduled_time = Some(t0() - secs(1));
        run.run_count = 1;
        run.flow_run_run_count = 1;
        // when it runs again
        let out = decide(run, proposal(StateType::Running));
        // then it is "Retrying", attempt 2
        assert_eq!(written(&out).name, "Retrying");
        assert_eq!(out.run.run_count, 2);
    }

    #[test]
    fn rerun_after_other_state_is_named_rerunning() {
        let mut run = run_at(StateType::Pending);
        run.run_count = 1;
        run.flow_run_run_count = 1;
        assert_eq!(
            written(&decide(run, proposal(StateType::Running))).name,
            "Rerunning"
        );
    }

    // ---- CacheInsertion ----

    #[test]
    fn completed_state_with_key_is_cached() {
        let mut p = proposal(StateType::Completed);
        p.state_details.cache_key = Some("key".into());
        p.state_details.cache_expiration = Some(t0() + secs(3600));
        let out = decide(run_at(StateType::Running), p);
        assert_eq!(out.status, Status::Accept);
        assert_eq!(
            out.cache_insert,
            Some(("key".to_string(), Some(t0() + secs(3600))))
        );
    }

    #[test]
    fn over_long_cache_key_is_rejected_but_written_like_prefect() {
        let mut p = proposal(StateType::Completed);
        p.state_details.cache_key = Some("k".repeat(MAX_CACHE_KEY_LENGTH + 1));
        let out = decide(run_at(StateType::Running), p);
        assert_eq!(
            out.details,
            reject("Cache key exceeded maximum allowed length of 2000 characters.")
        );
        assert_eq!(written(&out).state_type, StateType::Completed);
        assert!(out.cache_insert.is_some());
        // exactly the limit is fine
        let mut p = proposal(StateType::Completed);
        p.state_details.cache_key = Some("é".repeat(MAX_CACHE_KEY_LENGTH));
        assert_eq!(decide(run_at(StateType::Running), p).status, Status::Accept);
    }

    #[test]
    fn completed_without_key_is_not_cached() {
        assert_eq!(
            decide(run_at(StateType::Running), proposal(StateType::Completed)).cache_insert,
            None
        );
    }

    // ---- BackgroundTaskPolicy ----

    #[test]
    fn deferred_tasks_use_background_policy_even_when_forced() {
        // given a deferred task already Pending / when proposed Pending again (even forced)
        let out = decide_task_transition(TaskTransitionInput {
            force: true,
            ..input(run_at(StateType::Pending), deferred(StateType::Pending))
        });
        // then the duplicate claim is aborted
        assert_eq!(
            out.details,
            abort("This run is in a PENDING state and cannot transition to a PENDING state.")
        );
    }

    #[test]
    fn deferred_tasks_carry_their_parameters_id() {
        let mut run = run_at(StateType::Scheduled);
        run.flow_run_id = None;
        run.state.as_mut().unwrap().state_details.task_parameters_id = Some(id(0x9A));
        let out = decide_task_transition(TaskTransitionInput {
            parent_flow_run: None,
            ..input(run, deferred(StateType::Pending))
        });
        assert_eq!(
            written(&out).state_details.task_parameters_id,
            Some(id(0x9A))
        );
        assert_eq!(written(&out).state_details.deferred, Some(true));
    }

    #[test]
    fn deferred_tasks_skip_the_flow_state_check() {
        // BackgroundTaskPolicy has no PreventRunningTasksFromStoppedFlows
        let out = decide_task_transition(TaskTransitionInput {
            parent_flow_run: flow_in(Some(StateType::Completed), 1),
            ..input(run_at(StateType::Pending), deferred(StateType::Running))
        });
        assert_eq!(out.status, Status::Accept);
    }

    #[test]
    fn core_policy_does_not_copy_parameters_id() {
        let mut run = run_at(StateType::Scheduled);
        run.state.as_mut().unwrap().state_details.task_parameters_id = Some(id(0x9A));
        let out = decide(run, proposal(StateType::Pending));
        assert_eq!(written(&out).state_details.task_parameters_id, None);
    }

    // ---- subflow parent task ----

    #[test]
    fn subflow_parent_task_state_copies_child_state() {
        // given a child flow run's Running state
        let mut child = state(StateType::Running, "Running", t0());
        child.state_details.flow_run_id = Some(id(0xC41D));
        child.state_details.task_run_id = Some(id(TASK));
        child.message = Some("m".into());
        // when mirrored onto the parent task run
        let s = subflow_parent_task_state(&child, id(0xC41D), id(TASK), id(NEW));
        // then it is the same state with a new id and the child link
        assert_eq!(s.id, id(NEW));
        assert_eq!(s.state_details.child_flow_run_id, Some(id(0xC41D)));
        assert_eq!(s.state_details.task_run_id, Some(id(TASK)));
        assert_eq!(
            (s.state_type, s.name.as_str(), s.timestamp),
            (StateType::Running, "Running", t0())
        );
        assert_eq!(s.message.as_deref(), Some("m"));
    }

    #[test]
    fn subflow_parent_task_state_applies_via_forced_transition() {
        // given the mirrored state / when forced onto the parent task run
        let child = state(StateType::Running, "Running", t0());
        let s = subflow_parent_task_state(&child, id(0xC41D), id(TASK), id(NEW));
        let out = decide_task_transition(TaskTransitionInput {
            force: true,
            new_state_id: s.id,
            now: s.timestamp,
            ..input(run_at(StateType::Pending), ProposedState::from_state(&s))
        });
        // then the parent task run's bookkeeping follows and its flow run is stamped
        let w = written(&out);
        assert_eq!(w.state_details.child_flow_run_id, Some(id(0xC41D)));
        assert_eq!(w.state_details.flow_run_id, Some(id(FLOW)));
        assert_eq!(out.run.run_count, 1);
    }

    // ---- rule order ----

    const GLOBAL: [&str; 7] = [
        "SetStartTime",
        "SetEndTime",
        "IncrementRunTime",
        "SetExpectedStartTime",
        "SetNextScheduledStartTime",
        "UpdateStateDetails",
        "IncrementTaskRunCount",
    ];

    #[test]
    fn core_rules_fire_in_prefect_order() {
        let mut expected = vec![
            "CacheRetrieval",
            "PreventRunningTasksFromStoppedFlows",
            "WaitForScheduledTime",
            "RenameReruns",
            "UpdateFlowRunTrackerOnTasks",
        ];
        expected.extend(GLOBAL);
        let names = decide_with_signature(input(
            run_at(StateType::Pending),
            proposal(StateType::Running),
        ))
        .1;
        assert_eq!(names, expected);
    }

    #[test]
    fn background_rules_fire_in_prefect_order() {
        let mut expected = vec![
            "CacheRetrieval",
            "CopyTaskParametersID",
            "WaitForScheduledTime",
            "RenameReruns",
            "UpdateFlowRunTrackerOnTasks",
        ];
        expected.extend(GLOBAL);
        let names = decide_with_signature(input(
            run_at(StateType::Scheduled),
            deferred(StateType::Running),
        ))
        .1;
        assert_eq!(names, expected);
        let names = decide_with_signature(input(
            run_at(StateType::Failed),
            deferred(StateType::Pending),
        ))
        .1;
        assert_eq!(names[0], "HandleTaskTerminalStateTransitions");
        let names = decide_with_signature(input(
            run_at(StateType::Running),
            deferred(StateType::Pending),
        ))
        .1;
        assert_eq!(names, ["PreventPendingTransitions"]);
    }
}
