//! Flow-run state orchestration: Prefect's `CoreFlowPolicy` (normal
//! `set_state`), `MinimalFlowPolicy` (`force=true` and the initial state at
//! creation) and the `GlobalFlowPolicy` bookkeeping, as one pure function.
//!
//! Everything the rules need about the run comes in a [`FlowRunSnapshot`];
//! the decision comes back as a [`FlowTransitionOutcome`] holding the state to
//! persist (if any) and the run after bookkeeping. The caller persists `run`
//! whenever it differs from the input: a few rules change the run even when
//! nothing is written (e.g. a rejected resume marks the run as `resuming`,
//! exactly as Prefect commits it).
//!
//! Out of scope (need other objects or side effects; the caller owns them):
//! deployment concurrency (`SecureFlowConcurrencySlots`, the lease renewal in
//! `ValidateDeploymentConcurrencyAtRunning`,
//! `RemoveDeploymentConcurrencyLeaseForOldClientVersions`,
//! `ReleaseFlowConcurrencySlots`, `EnforceDeploymentConcurrencyOnLate`), events
//! (`InstrumentFlowRunStateTransitions`), forcing the parent task run's state
//! (`UpdateSubflowParentTask`, see
//! [`crate::orchestration::task_policy::subflow_parent_task_state`]) and the
//! pre-0.8.3 API behaviour of `RetryFailedFlows` that also resets failed task runs.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::orchestration::outcome::{
    common_clock_transforms, completed_with_persisted_result, copy_scheduled_time,
    is_persisted_result, orchestrate, prevent_pending_transitions, wait_for_scheduled_time,
    Details, Intervention, ProposedState, Rule, RunClock, RunContext, SimpleRule, StateSet, Status,
    Transform, Transition,
};
use crate::orchestration::states::{FlowRunPolicy, State, StateType};

/// The flow-run fields orchestration reads and maintains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowRunSnapshot {
    pub id: Uuid,
    pub state: Option<State>,
    pub empirical_policy: FlowRunPolicy,
    pub run_count: i64,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub total_run_time: f64,
    pub expected_start_time: Option<DateTime<Utc>>,
    pub next_scheduled_start_time: Option<DateTime<Utc>>,
    pub deployment_id: Option<Uuid>,
    pub infrastructure_pid: Option<String>,
    pub parent_task_run_id: Option<Uuid>,
}

/// Everything one flow-run `set_state` decision depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowTransitionInput {
    pub run: FlowRunSnapshot,
    pub proposed: ProposedState,
    /// `true` selects `MinimalFlowPolicy` (also pass `true` for the initial
    /// state written when a run is created).
    pub force: bool,
    pub now: DateTime<Utc>,
    /// Id for any state this decision writes.
    pub new_state_id: Uuid,
    /// Pause key used when a pause proposes none (Prefect mints a uuid4).
    pub fresh_pause_key: String,
    /// The client's `X-PREFECT-API-VERSION`; (0, 8, 4) when absent.
    pub api_version: (u32, u32, u32),
    /// The run's deployment concurrency, when its deployment has a limit.
    pub deployment_slots: Option<DeploymentSlots>,
}

/// A deployment's concurrency limit as one `set_state` sees it, read under
/// the deployment's slot lock so concurrent claims are serialised.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentSlots {
    pub limit: i64,
    /// Other runs of the deployment holding a slot (PENDING, RUNNING, CANCELLING).
    pub active: i64,
    /// `concurrency_options.collision_strategy`: true for `CANCEL_NEW`
    /// (default `ENQUEUE`).
    pub cancel_new: bool,
    /// `PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS` (30).
    pub wait_seconds: i64,
}

/// The decision for one flow-run `set_state`.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowTransitionOutcome {
    pub status: Status,
    pub details: Details,
    /// The state row to persist; `None` when nothing is written.
    pub written: Option<State>,
    /// The run after bookkeeping, with `state` set to `written` when written.
    pub run: FlowRunSnapshot,
    /// The state for the response body: the written state, else the current one.
    pub returned_state: Option<State>,
}

/// Orchestrates a proposed flow-run state transition.
pub fn decide_flow_transition(input: FlowTransitionInput) -> FlowTransitionOutcome {
    decide_with_signature(input).0
}

/// [`decide_flow_transition`] plus the names of the rules that fired, in order.
pub(crate) fn decide_with_signature(
    input: FlowTransitionInput,
) -> (FlowTransitionOutcome, Vec<&'static str>) {
    let FlowTransitionInput {
        run,
        proposed,
        force,
        now,
        new_state_id,
        fresh_pause_key,
        api_version,
        deployment_slots,
    } = input;
    let proposed = proposed.into_state(new_state_id, now);
    let mut ctx = FlowCtx {
        t: Transition::new(run.state.clone(), proposed, now, new_state_id),
        run,
        api_version,
        fresh_pause_key,
        deployment_slots,
    };
    let mut rules = if force {
        minimal_flow_policy()
    } else {
        core_flow_policy()
    };
    rules.extend(global_flow_policy());
    let signature = orchestrate(&mut ctx, rules);

    let FlowCtx { t, mut run, .. } = ctx;
    let written = t.validated;
    if let Some(state) = &written {
        // SetRunStateType / SetRunStateName / SetRunStateTimestamp
        run.state = Some(state.clone());
    }
    let returned_state = written.clone().or_else(|| run.state.clone());
    let outcome = FlowTransitionOutcome {
        status: t.status,
        details: t.details,
        written,
        run,
        returned_state,
    };
    (outcome, signature)
}

/// The orchestration context for a flow run.
pub(crate) struct FlowCtx {
    t: Transition,
    run: FlowRunSnapshot,
    api_version: (u32, u32, u32),
    fresh_pause_key: String,
    deployment_slots: Option<DeploymentSlots>,
}

impl FlowCtx {
    /// Pause/resume bookkeeping only exists for clients on API 0.8.4 or later.
    fn supports_pauses(&self) -> bool {
        self.api_version >= (0, 8, 4)
    }
}

