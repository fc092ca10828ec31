//! Deployments and their schedules as Prefect returns them
//! (`DeploymentResponse`, `DeploymentSchedule`).

use serde_json::{json, Map, Value};
use sqlx::{AnyConnection, Row};

use super::documents::{DEPLOYMENT, DEPLOYMENT_SCHEDULE};
use super::work_pools::select_docs;
use crate::db::{Bind, Dialect};

/// `DeploymentResponse` fields, in Prefect's order.
const ORDER: &[&str] = &[
    "id",
    "created",
    "updated",
    "name",
    "version",
    "description",
    "flow_id",
    "paused",
    "schedules",
    "concurrency_limit",
    "global_concurrency_limit",
    "concurrency_options",
    "job_variables",
    "parameters",
    "tags",
    "labels",
    "work_queue_name",
    "work_queue_id",
    "last_polled",
    "parameter_openapi_schema",
    "path",
    "pull_steps",
    "entrypoint",
    "storage_document_id",
    "infrastructure_document_id",
    "created_by",
    "updated_by",
    "work_pool_name",
    "status",
    "enforce_parameter_schema",
];

/// A deployment's schedules (`DeploymentSchedule`), oldest first.
pub async fn schedules(conn: &mut AnyConnection, dialect: Dialect, deployment_id: &str) -> Result<Vec<Value>, sqlx::Error> {
    let rows = select_docs(conn, dialect, &DEPLOYMENT_SCHEDULE, "t.deployment_id = $1", "t.created, t.id", &[Bind::Text(deployment_id.to_owned())]).await?;
    Ok(rows.into_iter().map(Value::Object).collect())
}

/// `DeploymentResponse` for a deployment row.
pub async fn deployment_json(conn: &mut AnyConnection, dialect: Dialect, mut d: Map<String, Value>) -> Result<Value, sqlx::Error> {
    let id = d.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    d.insert("schedules".into(), Value::Array(schedules(conn, dialect, &id).await?));
    let pool_name = match d.get("work_queue_id").and_then(Value::as_str) {
        Some(qid) => sqlx::query(&dialect.rewrite("SELECT p.name FROM work_queue q JOIN work_pool p ON p.id = q.work_pool_id WHERE q.id = $1"))
            .bind(qid.to_owned())
            .fetch_optional(&mut *conn)
            .await?
            .and_then(|r| r.try_get::<String, _>(0).ok()),
        None => None,
    };
    d.insert("work_pool_name".into(), json!(pool_name));
    // Prefect answers the deprecated `concurrency_limit` as null and the
    // deployment's own v2 limit as `global_concurrency_limit`.
    d.insert("concurrency_limit".into(), Value::Null);
    let gcl = match uuid::Uuid::parse_str(&id) {
        Ok(uid) => super::concurrency_limits::deployment_limit_response(conn, dialect, uid).await?,
        Err(_) => Value::Null,
    };
    d.insert("global_concurrency_limit".into(), gcl);
    let mut out = Map::new();
    for key in ORDER {
        out.insert((*key).to_owned(), d.remove(*key).unwrap_or(Value::Null));
    }
    Ok(Value::Object(out))
}

pub async fn read_deployment(conn: &mut AnyConnection, dialect: Dialect, cond: &str, binds: &[Bind]) -> Result<Option<Value>, sqlx::Error> {
    let rows = select_docs(conn, dialect, &DEPLOYMENT, cond, "t.id", binds).await?;
    match rows.into_iter().next() {
        Some(d) => Ok(Some(deployment_json(conn, dialect, d).await?)),
        None => Ok(None),
    }
}

/// The column list for filter queries on `deployment`.
pub fn columns() -> String {
    DEPLOYMENT.select_list("deployment")
}

/// Rows of a built filter query as `DeploymentResponse`s.
pub async fn rows_json(conn: &mut AnyConnection, dialect: Dialect, rows: &[sqlx::any::AnyRow]) -> Result<Vec<Value>, sqlx::Error> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(deployment_json(conn, dialect, DEPLOYMENT.row_json(r)).await?);
    }
    Ok(out)
}

/// The work queues that would pick up a deployment, for the deprecated
/// `GET /deployments/{id}/work_queue_check` (Prefect's
/// `check_work_queues_for_deployment`): a queue's legacy `filter` must name
/// only tags the deployment has and, if it lists deployment ids, this one.
/// Queues without a filter take anything. Answered as Prefect's core
/// `WorkQueue` (no status, pool name or slots), oldest first.
pub async fn queues_for_deployment(conn: &mut AnyConnection, dialect: Dialect, deployment: &Value) -> Result<Vec<Value>, sqlx::Error> {
    let queues = select_docs(conn, dialect, &super::documents::WORK_QUEUE, "1 = 1", "t.created, t.id", &[]).await?;
    Ok(queues.into_iter().filter(|q| picks_up(q.get("filter").unwrap_or(&Value::Null), deployment)).map(core_work_queue).collect())
}

fn picks_up(filter: &Value, deployment: &Value) -> bool {
    let strings = |v: Option<&Value>| -> Vec<String> { v.and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect() };
    let tags = strings(filter.get("tags"));
    let deployment_tags = strings(deployment.get("tags"));
    let ids = strings(filter.get("deployment_ids"));
    let id = deployment.get("id").and_then(Value::as_str).unwrap_or_default();
    tags.iter().all(|t| deployment_tags.contains(t)) && (ids.is_empty() || ids.iter().any(|i| i == id))
}

fn core_work_queue(q: Map<String, Value>) -> Value {
    const FIELDS: &[&str] = &["id", "created", "updated", "name", "description", "is_paused", "concurrency_limit", "priority", "work_pool_id", "filter", "last_polled"];
    Value::Object(FIELDS.iter().map(|f| ((*f).to_owned(), q.get(*f).cloned().unwrap_or(Value::Null))).collect())
}

#[cfg(test)]
mod work_queue_check_tests {
    use super::*;

    #[test]
    fn a_queue_picks_up_deployments_with_all_its_tags_and_listed_ids() {
        let d = json!({"id": "d1", "tags": ["a", "b"]});
        assert!(picks_up(&Value::Null, &d));
        assert!(picks_up(&json!({"tags": null, "deployment_ids": null}), &d));
        assert!(picks_up(&json!({"tags": ["a"], "deployment_ids": []}), &d));
        assert!(!picks_up(&json!({"tags": ["zz"]}), &d));
        assert!(picks_up(&json!({"deployment_ids": ["d1", "d2"]}), &d));
        assert!(!picks_up(&json!({"deployment_ids": ["d2"]}), &d));
    }
}
