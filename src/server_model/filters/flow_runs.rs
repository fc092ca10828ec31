//! `FlowRunFilter` (prefect/server/schemas/filters.py) and its SQL.

use serde::Deserialize;
use uuid::Uuid;

use super::common::{combine, null_check, op, state_types, uuids, Ctx, Operator, StateType, Timestamp};
use crate::db::sql::Dialect;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRunFilter {
    pub operator: Option<Operator>,
    pub id: Option<FlowRunFilterId>,
    pub name: Option<FlowRunFilterName>,
    pub tags: Option<FlowRunFilterTags>,
    pub deployment_id: Option<FlowRunFilterDeploymentId>,
    pub work_queue_name: Option<FlowRunFilterWorkQueueName>,
    pub state: Option<FlowRunFilterState>,
    pub flow_version: Option<FlowRunFilterFlowVersion>,
    pub start_time: Option<FlowRunFilterStartTime>,
    pub end_time: Option<FlowRunFilterEndTime>,
    pub expected_start_time: Option<FlowRunFilterExpectedStartTime>,
    pub next_scheduled_start_time: Option<FlowRunFilterNextScheduledStartTime>,
    pub parent_flow_run_id: Option<FlowRunFilterParentFlowRunId>,
    pub parent_task_run_id: Option<FlowRunFilterParentTaskRunId>,
    pub idempotency_key: Option<FlowRunFilterIdempotencyKey>,
    pub created_by: Option<FlowRunFilterCreatedBy>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRunFilterId {
    pub any_: Option<Vec<Uuid>>,
    pub not_any_: Option<Vec<Uuid>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRunFilterName {
    pub any_: Option<Vec<String>>,
    pub like_: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRunFilterTags {
    pub operator: Option<Operator>,
    pub all_: Option<Vec<String>>,
    pub any_: Option<Vec<String>>,
    pub is_null_: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRunFilterDeploymentId {
    pub operator: Option<Operator>,
    pub any_: Option<Vec<Uuid>>,
    pub is_null_: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRunFilterWorkQueueName {
    pub operator: Option<Operator>,
    pub any_: Option<Vec<String>>,
    pub is_null_: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRunFilterStateType {
    pub any_: Option<Vec<StateType>>,
    pub not_any_: Option<Vec<StateType>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRunFilterStateName {
    pub any_: Option<Vec<String>>,
    pub not_any_: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRunFilterState {
    pub operator: Option<Operator>,
    #[serde(rename = "type")]
    pub type_: Option<FlowRunFilterStateType>,
    pub name: Option<FlowRunFilterStateName>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRunFilterFlowVersion {
    pub any_: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRunFilterStartTime {
    pub before_: Option<Timestamp>,
    pub after_: Option<Timestamp>,
    pub is_null_: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRunFilterEndTime {
    pub before_: Option<Timestamp>,
    pub after_: Option<Timestamp>,
    pub is_null_: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRunFilterExpectedStartTime {
    pub before_: Option<Timestamp>,
    pub after_: Option<Timestamp>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRunFilterNextScheduledStartTime {
    pub before_: Option<Timestamp>,
    pub after_: Option<Timestamp>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRunFilterParentFlowRunId {
    pub operator: Option<Operator>,
    pub any_: Option<Vec<Uuid>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRunFilterParentTaskRunId {
    pub operator: Option<Operator>,
    pub any_: Option<Vec<Uuid>>,
    pub is_null_: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRunFilterIdempotencyKey {
    pub any_: Option<Vec<String>>,
    pub not_any_: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRunFilterCreatedBy {
    pub operator: Option<Operator>,
    pub id_: Option<Vec<Uuid>>,
    pub type_: Option<Vec<String>>,
    pub is_null_: Option<bool>,
}

impl FlowRunFilter {
    /// True when the only criterion is a non-empty `id.any_` (Prefect's
    /// `only_filters_on_id`, used for a task-run shortcut).
    pub fn only_filters_on_id(&self) -> bool {
        let id_only = matches!(&self.id, Some(id)
            if id.any_.as_ref().is_some_and(|v| !v.is_empty())
                && id.not_any_.as_ref().is_none_or(|v| v.is_empty()));
        id_only
            && self.name.is_none()
            && self.tags.is_none()
            && self.deployment_id.is_none()
            && self.work_queue_name.is_none()
            && self.state.is_none()
            && self.flow_version.is_none()
            && self.start_time.is_none()
            && self.end_time.is_none()
            && self.expected_start_time.is_none()
            && self.next_scheduled_start_time.is_none()
            && self.parent_flow_run_id.is_none()
            && self.parent_task_run_id.is_none()
            && self.idempotency_key.is_none()
            && self.created_by.is_none()
    }

    /// The filter as a condition on the `flow_run` table (or alias) `t`.
    pub(crate) fn to_sql(&self, ctx: &mut Ctx, t: &str) -> String {
        let mut parts = Vec::new();
        if let Some(f) = &self.id {
            let mut p = Vec::new();
            if let Some(any) = &f.any_ {
                p.push(ctx.in_list(&format!("{t}.id"), &uuids(any)));
            }
            if let Some(not_any) = f.not_any_.as_ref().filter(|v| !v.is_empty()) {
                p.push(ctx.not_in_list(&format!("{t}.id"), &uuids(not_any)));
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
            let p = ctx.tags(&format!("{t}.tags"), f.all_.as_deref(), f.any_.as_deref(), f.is_null_);
            parts.push(combine(p, op(f.operator)));
        }
        if let Some(f) = &self.deployment_id {
            let col = format!("{t}.deployment_id");
            let mut p = Vec::new();
            if let Some(any) = &f.any_ {
                p.push(ctx.in_list(&col, &uuids(any)));
            }
            if let Some(is_null) = f.is_null_ {
                p.push(null_check(&col, is_null));
            }
            parts.push(combine(p, op(f.operator)));
        }
        if let Some(f) = &self.work_queue_name {
            let col = format!("{t}.work_queue_name");
            let mut p = Vec::new();
            if let Some(any) = &f.any_ {
                p.push(ctx.in_list(&col, any));
            }
            if let Some(is_null) = f.is_null_ {
                p.push(null_check(&col, is_null));
            }
            parts.push(combine(p, op(f.operator)));
        }
        if let Some(f) = &self.flow_version {
            let mut p = Vec::new();
            if let Some(any) = &f.any_ {
                p.push(ctx.in_list(&format!("{t}.flow_version"), any));
            }
            parts.push(combine(p, Operator::And));
        }
        if let Some(f) = &self.state {
            parts.push(state_sql(ctx, t, f));
        }
        if let Some(f) = &self.start_time {
            // Prefect compares coalesce(start_time, expected_start_time).
            let expr = format!("COALESCE({t}.start_time, {t}.expected_start_time)");
            let col = format!("{t}.start_time");
            let p = ctx.time_range(&expr, f.before_.as_ref(), f.after_.as_ref(), Some((&col, f.is_null_)));
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
        if let Some(f) = &self.next_scheduled_start_time {
            let col = format!("{t}.next_scheduled_start_time");
            let p = ctx.time_range(&col, f.before_.as_ref(), f.after_.as_ref(), None);
            parts.push(combine(p, Operator::And));
        }
        if let Some(f) = &self.parent_flow_run_id {
            let mut p = Vec::new();
            if let Some(any) = &f.any_ {
                // Subflows of the given runs: runs whose parent task run
                // belongs to one of them.
                let a = ctx.alias("parent_task");
                let inner = ctx.in_list(&format!("{a}.flow_run_id"), &uuids(any));
                p.push(format!("{t}.parent_task_run_id IN (SELECT {a}.id FROM task_run {a} WHERE {inner})"));
            }
            parts.push(combine(p, op(f.operator)));
        }
        if let Some(f) = &self.parent_task_run_id {
            let col = format!("{t}.parent_task_run_id");
            let mut p = Vec::new();
            if let Some(any) = &f.any_ {
                p.push(ctx.in_list(&col, &uuids(any)));
            }
            if let Some(is_null) = f.is_null_ {
                p.push(null_check(&col, is_null));
            }
            parts.push(combine(p, op(f.operator)));
        }
        if let Some(f) = &self.idempotency_key {
            let col = format!("{t}.idempotency_key");
            let mut p = Vec::new();
            if let Some(any) = &f.any_ {
                p.push(ctx.in_list(&col, any));
            }
            if let Some(not_any) = f.not_any_.as_ref().filter(|v| !v.is_empty()) {
                p.push(ctx.not_in_list(&col, not_any));
            }
            parts.push(combine(p, Operator::And));
        }
        if let Some(f) = &self.created_by {
            let col = format!("{t}.created_by");
            let mut p = Vec::new();
            if let Some(ids) = &f.id_ {
                let key = json_text_field(ctx, &col, "id");
                p.push(ctx.in_list(&key, &uuids(ids)));
            }
            if let Some(types) = &f.type_ {
                let key = json_text_field(ctx, &col, "type");
                p.push(ctx.in_list(&key, types));
            }
            if let Some(is_null) = f.is_null_ {
                p.push(null_check(&col, is_null));
            }
            parts.push(combine(p, op(f.operator)));
        }
        combine(parts, op(self.operator))
    }
}

/// Prefect keeps a state sub-filter only when it compiles to a single
/// comparison: `type` with both `any_` and a non-empty `not_any_` (or with
/// neither) is dropped, and likewise for `name`. We do the same.
fn state_sql(ctx: &mut Ctx, t: &str, f: &FlowRunFilterState) -> String {
    let mut p = Vec::new();
    if let Some(ty) = &f.type_ {
        let col = format!("{t}.state_type");
        let not_any = ty.not_any_.as_ref().filter(|v| !v.is_empty());
        match (&ty.any_, not_any) {
            (Some(any), None) => p.push(ctx.in_list(&col, &state_types(any))),
            (None, Some(not_any)) => p.push(ctx.not_in_list(&col, &state_types(not_any))),
            _ => {}
        }
    }
    if let Some(name) = &f.name {
        let col = format!("{t}.state_name");
        let not_any = name.not_any_.as_ref().filter(|v| !v.is_empty());
        match (&name.any_, not_any) {
            (Some(any), None) => p.push(ctx.in_list(&col, any)),
            (None, Some(not_any)) => p.push(ctx.not_in_list(&col, not_any)),
            _ => {}
        }
    }
    combine(p, op(f.operator))
}

/// The text of key `key` in the JSON text column `col`. SQLite's JSON path
/// needs a `$`, which may not appear in statement text, so it is bound.
fn json_text_field(ctx: &mut Ctx, col: &str, key: &str) -> String {
    match ctx.dialect {
        Dialect::Postgres => format!("(({col})::jsonb ->> '{key}')"),
        Dialect::Sqlite => {
            let path = ctx.bind(format!("$.{key}"));
            format!("json_extract({col}, {path})")
        }
    }
}