impl RunContext for FlowCtx {
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

type FlowRule = Box<dyn Rule<FlowCtx>>;

fn states(types: &[StateType]) -> StateSet {
    StateSet::of(types)
}

/// `CoreFlowPolicy`, in Prefect's order.
fn core_flow_policy() -> Vec<FlowRule> {
    vec![
        Box::new(Transform {
            name: "PreserveDeploymentConcurrencyLeaseId",
            apply: preserve_lease_id,
        }),
        prevent_duplicate_transitions(),
        Box::new(HandleFlowTerminalStateTransitions::default()),
        enforce_cancelling_to_cancelled(),
        bypass_cancelling_flow_runs_with_no_infra(),
        prevent_pending_transitions(),
        carry_lease_at_running(),
        secure_flow_concurrency_slots(),
        // RemoveDeploymentConcurrencyLeaseForOldClientVersions: slots are counted, not leased.
        ensure_only_scheduled_flows_marked_late(),
        Box::new(HandlePausingFlows::default()),
        Box::new(HandleResumingPausedFlows),
        copy_scheduled_time(),
        wait_for_scheduled_time(),
        retry_failed_flows(),
        // InstrumentFlowRunStateTransitions: events are emitted by the caller.
        // ReleaseFlowConcurrencySlots: a slot is a run in PENDING/RUNNING/CANCELLING,
        // so leaving those states releases it.
    ]
}

/// `MinimalFlowPolicy` (force): only protects persisted results and lets
/// cancellation of infrastructure-less runs go straight to Cancelled.
fn minimal_flow_policy() -> Vec<FlowRule> {
    vec![
        prevent_result_data_loss(),
        bypass_cancelling_flow_runs_with_no_infra(),
        // InstrumentFlowRunStateTransitions, ReleaseFlowConcurrencySlots: out of scope.
    ]
}

/// `GlobalFlowPolicy`: bookkeeping applied to every written flow state.
fn global_flow_policy() -> Vec<FlowRule> {
    let mut rules: Vec<FlowRule> = vec![Box::new(Transform {
        name: "EnsureFlowRunStateTimestampIsUnique",
        apply: ensure_timestamp_is_unique,
    })];
    rules.extend(common_clock_transforms());
    rules.extend([
        Box::new(Transform {
            name: "UpdateStateDetails",
            apply: update_state_details,
        }) as FlowRule,
        // UpdateSubflowParentTask: the caller forces `subflow_parent_task_state` onto the parent task run.
        Box::new(Transform {
            name: "UpdateSubflowStateDetails",
            apply: update_subflow_state_details,
        }),
        Box::new(Transform {
            name: "IncrementFlowRunCount",
            apply: increment_flow_run_count,
        }),
        Box::new(Transform {
            name: "RemoveResumingIndicator",
            apply: remove_resuming_indicator,
        }),
    ]);
    rules
}

// ---------------------------------------------------------------------------
// Core rules
// ---------------------------------------------------------------------------

/// PreserveDeploymentConcurrencyLeaseId: workers send an explicit null lease
/// id on follow-up states; the run must keep the lease it holds.
fn preserve_lease_id(ctx: &mut FlowCtx) {
    let t = &mut ctx.t;
    let (Some(initial), Some(proposed)) = (t.initial.as_ref(), t.proposed.as_mut()) else {
        return;
    };
    let lease = initial.state_details.deployment_concurrency_lease_id;
    if lease.is_some()
        && proposed
            .state_details
            .deployment_concurrency_lease_id
            .is_none()
    {
        proposed.state_details.deployment_concurrency_lease_id = lease;
    }
}

/// PreventDuplicateTransitions: a client retrying a request it already made
/// (same `transition_id`) gets the current state back instead of a duplicate.
fn prevent_duplicate_transitions() -> FlowRule {
    Box::new(SimpleRule {
        name: "PreventDuplicateTransitions",
        from: StateSet::ALL,
        to: StateSet::ALL,
        before: |ctx: &mut FlowCtx| {
            let initial_id = ctx.t.initial.as_ref()?.state_details.transition_id?;
            let proposed_id = ctx.t.proposed.as_ref()?.state_details.transition_id?;
            if initial_id == proposed_id {
                Intervention::reject(None, "This run has already made this state transition.")
            } else {
                None
            }
        },
    })
}

/// HandleFlowTerminalStateTransitions: a finished run may be re-run, but not
/// crashed, paused or cancelled after the fact, not re-run over a persisted
/// result, and not rescheduled without a deployment to pick it up. Leaving a
/// terminal state resets the pause/retry bookkeeping of the policy (reverted
/// if a later rule changes the transition).
#[derive(Default)]
struct HandleFlowTerminalStateTransitions {
    original_policy: Option<FlowRunPolicy>,
}

impl Rule<FlowCtx> for HandleFlowTerminalStateTransitions {
    fn name(&self) -> &'static str {
        "HandleFlowTerminalStateTransitions"
    }
    fn governed_from(&self) -> StateSet {
        StateSet::TERMINAL
    }
    fn before(&mut self, ctx: &mut FlowCtx) -> Option<Intervention> {
        let initial = ctx.t.initial.as_ref()?;
        let proposed = ctx.t.proposed.as_ref()?;
        self.original_policy = Some(ctx.run.empirical_policy.clone());
        let to = proposed.state_type;

        if matches!(
            to,
            StateType::Cancelling | StateType::Paused | StateType::Crashed
        ) {
            return Intervention::abort(format!(
                "Run is already in terminal state {}.",
                initial.state_type.as_str()
            ));
        }
        let persisted = completed_with_persisted_result(initial);
        if persisted && !to.is_final() {
            return Intervention::reject(None, "Run is already COMPLETED.");
        }
        if persisted && to == StateType::Completed && !is_persisted_result(&proposed.data) {
            return Intervention::reject(None, RESULT_OVERWRITE_REASON);
        }
        if to == StateType::Scheduled && ctx.run.deployment_id.is_none() {
            return Intervention::abort(
                "Cannot reschedule a run without an associated deployment.",
            );
        }
        if !to.is_final() && ctx.supports_pauses() {
            let policy = &mut ctx.run.empirical_policy;
            policy.resuming = Some(false);
            policy.pause_keys = Some(Vec::new());
            policy.retry_type = (to == StateType::Scheduled).then(|| "reschedule".to_string());
        }
        None
    }
    fn cleanup(&mut self, ctx: &mut FlowCtx) {
        if let Some(policy) = self.original_policy.take() {
            ctx.run.empirical_policy = policy;
        }
    }
}

const RESULT_OVERWRITE_REASON: &str =
    "Cannot overwrite a COMPLETED state that carries persisted result data with one that does not.";

/// PreventResultDataLoss (also under force): a COMPLETED state with a
/// persisted result may not be replaced by a COMPLETED state without one.
fn prevent_result_data_loss() -> FlowRule {
    Box::new(SimpleRule {
        name: "PreventResultDataLoss",
        from: StateSet::TERMINAL,
        to: StateSet::TERMINAL,
        before: |ctx: &mut FlowCtx| {
            let initial = ctx.t.initial.as_ref()?;
            let proposed = ctx.t.proposed.as_ref()?;
            if completed_with_persisted_result(initial)
                && proposed.state_type == StateType::Completed
                && !is_persisted_result(&proposed.data)
            {
                Intervention::reject(None, RESULT_OVERWRITE_REASON)
            } else {
                None
            }
        },
    })
}

/// EnforceCancellingToCancelledTransition: once cancellation has started, the
/// only way forward is Cancelled.
fn enforce_cancelling_to_cancelled() -> FlowRule {
    Box::new(SimpleRule {
        name: "EnforceCancellingToCancelledTransition",
        from: states(&[StateType::Cancelling]),
        to: StateSet::ALL.without(StateType::Cancelled),
        before: |_ctx: &mut FlowCtx| {
            Intervention::reject(
                None,
                "Cannot transition flows that are cancelling to a state other than Cancelled.",
            )
        },
    })
}

/// BypassCancellingFlowRunsWithNoInfra: Cancelling exists so a worker can tear
/// down infrastructure; a Scheduled run without an infrastructure pid (or a
/// Resuming one), or a Suspended run, has none, so it is Cancelled directly.
fn bypass_cancelling_flow_runs_with_no_infra() -> FlowRule {
    Box::new(SimpleRule {
        name: "BypassCancellingFlowRunsWithNoInfra",
        from: states(&[StateType::Scheduled, StateType::Paused]),
        to: states(&[StateType::Cancelling]),
        before: |ctx: &mut FlowCtx| {
            let initial = ctx.t.initial.as_ref()?;
            ctx.t.proposed.as_ref()?;
            let no_pid = ctx
                .run
                .infrastructure_pid
                .as_deref()
                .is_none_or(str::is_empty);
            let reason = if (initial.state_type == StateType::Scheduled && no_pid)
                || initial.name == "Resuming"
            {
                "Scheduled flow run has no infrastructure to terminate."
            } else if initial.state_type == StateType::Paused
                && initial.state_details.pause_reschedule
            {
                "Suspended flow run has no infrastructure to terminate."
            } else {
                return None;
            };
            Intervention::reject(Some(ctx.t.new_state(StateType::Cancelled, None)), reason)
        },
    })
}

/// The pure part of ValidateDeploymentConcurrencyAtRunning (PENDING →
/// RUNNING): the Running state carries the Pending state's lease id. Renewing
/// or re-acquiring the lease is deployment concurrency, out of scope.
fn carry_lease_at_running() -> FlowRule {
    Box::new(SimpleRule {
        name: "ValidateDeploymentConcurrencyAtRunning",
        from: states(&[StateType::Pending]),
        to: states(&[StateType::Running]),
        before: |ctx: &mut FlowCtx| {
            let lease = ctx
                .t
                .initial
                .as_ref()?
                .state_details
                .deployment_concurrency_lease_id;
            ctx.t
                .proposed
                .as_mut()?
                .state_details
                .deployment_concurrency_lease_id = lease;
            None
        },
    })
}

