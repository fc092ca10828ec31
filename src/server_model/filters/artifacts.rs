//! `/artifacts/filter|count` and `/artifacts/latest/filter|count`: an
//! `ArtifactFilter` (or `ArtifactCollectionFilter`) on the table itself,
//! plus flow-run, flow, deployment and task-run filters on the runs the
//! artifact belongs to, as Prefect's `_apply_artifact_filters` joins them.

use serde::Deserialize;
use serde_json::Value;

use super::common::Ctx;
use super::{all_of, documents, lax_int, FilterError, FlowFilter, FlowRunFilter, TaskRunFilter};
use crate::db::sql::{Dialect, Sql};

/// The body of the four artifact filter routes (other keys are ignored, as
/// FastAPI does for body parameters).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ArtifactFilterBody {
    /// `ArtifactFilter` or `ArtifactCollectionFilter`.
    pub artifacts: Option<Value>,
    pub flow_runs: Option<FlowRunFilter>,
    pub task_runs: Option<TaskRunFilter>,
    pub flows: Option<FlowFilter>,
    /// `DeploymentFilter`.
    pub deployments: Option<Value>,
    pub sort: Option<String>,
    #[serde(default, deserialize_with = "lax_int")]
    pub limit: Option<i64>,
    #[serde(default, deserialize_with = "lax_int")]
    pub offset: Option<i64>,
}

/// The WHERE condition on alias `t` (table `artifact`, or
/// `artifact_collection` when `collection`).
pub fn artifacts_where(body: &ArtifactFilterBody, collection: bool, dialect: Dialect, sql: &mut Sql, workspace_id: &str) -> Result<String, FilterError> {
    let mut ctx = Ctx::new(sql, dialect);
    let ws = ctx.bind(workspace_id);
    let mut parts = vec![format!("t.workspace_id = {ws}")];
    if let Some(f) = body.artifacts.as_ref().filter(|v| !v.is_null()) {
        let fields = if collection { documents::ARTIFACT_COLLECTION_FILTER } else { documents::ARTIFACT_FILTER };
        parts.push(documents::compile(&mut ctx, f, fields, "t", &["body", "artifacts"])?);
    }
    let deployments = body.deployments.as_ref().filter(|v| !v.is_null());
    if body.flow_runs.is_some() || body.flows.is_some() || deployments.is_some() {
        let fr = ctx.alias("flow_run");
        let mut from = format!("flow_run {fr}");
        let mut conds = vec![format!("{fr}.id = t.flow_run_id")];
        if let Some(f) = &body.flow_runs {
            conds.push(f.to_sql(&mut ctx, &fr));
        }
        if let Some(f) = &body.flows {
            let fl = ctx.alias("flow");
            from.push_str(&format!(" JOIN flow {fl} ON {fl}.id = {fr}.flow_id"));
            conds.push(f.to_sql(&mut ctx, &fl));
        }
        if let Some(f) = deployments {
            let d = ctx.alias("deployment");
            from.push_str(&format!(" JOIN deployment {d} ON {d}.id = {fr}.deployment_id"));
            conds.push(documents::compile(&mut ctx, f, documents::DEPLOYMENT_FILTER, &d, &["body", "deployments"])?);
        }
        parts.push(format!("EXISTS (SELECT 1 FROM {from} WHERE {})", all_of(&conds)));
    }
    if let Some(f) = &body.task_runs {
        let tr = ctx.alias("task_run");
        let cond = f.to_sql(&mut ctx, &tr);
        parts.push(format!("EXISTS (SELECT 1 FROM task_run {tr} WHERE ({tr}.id = t.task_run_id) AND ({cond}))"));
    }
    Ok(all_of(&parts))
}
