//! Prefect's orchestration rules as pure functions: given a run's current
//! state and a proposed state, decide ACCEPT / REJECT / WAIT / ABORT and the
//! run's bookkeeping. No I/O: commands load what the rules need first.

pub mod concurrency_limits;
pub mod flow_policy;
pub mod hydration;
pub mod job_variables;
pub mod outcome;
pub mod parameters;
pub mod states;
pub mod task_policy;