/// SecureFlowConcurrencySlots: a deployment run may only become PENDING (a
/// worker claiming it) while its deployment has a free slot; otherwise it
/// waits as `AwaitingConcurrencySlot` (ENQUEUE) or is cancelled (CANCEL_NEW).
fn secure_flow_concurrency_slots() -> FlowRule {
    Box::new(SimpleRule {
        name: "SecureFlowConcurrencySlots",
        from: StateSet::ALL.without(StateType::Pending).without(StateType::Running).without(StateType::Cancelling),
        to: states(&[StateType::Pending]),
        before: |ctx: &mut FlowCtx| {
            let slots = ctx.deployment_slots.clone()?;
            ctx.run.deployment_id?;
            if slots.limit == 0 {
                return Intervention::abort("The deployment concurrency limit is 0. The flow will deadlock if submitted again.");
            }
            if slots.active < slots.limit {
                return None;
            }
            let now = ctx.t.now;
            let state = if slots.cancel_new {
                let mut s = ctx.t.new_state(StateType::Cancelled, None);
                s.message = Some("Deployment concurrency limit reached.".into());
                s
            } else {
                let mut s = ctx.t.new_state(StateType::Scheduled, Some("AwaitingConcurrencySlot"));
                s.state_details.scheduled_time = Some(now + chrono::Duration::seconds(slots.wait_seconds));
                s
            };
            Intervention::reject(Some(state), "Deployment concurrency limit reached.")
        },
    })
}

/// EnsureOnlyScheduledFlowsMarkedLate: "Late" is a label for a Scheduled run
/// that missed its time; anything else cannot become Late, nor twice.
fn ensure_only_scheduled_flows_marked_late() -> FlowRule {
    Box::new(SimpleRule {
        name: "EnsureOnlyScheduledFlowsMarkedLate",
        from: StateSet::ALL,
        to: states(&[StateType::Scheduled]),
        before: |ctx: &mut FlowCtx| {
            let initial = ctx.t.initial.as_ref()?;
            let proposed = ctx.t.proposed.as_ref()?;
            if !(proposed.state_type == StateType::Scheduled && proposed.name == "Late") {
                return None;
            }
            if initial.state_type != StateType::Scheduled {
                Intervention::reject(None, "Only scheduled flows can be marked late.")
            } else if initial.name == "Late" {
                Intervention::reject(None, "This flow run is already marked late.")
            } else {
                None
            }
        },
    })
}

/// Prefect's verb for pause messages: suspends are pauses named "Suspended".
fn pause_verb(proposed: &State) -> &'static str {
    if proposed.name == "Suspended" {
        "suspend"
    } else {
        "pause"
    }
}

/// HandlePausingFlows: only a running flow may pause, each pause key fires
/// once, and a suspend (which tears down infrastructure) needs a deployment to
/// resume from and is not possible for subflows. The key is recorded in the
/// policy's `pause_keys` afterwards.
#[derive(Default)]
struct HandlePausingFlows {
    key: Option<String>,
}

impl Rule<FlowCtx> for HandlePausingFlows {
    fn name(&self) -> &'static str {
        "HandlePausingFlows"
    }
    fn governed_to(&self) -> StateSet {
        states(&[StateType::Paused])
    }
    fn before(&mut self, ctx: &mut FlowCtx) -> Option<Intervention> {
        let proposed = ctx.t.proposed.as_ref()?;
        let verb = pause_verb(proposed);
        let Some(initial) = ctx.t.initial.as_ref() else {
            return Intervention::abort(format!("Cannot {verb} flows with no state."));
        };
        if initial.state_type != StateType::Running {
            return Intervention::reject(
                None,
                format!("Cannot {verb} flows that are not currently running."),
            );
        }
        let key = proposed
            .state_details
            .pause_key
            .clone()
            .unwrap_or_else(|| ctx.fresh_pause_key.clone());
        let seen = ctx
            .run
            .empirical_policy
            .pause_keys
            .as_ref()
            .is_some_and(|keys| keys.contains(&key));
        self.key = Some(key);
        if seen {
            return Intervention::reject(None, format!("This {verb} has already fired."));
        }
        if proposed.state_details.pause_reschedule {
            if ctx.run.parent_task_run_id.is_some() {
                return Intervention::abort(format!("Cannot {verb} subflows."));
            }
            if ctx.run.deployment_id.is_none() {
                return Intervention::abort(format!("Cannot {verb} flows without a deployment."));
            }
        }
        None
    }
    fn after(&mut self, ctx: &mut FlowCtx) {
        if let Some(key) = self.key.take() {
            let keys = ctx
                .run
                .empirical_policy
                .pause_keys
                .get_or_insert_with(Vec::new);
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
}

/// HandleResumingPausedFlows: a paused run may only resume (Running or
/// Scheduled), be cancelled or finish; a suspended run needs a deployment to be
/// rescheduled; an expired pause fails the run. Afterwards the run is marked
/// `resuming` so the resumed Running state does not count as a new attempt.
/// As in Prefect, that mark is also set when the resume is rejected.
struct HandleResumingPausedFlows;

impl Rule<FlowCtx> for HandleResumingPausedFlows {
    fn name(&self) -> &'static str {
        "HandleResumingPausedFlows"
    }
    fn governed_from(&self) -> StateSet {
        states(&[StateType::Paused])
    }
    fn before(&mut self, ctx: &mut FlowCtx) -> Option<Intervention> {
        let initial = ctx.t.initial.as_ref()?;
        let proposed = ctx.t.proposed.as_ref()?;
        let to = proposed.state_type;
        let allowed = matches!(
            to,
            StateType::Running | StateType::Scheduled | StateType::Cancelling
        ) || to.is_final();
        if !allowed {
            return Intervention::reject(
                None,
                format!(
                    "This run cannot transition to the StateType.{} state from the StateType.{} state.",
                    to.as_str(),
                    initial.state_type.as_str()
                ),
            );
        }
        let verb = pause_verb(proposed);
        let display_name = if proposed.name.is_empty() {
            to.as_str().to_lowercase()
        } else {
            proposed.name.to_lowercase()
        };
        if initial.state_details.pause_reschedule && ctx.run.deployment_id.is_none() {
            return Intervention::reject(
                None,
                format!("Cannot reschedule a {display_name} flow run without a deployment."),
            );
        }
        if to == StateType::Cancelling {
            // A blocking pause keeps its process; cancellation must reach it even after the deadline.
            return None;
        }
        match initial.state_details.pause_timeout {
            Some(timeout) if timeout < ctx.t.now => {
                let mut failed = ctx.t.new_state(StateType::Failed, None);
                failed.message = Some(format!("The flow was {display_name} and never resumed."));
                Intervention::reject(
                    Some(failed),
                    format!("The flow run {verb} has timed out and can no longer resume."),
                )
            }
            _ => None,
        }
    }
    fn after(&mut self, ctx: &mut FlowCtx) {
        ctx.run.empirical_policy.resuming = Some(true);
    }
}

/// RetryFailedFlows: a failing run with retries left is rescheduled as
/// AwaitingRetry after `retry_delay` instead (an in-process retry, keeping its
/// message, data and concurrency lease). Exhausted retries clear `retry_type`
/// so a later manual retry is not mistaken for an in-process one.
fn retry_failed_flows() -> FlowRule {
    Box::new(SimpleRule {
        name: "RetryFailedFlows",
        from: states(&[StateType::Running]),
        to: states(&[StateType::Failed]),
        before: |ctx: &mut FlowCtx| {
            let initial = ctx.t.initial.as_ref()?;
            let proposed = ctx.t.proposed.as_ref()?;
            let policy = &ctx.run.empirical_policy;
            let retries_left = policy
                .retries
                .is_some_and(|retries| ctx.run.run_count <= retries);
            if !retries_left {
                ctx.run.empirical_policy.retry_type = None;
                return None;
            }
            let scheduled_time = ctx.t.now + Duration::seconds(policy.retry_delay.unwrap_or(0));
            let mut retry = ctx.t.new_state(StateType::Scheduled, Some("AwaitingRetry"));
            retry.state_details.scheduled_time = Some(scheduled_time);
            retry.message = proposed.message.clone();
            retry.data = proposed.data.clone();
            retry.state_details.deployment_concurrency_lease_id =
                initial.state_details.deployment_concurrency_lease_id;
            // (API < 0.8.3 also forced failed task runs to AwaitingRetry: out of scope.)
            if ctx.supports_pauses() {
                let policy = &mut ctx.run.empirical_policy;
                policy.resuming = Some(false);
                policy.pause_keys = Some(Vec::new());
                policy.retry_type = Some("in_process".to_string());
            }
            Intervention::reject(Some(retry), "Retrying")
        },
    })
}

// ---------------------------------------------------------------------------
// Global bookkeeping specific to flow runs
// ---------------------------------------------------------------------------

