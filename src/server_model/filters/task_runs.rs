//! `TaskRunFilter` (prefect/server/schemas/filters.py) and its SQL.

use serde::Deserialize;
use uuid::Uuid;

use super::common::{combine, null_check, op, state_types, uuids, Ctx, Operator, StateType, Timestamp};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRunFilter {
    pub operator: Option<Operator>,
    pub id: Option<TaskRunFilterId>,
    pub name: Option<TaskRunFilterName>,
    pub tags: Option<TaskRunFilterTags>,
    pub state: Option<TaskRunFilterState>,
    pub start_time: Option<TaskRunFilterStartTime>,
    pub end_time: Option<TaskRunFilterEndTime>,
    pub expected_start_time: Option<TaskRunFilterExpectedStartTime>,
    pub subflow_runs: Option<TaskRunFilterSubFlowRuns>,
    pub flow_run_id: Option<TaskRunFilterFlowRunId>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRunFilterId {
    pub any_: Option<Vec<Uuid>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRunFilterName {
    pub any_: Option<Vec<String>>,
    pub like_: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRunFilterTags {
    pub operator: Option<Operator>,
    pub all_: Option<Vec<String>>,
    pub is_null_: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRunFilterStateType {
    pub any_: Option<Vec<StateType>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRunFilterStateName {
    pub any_: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRunFilterState {
    pub operator: Option<Operator>,
    #[serde(rename = "type")]
    pub type_: Option<TaskRunFilterStateType>,
    pub name: Option<TaskRunFilterStateName>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRunFilterSubFlowRuns {
    pub exists_: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRunFilterStartTime {
    pub before_: Option<Timestamp>,
    pub after_: Option<Timestamp>,
    pub is_null_: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRunFilterEndTime {
    pub before_: Option<Timestamp>,
    pub after_: Option<Timestamp>,
    pub is_null_: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRunFilterExpectedStartTime {
    pub before_: Option<Timestamp>,
    pub after_: Option<Timestamp>,
}

/// Note Prefect's default: an absent `is_null_` means `false` (only task runs
/// with a flow run), while an explicit `null` means "no constraint".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRunFilterFlowRunId {
    pub operator: Option<Operator>,
    pub any_: Option<Vec<Uuid>>,
    #[serde(default = "some_false")]
    pub is_null_: Option<bool>,
}

impl Default for TaskRunFilterFlowRunId {
    fn default() -> Self {
        TaskRunFilterFlowRunId { operator: None, any_: None, is_null_: Some(false) }
    }
}

fn some_false() -> Option<bool> {
    Some(false)
}

impl TaskRunFilter {
    /// The filter as a condition on the `task_run` table (or alias) `t`.
    pub(crate) fn to_sql(&self, ctx: &mut Ctx, t: &str) -> String {
        let mut parts = Vec::new();
        if let Some(f) = &self.id {
            let mut p = Vec::new();
            if let Some(any) = &f.any_ {
                p.push(ctx.in_list(&format!("{t}.id"), &uuids(any)));
            }
            parts.push(combine(p, Operator::And));
        }
        if let Some(f) = &self.name {
            let mut p = Vec::new();
            if let Some(any) = &f.any_ {
                p.push(ctx.in_list(&format!("{t}.name"), any));
            }
            if let Some(like) = f.like_.as_deref().filter(|s| !s.is_empty()) {
                p.push(ctx.ilike_contains(&format!("{t}.name"), like));
            }
            parts.push(combine(p, Operator::And));
        }
        if let Some(f) = &self.tags {
            let p = ctx.tags(&format!("{t}.tags"), f.all_.as_deref(), None, f.is_null_);
            parts.push(combine(p, op(f.operator)));
        }
        if let Some(f) = &self.state {
            let mut p = Vec::new();
            if let Some(any) = f.type_.as_ref().and_then(|s| s.any_.as_ref()) {
                p.push(ctx.in_list(&format!("{t}.state_type"), &state_types(any)));
            }
            if let Some(any) = f.name.as_ref().and_then(|s| s.any_.as_ref()) {
                p.push(ctx.in_list(&format!("{t}.state_name"), any));
            }
            parts.push(combine(p, op(f.operator)));
        }
        if let Some(f) = &self.start_time {
            let col = format!("{t}.start_time");
            let p = ctx.time_range(&col, f.before_.as_ref(), f.after_.as_ref(), Some((&col, f.is_null_)));
            parts.push(combine(p, Operator::And));
        }
        if let Some(f) = &self.end_time {
            let col = format!("{t}.end_time");
            let p = ctx.time_range(&col, f.before_.as_ref(), f.after_.as_ref(), Some((&col, f.is_null_)));
            parts.push(combine(p, Operator::And));
        }
        if let Some(f) = &self.expected_start_time {
            let col = format!("{t}.expected_start_time");
            let p = ctx.time_range(&col, f.before_.as_ref(), f.after_.as_ref(), None);
            parts.push(combine(p, Operator::And));
        }
        if let Some(f) = &self.subflow_runs {
            let mut p = Vec::new();
            if let Some(exists) = f.exists_ {
                let a = ctx.alias("subflow");
                let e = format!("EXISTS (SELECT 1 FROM flow_run {a} WHERE {a}.parent_task_run_id = {t}.id)");
                p.push(if exists { e } else { format!("NOT {e}") });
            }
            parts.push(combine(p, Operator::And));
        }
        if let Some(f) = &self.flow_run_id {
            let col = format!("{t}.flow_run_id");
            let mut p = Vec::new();
            match (f.is_null_, &f.any_) {
                (Some(true), _) => p.push(null_check(&col, true)),
                (Some(false), None) => p.push(null_check(&col, false)),
                (_, Some(any)) => p.push(ctx.in_list(&col, &uuids(any))),
                (None, None) => {}
            }
            parts.push(combine(p, op(f.operator)));
        }
        combine(parts, op(self.operator))
    }
}