/// EnsureFlowRunStateTimestampIsUnique (simplified): a flow run's states are
/// unique per timestamp, so a new state must be strictly newer than the
/// current one; it is moved to 1 µs after it otherwise.
fn ensure_timestamp_is_unique(ctx: &mut FlowCtx) {
    let t = &mut ctx.t;
    let (Some(initial), Some(proposed)) = (t.initial.as_ref(), t.proposed.as_mut()) else {
        return;
    };
    if proposed.timestamp <= initial.timestamp {
        proposed.timestamp = initial.timestamp + Duration::microseconds(1);
    }
}

/// UpdateStateDetails: a flow state always names its flow run.
fn update_state_details(ctx: &mut FlowCtx) {
    if let Some(p) = ctx.t.proposed.as_mut() {
        p.state_details.flow_run_id = Some(ctx.run.id);
    }
}

/// UpdateSubflowStateDetails: a subflow's states point at the parent's task
/// run that tracks it.
fn update_subflow_state_details(ctx: &mut FlowCtx) {
    if let (Some(parent), Some(p)) = (ctx.run.parent_task_run_id, ctx.t.proposed.as_mut()) {
        p.state_details.task_run_id = Some(parent);
    }
}

/// IncrementFlowRunCount: each entry into RUNNING is an attempt, except
/// resuming from a pause (API ≥ 0.8.4).
fn increment_flow_run_count(ctx: &mut FlowCtx) {
    let running = ctx
        .t
        .proposed
        .as_ref()
        .is_some_and(|p| p.state_type == StateType::Running);
    if !running {
        return;
    }
    if ctx.supports_pauses() && ctx.run.empirical_policy.resuming == Some(true) {
        return;
    }
    ctx.run.run_count += 1;
}

/// RemoveResumingIndicator: the resume is over once the run is Running again
/// or finished.
fn remove_resuming_indicator(ctx: &mut FlowCtx) {
    let Some(p) = ctx.t.proposed.as_ref() else {
        return;
    };
    if ctx.supports_pauses()
        && (p.state_type == StateType::Running || p.state_type.is_final())
        && ctx.run.empirical_policy.resuming == Some(true)
    {
        ctx.run.empirical_policy.resuming = Some(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestration::outcome::test_support::*;
    use serde_json::json;

    const RUN: u128 = 0xF10;
    const NEW: u128 = 0x5EED;

    fn run_in(state: Option<State>) -> FlowRunSnapshot {
        FlowRunSnapshot {
            id: id(RUN),
            state,
            empirical_policy: FlowRunPolicy::default(),
            run_count: 0,
            start_time: None,
            end_time: None,
            total_run_time: 0.0,
            expected_start_time: None,
            next_scheduled_start_time: None,
            deployment_id: None,
            infrastructure_pid: None,
            parent_task_run_id: None,
        }
    }

    /// A run whose current state is `state_type`, entered 10 s ago.
    fn run_at(state_type: StateType) -> FlowRunSnapshot {
        run_in(Some(state(
            state_type,
            state_type.default_name(),
            t0() - secs(10),
        )))
    }

    fn input(run: FlowRunSnapshot, proposed: ProposedState) -> FlowTransitionInput {
        FlowTransitionInput {
            run,
            proposed,
            force: false,
            now: t0(),
            new_state_id: id(NEW),
            fresh_pause_key: "fresh-key".into(),
            api_version: (0, 8, 4),
            deployment_slots: None,
        }
    }

    fn decide(run: FlowRunSnapshot, proposed: ProposedState) -> FlowTransitionOutcome {
        decide_flow_transition(input(run, proposed))
    }

    fn force(run: FlowRunSnapshot, proposed: ProposedState) -> FlowTransitionOutcome {
        decide_flow_transition(FlowTransitionInput {
            force: true,
            ..input(run, proposed)
        })
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

    fn written(out: &FlowTransitionOutcome) -> &State {
        out.written.as_ref().expect("a state is written")
    }

    /// Asserts nothing was written and the current state is returned.
    fn assert_nothing_written(out: &FlowTransitionOutcome, before: &FlowRunSnapshot) {
        assert!(out.written.is_none());
        assert_eq!(out.returned_state, before.state);
        assert_eq!(out.run.state, before.state);
    }

    fn completed_with_result() -> FlowRunSnapshot {
        let mut run = run_at(StateType::Completed);
        run.state.as_mut().unwrap().data = Some(json!({"storage_key": "abc"}));
        run
    }

    // ---- accept path and bookkeeping ----

    #[test]
    fn accepts_pending_to_running_and_does_bookkeeping() {
        // given a Pending run
        let run = run_at(StateType::Pending);
        // when it proposes Running
        let out = decide(run, proposal(StateType::Running));
        // then the Running state is written with this decision's id and time
        assert_eq!(
            (out.status, &out.details),
            (Status::Accept, &Details::Accept)
        );
        let s = written(&out);
        assert_eq!(
            (s.id, s.timestamp, s.name.as_str()),
            (id(NEW), t0(), "Running")
        );
        assert_eq!(s.state_details.flow_run_id, Some(id(RUN)));
        // and the run is counted, started and points at the new state
        assert_eq!(out.run.run_count, 1);
        assert_eq!(out.run.start_time, Some(t0()));
        assert_eq!(out.run.expected_start_time, Some(t0()));
        assert_eq!(out.run.state.as_ref(), Some(s));
        assert_eq!(out.returned_state.as_ref(), Some(s));
    }

    #[test]
    fn initial_state_at_creation_uses_minimal_policy() {
        // given a new run without state / when its Scheduled state is forced
        let mut p = proposal(StateType::Scheduled);
        p.state_details.scheduled_time = Some(t0() + secs(60));
        let out = force(run_in(None), p);
        // then it is accepted and the schedule is recorded
        assert_eq!(out.status, Status::Accept);
        assert_eq!(out.run.next_scheduled_start_time, Some(t0() + secs(60)));
        assert_eq!(out.run.expected_start_time, Some(t0() + secs(60)));
        assert_eq!(written(&out).name, "Scheduled");
    }

    #[test]
    fn scheduled_proposal_without_time_is_scheduled_now() {
        let out = force(run_in(None), proposal(StateType::Scheduled));
        assert_eq!(written(&out).state_details.scheduled_time, Some(t0()));
    }

    #[test]
    fn completing_records_end_time_and_run_time() {
        // given a run that started running 10 s ago
        let mut run = run_at(StateType::Running);
        run.start_time = Some(t0() - secs(10));
        run.run_count = 1;
        // when it completes
        let out = decide(run, proposal(StateType::Completed));
        // then end time and total run time are updated
        assert_eq!(out.run.end_time, Some(t0()));
        assert_eq!(out.run.total_run_time, 10.0);
        assert_eq!(out.run.run_count, 1);
    }

    #[test]
    fn timestamp_is_bumped_past_current_state() {
        // given a current state stamped exactly now
        let run = run_in(Some(state(StateType::Pending, "Pending", t0())));
        // when a state is written at the same instant
        let out = decide(run, proposal(StateType::Running));
        // then it lands 1 µs later, and bookkeeping uses that time
        let bumped = t0() + Duration::microseconds(1);
        assert_eq!(written(&out).timestamp, bumped);
        assert_eq!(out.run.start_time, Some(bumped));
    }

    #[test]
    fn timestamp_is_bumped_past_a_newer_current_state() {
        let run = run_in(Some(state(StateType::Pending, "Pending", t0() + secs(1))));
        let out = decide(run, proposal(StateType::Running));
        assert_eq!(
            written(&out).timestamp,
            t0() + secs(1) + Duration::microseconds(1)
        );
    }

    #[test]
    fn subflow_states_point_at_parent_task_run() {
        let mut run = run_at(StateType::Pending);
        run.parent_task_run_id = Some(id(0x7A5C));
        let out = decide(run, proposal(StateType::Running));
        assert_eq!(written(&out).state_details.task_run_id, Some(id(0x7A5C)));
        assert_eq!(written(&out).state_details.flow_run_id, Some(id(RUN)));
    }

    #[test]
    fn proposal_fields_are_kept() {
        let mut p = named(StateType::Failed, "TimedOut");
        p.message = Some("took too long".into());
        p.data = Some(json!({"type": "unpersisted"}));
        p.state_details.traceparent = Some("tp".into());
        let out = decide(run_at(StateType::Running), p);
        let s = written(&out);
        assert_eq!(s.name, "TimedOut");
        assert_eq!(s.message.as_deref(), Some("took too long"));
        assert_eq!(s.data, Some(json!({"type": "unpersisted"})));
        assert_eq!(s.state_details.traceparent.as_deref(), Some("tp"));
    }

    // ---- PreserveDeploymentConcurrencyLeaseId ----

    #[test]
    fn lease_id_is_preserved_when_proposal_has_none() {
        let mut run = run_at(StateType::Pending);
        run.state
            .as_mut()
            .unwrap()
            .state_details
            .deployment_concurrency_lease_id = Some(id(0x1EA5E));
        let out = decide(run, named(StateType::Pending, "Submitting"));
        assert_eq!(
            written(&out).state_details.deployment_concurrency_lease_id,
            Some(id(0x1EA5E))
        );
    }

    #[test]
    fn running_carries_the_pending_lease() {
        // given a Pending run with a lease and a proposal naming another lease
        let mut run = run_at(StateType::Pending);
        run.state
            .as_mut()
            .unwrap()
            .state_details
            .deployment_concurrency_lease_id = Some(id(1));
        let mut p = proposal(StateType::Running);
        p.state_details.deployment_concurrency_lease_id = Some(id(2));
        // when it starts running / then the held lease is kept
        let out = decide(run, p);
        assert_eq!(
            written(&out).state_details.deployment_concurrency_lease_id,
            Some(id(1))
        );
    }

    // ---- PreventDuplicateTransitions ----

    #[test]
    fn duplicate_transition_id_is_rejected_with_current_state() {
        // given a run whose current state was made by transition X
        let mut run = run_at(StateType::Running);
        run.state.as_mut().unwrap().state_details.transition_id = Some(id(0xD0));
        // when the same transition is proposed again
        let mut p = proposal(StateType::Completed);
        p.state_details.transition_id = Some(id(0xD0));
        let out = decide(run.clone(), p);
        // then it is rejected and the current state returned unchanged
        assert_eq!(out.status, Status::Reject);
        assert_eq!(
            out.details,
            reject("This run has already made this state transition.")
        );
        assert_nothing_written(&out, &run);
        assert_eq!(out.run, run);
    }

    #[test]
    fn different_transition_id_is_accepted() {
        let mut run = run_at(StateType::Running);
        run.state.as_mut().unwrap().state_details.transition_id = Some(id(1));
        let mut p = proposal(StateType::Completed);
        p.state_details.transition_id = Some(id(2));
        assert_eq!(decide(run, p).status, Status::Accept);
    }

    // ---- HandleFlowTerminalStateTransitions ----

    #[test]
    fn terminal_runs_cannot_crash_pause_or_start_cancelling() {
        for to in [StateType::Crashed, StateType::Paused, StateType::Cancelling] {
            let run = run_at(StateType::Failed);
            let out = decide(run.clone(), proposal(to));
            assert_eq!(
                out.details,
                abort("Run is already in terminal state FAILED."),
                "{to:?}"
            );
            assert_nothing_written(&out, &run);
        }
    }

    #[test]
    fn completed_with_persisted_result_cannot_be_rerun() {
        let run = completed_with_result();
        let out = decide(run.clone(), proposal(StateType::Running));
        assert_eq!(out.details, reject("Run is already COMPLETED."));
        assert_nothing_written(&out, &run);
    }

    #[test]
    fn completed_with_persisted_result_cannot_be_overwritten_without_result() {
        let run = completed_with_result();
        let out = decide(run.clone(), proposal(StateType::Completed));
        assert_eq!(out.details, reject(RESULT_OVERWRITE_REASON));
        // a Completed with a persisted result may replace it
        let mut p = proposal(StateType::Completed);
        p.data = Some(json!({"storage_key": "new"}));
        assert_eq!(decide(run, p).status, Status::Accept);
    }

    #[test]
    fn completed_with_unpersisted_result_can_be_rerun() {
        let mut run = run_at(StateType::Completed);
        run.state.as_mut().unwrap().data = Some(json!({"type": "unpersisted"}));
        run.end_time = Some(t0() - secs(10));
        let out = decide(run, proposal(StateType::Running));
        assert_eq!(out.status, Status::Accept);
        assert_eq!(
            out.run.end_time, None,
            "leaving a final state clears end time"
        );
    }

    #[test]
    fn terminal_run_without_deployment_cannot_be_rescheduled() {
        let run = run_at(StateType::Failed);
        let out = decide(run.clone(), proposal(StateType::Scheduled));
        assert_eq!(
            out.details,
            abort("Cannot reschedule a run without an associated deployment.")
        );
        assert_nothing_written(&out, &run);
    }

    #[test]
    fn rescheduling_a_terminal_deployment_run_resets_pause_policy() {
        // given a failed deployment run that has paused before
        let mut run = run_at(StateType::Failed);
        run.deployment_id = Some(id(0xDE));
        run.empirical_policy.pause_keys = Some(vec!["k".into()]);
        run.empirical_policy.resuming = Some(true);
        // when it is rescheduled
        let out = decide(run, proposal(StateType::Scheduled));
        // then the policy is reset for a rescheduled retry
        assert_eq!(out.status, Status::Accept);
        let policy = &out.run.empirical_policy;
        assert_eq!(policy.pause_keys, Some(vec![]));
        assert_eq!(policy.resuming, Some(false));
        assert_eq!(policy.retry_type.as_deref(), Some("reschedule"));
    }

    #[test]
    fn rerunning_a_terminal_run_clears_retry_type() {
        let mut run = run_at(StateType::Failed);
        run.empirical_policy.retry_type = Some("in_process".into());
        let out = decide(run, proposal(StateType::Running));
        assert_eq!(out.run.empirical_policy.retry_type, None);
    }

    #[test]
    fn terminal_to_terminal_keeps_policy() {
        let mut run = run_at(StateType::Failed);
        run.empirical_policy.pause_keys = Some(vec!["k".into()]);
        let out = decide(run.clone(), proposal(StateType::Completed));
        assert_eq!(out.status, Status::Accept);
        assert_eq!(out.run.empirical_policy, run.empirical_policy);
    }

    #[test]
    fn old_clients_keep_policy_when_leaving_terminal() {
        let mut run = run_at(StateType::Failed);
        run.empirical_policy.pause_keys = Some(vec!["k".into()]);
        let out = decide_flow_transition(FlowTransitionInput {
            api_version: (0, 8, 3),
            deployment_slots: None,
            ..input(run.clone(), proposal(StateType::Running))
        });
        assert_eq!(
            out.run.empirical_policy.pause_keys,
            run.empirical_policy.pause_keys
        );
    }

    #[test]
    fn policy_reset_is_reverted_when_a_later_rule_rejects() {
        // given a cancelled run that has paused before
        let mut run = run_at(StateType::Cancelled);
        run.empirical_policy.pause_keys = Some(vec!["k".into()]);
        // when it proposes Pending (PreventPendingTransitions aborts later)
        let out = decide(run.clone(), proposal(StateType::Pending));
        // then the terminal rule fizzles and its policy reset is undone
        assert_eq!(
            out.details,
            abort("This run is in a CANCELLED state and cannot transition to a PENDING state.")
        );
        assert_eq!(out.run, run);
    }

    #[test]
    fn policy_reset_is_reverted_when_late_marking_is_rejected() {
        let mut run = run_at(StateType::Failed);
        run.deployment_id = Some(id(0xDE));
        run.empirical_policy.pause_keys = Some(vec!["k".into()]);
        let out = decide(run.clone(), named(StateType::Scheduled, "Late"));
        assert_eq!(
            out.details,
            reject("Only scheduled flows can be marked late.")
        );
        assert_eq!(out.run, run);
    }

    // ---- PreventResultDataLoss (force) ----

    #[test]
    fn force_cannot_discard_a_persisted_result() {
        let run = completed_with_result();
        let out = force(run.clone(), proposal(StateType::Completed));
        assert_eq!(out.details, reject(RESULT_OVERWRITE_REASON));
        assert_nothing_written(&out, &run);
    }

    #[test]
    fn force_skips_core_rules() {
        // given a completed run with a result / when forced to Running (no core rules)
        let out = force(completed_with_result(), proposal(StateType::Running));
        assert_eq!(out.status, Status::Accept);
        // and forced to Failed: still allowed
        let out = force(completed_with_result(), proposal(StateType::Failed));
        assert_eq!(out.status, Status::Accept);
    }

    // ---- EnforceCancellingToCancelledTransition ----

    #[test]
    fn cancelling_run_may_only_become_cancelled() {
        for to in [
            StateType::Completed,
            StateType::Running,
            StateType::Cancelling,
        ] {
            let run = run_at(StateType::Cancelling);
            let out = decide(run.clone(), proposal(to));
            assert_eq!(
                out.details,
                reject(
                    "Cannot transition flows that are cancelling to a state other than Cancelled."
                ),
                "{to:?}"
            );
            assert_nothing_written(&out, &run);
        }
        assert_eq!(
            decide(
                run_at(StateType::Cancelling),
                proposal(StateType::Cancelled)
            )
            .status,
            Status::Accept
        );
    }

    // ---- BypassCancellingFlowRunsWithNoInfra ----

    #[test]
    fn cancelling_scheduled_run_without_infra_cancels_directly() {
        // given a scheduled run no worker has picked up
        let mut run = run_at(StateType::Scheduled);
        run.next_scheduled_start_time = Some(t0());
        // when it is asked to cancel
        let out = decide(run, proposal(StateType::Cancelling));
        // then it becomes Cancelled right away, with bookkeeping applied
        assert_eq!(
            out.details,
            reject("Scheduled flow run has no infrastructure to terminate.")
        );
        let s = written(&out);
        assert_eq!(
            (s.state_type, s.name.as_str(), s.id),
            (StateType::Cancelled, "Cancelled", id(NEW))
        );
        assert_eq!(s.state_details.flow_run_id, Some(id(RUN)));
        assert_eq!(out.run.end_time, Some(t0()));
        assert_eq!(out.run.next_scheduled_start_time, None);
        assert_eq!(out.returned_state.as_ref(), Some(s));
    }

    #[test]
    fn cancelling_scheduled_run_with_infra_goes_to_cancelling() {
        let mut run = run_at(StateType::Scheduled);
        run.infrastructure_pid = Some("1234".into());
        let out = decide(run, proposal(StateType::Cancelling));
        assert_eq!(out.status, Status::Accept);
        assert_eq!(written(&out).state_type, StateType::Cancelling);
    }

    #[test]
    fn cancelling_resuming_run_cancels_directly_even_with_infra() {
        let mut run = run_in(Some(state(
            StateType::Scheduled,
            "Resuming",
            t0() - secs(1),
        )));
        run.infrastructure_pid = Some("1234".into());
        let out = decide(run, proposal(StateType::Cancelling));
        assert_eq!(written(&out).state_type, StateType::Cancelled);
    }

    #[test]
    fn cancelling_suspended_run_cancels_directly_even_with_force() {
        let mut run = run_in(Some(state(StateType::Paused, "Suspended", t0() - secs(1))));
        run.state.as_mut().unwrap().state_details.pause_reschedule = true;
        run.deployment_id = Some(id(0xDE));
        let out = force(run, proposal(StateType::Cancelling));
        assert_eq!(
            out.details,
            reject("Suspended flow run has no infrastructure to terminate.")
        );
        assert_eq!(written(&out).state_type, StateType::Cancelled);
    }

    #[test]
    fn cancelling_blocking_pause_goes_to_cancelling_and_marks_resuming() {
        // given a (blocking, not suspended) paused run whose pause has expired
        let mut run = run_at(StateType::Paused);
        run.state.as_mut().unwrap().state_details.pause_timeout = Some(t0() - secs(1));
        // when it is cancelled / then Cancelling is accepted despite the expiry
        let out = decide(run, proposal(StateType::Cancelling));
        assert_eq!(out.status, Status::Accept);
        assert_eq!(written(&out).state_type, StateType::Cancelling);
        assert_eq!(out.run.empirical_policy.resuming, Some(true));
    }

    // ---- PreventPendingTransitions ----

    #[test]
    fn second_pending_claim_is_aborted() {
        let run = run_at(StateType::Pending);
        let out = decide(run.clone(), proposal(StateType::Pending));
        assert_eq!(
            out.details,
            abort("This run is in a PENDING state and cannot transition to a PENDING state.")
        );
        assert_nothing_written(&out, &run);
    }

    #[test]
    fn pending_from_running_is_aborted() {
        let out = decide(run_at(StateType::Running), proposal(StateType::Pending));
        assert_eq!(
            out.details,
            abort("This run is in a RUNNING state and cannot transition to a PENDING state.")
        );
    }

    // ---- EnsureOnlyScheduledFlowsMarkedLate ----

    #[test]
    fn only_scheduled_runs_can_be_marked_late() {
        let run = run_at(StateType::Pending);
        let out = decide(run.clone(), named(StateType::Scheduled, "Late"));
        assert_eq!(
            out.details,
            reject("Only scheduled flows can be marked late.")
        );
        assert_nothing_written(&out, &run);
    }

    #[test]
    fn late_runs_are_not_marked_late_twice() {
        let run = run_in(Some(state(StateType::Scheduled, "Late", t0() - secs(1))));
        let out = decide(run, named(StateType::Scheduled, "Late"));
        assert_eq!(out.details, reject("This flow run is already marked late."));
    }

    #[test]
    fn scheduled_run_is_marked_late_keeping_its_schedule() {
        let mut run = run_at(StateType::Scheduled);
        run.state.as_mut().unwrap().state_details.scheduled_time = Some(t0() - secs(60));
        run.next_scheduled_start_time = Some(t0() - secs(60));
        let mut p = named(StateType::Scheduled, "Late");
        p.state_details.scheduled_time = Some(t0() - secs(60));
        let out = decide(run, p);
        assert_eq!(out.status, Status::Accept);
        assert_eq!(written(&out).name, "Late");
        assert_eq!(out.run.next_scheduled_start_time, Some(t0() - secs(60)));
    }

    // ---- HandlePausingFlows ----

    #[test]
    fn pausing_a_running_flow_records_the_pause_key() {
        // given a running flow / when it pauses without a key
        let out = decide(run_at(StateType::Running), proposal(StateType::Paused));
        // then the pause is written and the minted key recorded
        assert_eq!(out.status, Status::Accept);
        assert_eq!(
            out.run.empirical_policy.pause_keys,
            Some(vec!["fresh-key".to_string()])
        );
        assert_eq!(
            written(&out).state_details.pause_key,
            None,
            "the minted key is not stamped on the state"
        );
    }

    #[test]
    fn pausing_with_an_explicit_key_records_it() {
        let mut p = proposal(StateType::Paused);
        p.state_details.pause_key = Some("k1".into());
        let out = decide(run_at(StateType::Running), p);
        assert_eq!(
            out.run.empirical_policy.pause_keys,
            Some(vec!["k1".to_string()])
        );
    }

    #[test]
    fn a_pause_key_fires_once() {
        let mut run = run_at(StateType::Running);
        run.empirical_policy.pause_keys = Some(vec!["k1".into()]);
        let mut p = proposal(StateType::Paused);
        p.state_details.pause_key = Some("k1".into());
        let out = decide(run.clone(), p);
        assert_eq!(out.details, reject("This pause has already fired."));
        assert_nothing_written(&out, &run);
        assert_eq!(out.run, run);
    }

    #[test]
    fn only_running_flows_can_pause() {
        let run = run_at(StateType::Scheduled);
        let out = decide(run.clone(), named(StateType::Paused, "Suspended"));
        assert_eq!(
            out.details,
            reject("Cannot suspend flows that are not currently running.")
        );
        assert_eq!(out.run, run, "no pause key recorded for a rejected pause");
    }

    #[test]
    fn flows_without_state_cannot_pause() {
        let out = decide(run_in(None), proposal(StateType::Paused));
        assert_eq!(out.details, abort("Cannot pause flows with no state."));
        assert_eq!(out.returned_state, None);
    }

    #[test]
    fn suspending_needs_a_deployment_and_a_top_level_flow() {
        let mut p = named(StateType::Paused, "Suspended");
        p.state_details.pause_reschedule = true;
        // without a deployment
        let out = decide(run_at(StateType::Running), p.clone());
        assert_eq!(
            out.details,
            abort("Cannot suspend flows without a deployment.")
        );
        // as a subflow
        let mut run = run_at(StateType::Running);
        run.deployment_id = Some(id(0xDE));
        run.parent_task_run_id = Some(id(0x7A5C));
        let out = decide(run.clone(), p.clone());
        assert_eq!(out.details, abort("Cannot suspend subflows."));
        // a top-level deployment run may suspend
        run.parent_task_run_id = None;
        let out = decide(run, p);
        assert_eq!(out.status, Status::Accept);
        assert_eq!(
            out.run.empirical_policy.pause_keys,
            Some(vec!["fresh-key".to_string()])
        );
    }

    // ---- HandleResumingPausedFlows ----

    #[test]
    fn resuming_a_paused_flow_marks_it_resuming() {
        // given a paused run on its first attempt
        let mut run = run_at(StateType::Paused);
        run.run_count = 1;
        // when it resumes / then it is Running and marked resuming
        let out = decide(run, proposal(StateType::Running));
        assert_eq!(out.status, Status::Accept);
        assert_eq!(
            out.run.run_count, 2,
            "resuming is set only after the count (as in Prefect)"
        );
        assert_eq!(out.run.empirical_policy.resuming, Some(true));
        // and the engine's next Running does not count and clears the mark
        let out = decide(out.run, proposal(StateType::Running));
        assert_eq!(out.run.run_count, 2);
        assert_eq!(out.run.empirical_policy.resuming, Some(false));
    }

    #[test]
    fn paused_flow_cannot_go_pending_but_is_marked_resuming() {
        // given a paused run / when it proposes Pending
        let run = run_at(StateType::Paused);
        let out = decide(run.clone(), proposal(StateType::Pending));
        // then it is rejected and, as Prefect commits it, marked resuming
        assert_eq!(
            out.details,
            reject("This run cannot transition to the StateType.PENDING state from the StateType.PAUSED state.")
        );
        assert!(out.written.is_none());
        assert_eq!(out.returned_state, run.state);
        assert_eq!(out.run.empirical_policy.resuming, Some(true));
    }

    #[test]
    fn suspended_flow_without_deployment_cannot_reschedule() {
        let mut run = run_in(Some(state(StateType::Paused, "Suspended", t0() - secs(1))));
        run.state.as_mut().unwrap().state_details.pause_reschedule = true;
        let out = decide(run, named(StateType::Scheduled, "Resuming"));
        assert_eq!(
            out.details,
            reject("Cannot reschedule a resuming flow run without a deployment.")
        );
    }

    #[test]
    fn suspended_deployment_run_reschedules_as_resuming() {
        let mut run = run_in(Some(state(StateType::Paused, "Suspended", t0() - secs(1))));
        run.state.as_mut().unwrap().state_details.pause_reschedule = true;
        run.deployment_id = Some(id(0xDE));
        let out = decide(run, named(StateType::Scheduled, "Resuming"));
        assert_eq!(out.status, Status::Accept);
        assert_eq!(written(&out).name, "Resuming");
        assert_eq!(out.run.empirical_policy.resuming, Some(true));
        assert_eq!(out.run.next_scheduled_start_time, Some(t0()));
    }

    #[test]
    fn expired_pause_fails_the_run() {
        // given a pause that timed out a second ago
        let mut run = run_at(StateType::Paused);
        run.state.as_mut().unwrap().state_details.pause_timeout = Some(t0() - secs(1));
        // when the flow tries to resume
        let out = decide(run, proposal(StateType::Running));
        // then it is failed instead
        assert_eq!(
            out.details,
            reject("The flow run pause has timed out and can no longer resume.")
        );
        let s = written(&out);
        assert_eq!(
            (s.state_type, s.name.as_str()),
            (StateType::Failed, "Failed")
        );
        assert_eq!(
            s.message.as_deref(),
            Some("The flow was running and never resumed.")
        );
        assert_eq!(out.run.end_time, Some(t0()));
        assert_eq!(out.run.run_count, 0, "a rejected Running is not an attempt");
        // and RemoveResumingIndicator ran before the resume rule's after hook
        assert_eq!(out.run.empirical_policy.resuming, Some(true));
    }

    #[test]
    fn unexpired_pause_resumes() {
        let mut run = run_at(StateType::Paused);
        run.state.as_mut().unwrap().state_details.pause_timeout = Some(t0() + secs(60));
        assert_eq!(
            decide(run, proposal(StateType::Running)).status,
            Status::Accept
        );
    }

    // ---- CopyScheduledTime / WaitForScheduledTime ----

    #[test]
    fn pending_inherits_the_scheduled_time() {
        let mut run = run_at(StateType::Scheduled);
        run.state.as_mut().unwrap().state_details.scheduled_time = Some(t0() - secs(5));
        run.next_scheduled_start_time = Some(t0() - secs(5));
        let out = decide(run, proposal(StateType::Pending));
        assert_eq!(
            written(&out).state_details.scheduled_time,
            Some(t0() - secs(5))
        );
        assert_eq!(out.run.next_scheduled_start_time, None);
    }

    #[test]
    fn running_before_the_scheduled_time_waits() {
        // given a run scheduled 10.6 s from now
        let mut run = run_at(StateType::Scheduled);
        run.state.as_mut().unwrap().state_details.scheduled_time =
            Some(t0() + secs(10) + Duration::milliseconds(600));
        // when it proposes Running
        let out = decide(run.clone(), proposal(StateType::Running));
        // then it must wait 11 s (rounded) and nothing changes
        assert_eq!(
            out.details,
            Details::Wait {
                delay_seconds: 11,
                reason: "Scheduled time is in the future".into()
            }
        );
        assert_eq!(out.status, Status::Wait);
        assert_nothing_written(&out, &run);
        assert_eq!(out.run, run);
    }

    // ---- RetryFailedFlows ----

    fn running_with_retries(retries: Option<i64>, run_count: i64) -> FlowRunSnapshot {
        let mut run = run_at(StateType::Running);
        run.run_count = run_count;
        run.start_time = Some(t0() - secs(10));
        run.empirical_policy.retries = retries;
        run.empirical_policy.retry_delay = Some(5);
        run.empirical_policy.pause_keys = Some(vec!["old".into()]);
        run
    }

    #[test]
    fn failing_with_retries_left_schedules_a_retry() {
        // given a run on attempt 1 of 1+1 with a lease
        let mut run = running_with_retries(Some(1), 1);
        run.state
            .as_mut()
            .unwrap()
            .state_details
            .deployment_concurrency_lease_id = Some(id(0x1EA5E));
        // when it fails
        let mut p = proposal(StateType::Failed);
        p.message = Some("boom".into());
        p.data = Some(json!({"type": "unpersisted"}));
        let out = decide(run, p);
        // then it is rescheduled as AwaitingRetry after the delay
        assert_eq!(out.details, reject("Retrying"));
        let s = written(&out);
        assert_eq!(
            (s.state_type, s.name.as_str()),
            (StateType::Scheduled, "AwaitingRetry")
        );
        assert_eq!(s.state_details.scheduled_time, Some(t0() + secs(5)));
        assert_eq!(s.message.as_deref(), Some("boom"));
        assert_eq!(s.data, Some(json!({"type": "unpersisted"})));
        assert_eq!(
            s.state_details.deployment_concurrency_lease_id,
            Some(id(0x1EA5E))
        );
        assert_eq!(s.state_details.flow_run_id, Some(id(RUN)));
        // and the policy is reset for an in-process retry; run time accrues
        let policy = &out.run.empirical_policy;
        assert_eq!(policy.retry_type.as_deref(), Some("in_process"));
        assert_eq!(policy.pause_keys, Some(vec![]));
        assert_eq!(out.run.total_run_time, 10.0);
        assert_eq!(out.run.end_time, None);
        assert_eq!(out.run.next_scheduled_start_time, Some(t0() + secs(5)));
    }

    #[test]
    fn failing_with_retries_exhausted_fails_and_clears_retry_type() {
        let mut run = running_with_retries(Some(1), 2);
        run.empirical_policy.retry_type = Some("in_process".into());
        let out = decide(run, proposal(StateType::Failed));
        assert_eq!(out.status, Status::Accept);
        assert_eq!(written(&out).state_type, StateType::Failed);
        assert_eq!(out.run.empirical_policy.retry_type, None);
        assert_eq!(
            out.run.empirical_policy.pause_keys,
            Some(vec!["old".to_string()])
        );
    }

    #[test]
    fn failing_without_retries_fails() {
        let out = decide(running_with_retries(None, 1), proposal(StateType::Failed));
        assert_eq!(out.status, Status::Accept);
    }

    #[test]
    fn retry_delay_defaults_to_zero() {
        let mut run = running_with_retries(Some(3), 1);
        run.empirical_policy.retry_delay = None;
        let out = decide(run, proposal(StateType::Failed));
        assert_eq!(written(&out).state_details.scheduled_time, Some(t0()));
    }

    #[test]
    fn awaiting_retry_then_running_is_counted() {
        // given a run that was put into AwaitingRetry
        let out = decide(
            running_with_retries(Some(1), 1),
            proposal(StateType::Failed),
        );
        // when the engine proposes Running once the delay has passed
        let next = decide_flow_transition(FlowTransitionInput {
            now: t0() + secs(6),
            ..input(out.run, proposal(StateType::Running))
        });
        // then the attempt is counted
        assert_eq!(next.status, Status::Accept);
        assert_eq!(next.run.run_count, 2);
    }

    // ---- IncrementFlowRunCount / RemoveResumingIndicator ----

    #[test]
    fn old_clients_count_resumed_runs() {
        let mut run = run_at(StateType::Pending);
        run.empirical_policy.resuming = Some(true);
        let out = decide_flow_transition(FlowTransitionInput {
            api_version: (0, 8, 3),
            deployment_slots: None,
            ..input(run, proposal(StateType::Running))
        });
        assert_eq!(out.run.run_count, 1);
        assert_eq!(
            out.run.empirical_policy.resuming,
            Some(true),
            "no resume bookkeeping before 0.8.4"
        );
    }

    #[test]
    fn finishing_clears_resuming() {
        let mut run = run_at(StateType::Running);
        run.empirical_policy.resuming = Some(true);
        let out = decide(run, proposal(StateType::Completed));
        assert_eq!(out.run.empirical_policy.resuming, Some(false));
    }

    #[test]
    fn scheduling_keeps_resuming() {
        let mut run = run_at(StateType::Pending);
        run.empirical_policy.resuming = Some(true);
        let out = decide(run, proposal(StateType::Scheduled));
        assert_eq!(out.run.empirical_policy.resuming, Some(true));
    }

    #[test]
    fn outcome_run_equals_input_when_nothing_is_written_by_a_wait() {
        let mut run = run_at(StateType::Pending);
        run.state.as_mut().unwrap().state_details.scheduled_time = Some(t0() + secs(100));
        let out = decide(run.clone(), proposal(StateType::Running));
        assert_eq!(out.status, Status::Wait);
        assert_eq!(out.run, run);
    }

    // ---- rule order ----

    const GLOBAL: [&str; 10] = [
        "EnsureFlowRunStateTimestampIsUnique",
        "SetStartTime",
        "SetEndTime",
        "IncrementRunTime",
        "SetExpectedStartTime",
        "SetNextScheduledStartTime",
        "UpdateStateDetails",
        "UpdateSubflowStateDetails",
        "IncrementFlowRunCount",
        "RemoveResumingIndicator",
    ];

    fn fired(input: FlowTransitionInput) -> Vec<&'static str> {
        decide_with_signature(input).1
    }

    #[test]
    fn core_rules_fire_in_prefect_order() {
        // given Scheduled -> Running / then the matching rules fire in policy order, then bookkeeping
        let mut expected = vec![
            "PreserveDeploymentConcurrencyLeaseId",
            "PreventDuplicateTransitions",
            "WaitForScheduledTime",
        ];
        expected.extend(GLOBAL);
        assert_eq!(
            fired(input(
                run_at(StateType::Scheduled),
                proposal(StateType::Running)
            )),
            expected
        );
        // given Paused -> Cancelling
        let mut expected = vec![
            "PreserveDeploymentConcurrencyLeaseId",
            "PreventDuplicateTransitions",
            "BypassCancellingFlowRunsWithNoInfra",
            "HandleResumingPausedFlows",
        ];
        expected.extend(GLOBAL);
        assert_eq!(
            fired(input(
                run_at(StateType::Paused),
                proposal(StateType::Cancelling)
            )),
            expected
        );
    }

    #[test]
    fn rules_after_an_intervention_do_not_fire() {
        // given a terminal run proposing Pending from Cancelled: the pending rule aborts
        let names = fired(input(
            run_at(StateType::Cancelled),
            proposal(StateType::Pending),
        ));
        assert_eq!(
            names,
            [
                "PreserveDeploymentConcurrencyLeaseId",
                "PreventDuplicateTransitions",
                "HandleFlowTerminalStateTransitions",
                "PreventPendingTransitions",
            ]
        );
    }

    #[test]
    fn forced_transitions_fire_only_minimal_rules() {
        let mut expected = vec!["BypassCancellingFlowRunsWithNoInfra"];
        expected.extend(GLOBAL);
        let names = fired(FlowTransitionInput {
            force: true,
            ..input(
                run_at(StateType::Scheduled),
                proposal(StateType::Cancelling),
            )
        });
        // the bypass rejects into Cancelled, but bookkeeping still applies
        assert_eq!(names, expected);
        let names = fired(FlowTransitionInput {
            force: true,
            ..input(run_at(StateType::Failed), proposal(StateType::Completed))
        });
        assert_eq!(names[0], "PreventResultDataLoss");
    }

    // ---- SecureFlowConcurrencySlots ----

    fn deployment_run() -> FlowRunSnapshot {
        FlowRunSnapshot { deployment_id: Some(id(0xDE9)), ..run_at(StateType::Scheduled) }
    }

    fn claim(slots: DeploymentSlots) -> FlowTransitionOutcome {
        decide_flow_transition(FlowTransitionInput {
            deployment_slots: Some(slots),
            ..input(deployment_run(), proposal(StateType::Pending))
        })
    }

    fn slots(limit: i64, active: i64, cancel_new: bool) -> DeploymentSlots {
        DeploymentSlots { limit, active, cancel_new, wait_seconds: 30 }
    }

    #[test]
    fn a_free_deployment_slot_lets_the_run_become_pending() {
        let out = claim(slots(2, 1, false));
        assert_eq!(out.status, Status::Accept);
        assert_eq!(written(&out).state_type, StateType::Pending);
    }

    #[test]
    fn a_full_deployment_enqueues_the_run_as_awaiting_a_slot() {
        let out = claim(slots(2, 2, false));
        assert_eq!(out.status, Status::Reject);
        assert_eq!(out.details, reject("Deployment concurrency limit reached."));
        let s = written(&out);
        assert_eq!((s.state_type, s.name.as_str()), (StateType::Scheduled, "AwaitingConcurrencySlot"));
        assert_eq!(s.state_details.scheduled_time, Some(t0() + secs(30)));
    }

    #[test]
    fn a_full_deployment_with_cancel_new_cancels_the_run() {
        let out = claim(slots(1, 1, true));
        assert_eq!(out.status, Status::Reject);
        let s = written(&out);
        assert_eq!((s.state_type, s.message.as_deref()), (StateType::Cancelled, Some("Deployment concurrency limit reached.")));
    }

    #[test]
    fn a_zero_deployment_limit_aborts() {
        let out = claim(slots(0, 0, false));
        assert_eq!(out.status, Status::Abort);
        assert_eq!(out.details, abort("The deployment concurrency limit is 0. The flow will deadlock if submitted again."));
        assert!(out.written.is_none());
    }

    #[test]
    fn slots_do_not_apply_without_a_deployment_or_when_forced() {
        let plain = decide_flow_transition(FlowTransitionInput {
            deployment_slots: Some(slots(1, 5, false)),
            ..input(run_at(StateType::Scheduled), proposal(StateType::Pending))
        });
        assert_eq!(plain.status, Status::Accept);
        let forced = decide_flow_transition(FlowTransitionInput {
            force: true,
            deployment_slots: Some(slots(1, 5, false)),
            ..input(deployment_run(), proposal(StateType::Pending))
        });
        assert_eq!(forced.status, Status::Accept);
    }

}
