//! The related resources of a flow run's state events (Prefect's
//! `_flow_run_related_resources_from_orm`): its flow, deployment, work queue,
//! work pool (with its type) and parent task run, every tag of the run and
//! of those objects (sorted), and the run's creator when it is a deployment
//! or an automation. Automations match on these (`match_related` on a
//! deployment, say) and infer their targets from them, and the UI filters
//! the feed by them.

use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::db::Dialect;

/// One related object: id, name and tags.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Named {
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRelations {
    pub flow: Option<Named>,
    pub deployment: Option<Named>,
    pub work_queue: Option<Named>,
    /// The pool and its type.
    pub work_pool: Option<(Named, String)>,
    pub task_run: Option<Named>,
    pub run_tags: Vec<String>,
    pub created_by: Value,
}

/// The ids of what a run relates to, as SQL expressions (columns of
/// `flow_run`, or `$n` binds).
pub struct RelationIds<'a> {
    pub flow: &'a str,
    pub deployment: &'a str,
    pub work_queue: &'a str,
    pub work_pool: &'a str,
    pub task_run: &'a str,
}

/// The extra select-list columns (each a key lookup) that read the names,
/// tags and pool type of what the run relates to, prefixed `rel_`.
pub fn columns(ids: &RelationIds) -> String {
    let RelationIds { flow, deployment, work_queue, work_pool, task_run } = ids;
    [
        format!("(SELECT name FROM flow WHERE id = {flow}) AS rel_flow_name"),
        format!("(SELECT tags FROM flow WHERE id = {flow}) AS rel_flow_tags"),
        format!("(SELECT name FROM deployment WHERE id = {deployment}) AS rel_deployment_name"),
        format!("(SELECT tags FROM deployment WHERE id = {deployment}) AS rel_deployment_tags"),
        format!("(SELECT name FROM work_queue WHERE id = {work_queue}) AS rel_work_queue_name"),
        format!("(SELECT name FROM work_pool WHERE id = {work_pool}) AS rel_work_pool_name"),
        format!("(SELECT type FROM work_pool WHERE id = {work_pool}) AS rel_work_pool_type"),
        format!("(SELECT name FROM task_run WHERE id = {task_run}) AS rel_task_run_name"),
        format!("(SELECT tags FROM task_run WHERE id = {task_run}) AS rel_task_run_tags"),
    ]
    .join(", ")
}

fn text(row: &AnyRow, col: &str) -> Option<String> {
    row.try_get::<Option<String>, _>(col).ok().flatten()
}

fn tags(row: &AnyRow, col: &str) -> Vec<String> {
    text(row, col).and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
}

/// The ids of a run, by kind.
#[derive(Debug, Clone, Default)]
pub struct RunIds {
    pub flow: Option<String>,
    pub deployment: Option<String>,
    pub work_queue: Option<String>,
    pub work_pool: Option<String>,
    pub task_run: Option<String>,
}

impl RunRelations {
    /// Reads the `rel_` columns of [`columns`] from `row`, for the run with
    /// these ids, tags and creator.
    pub fn from_row(row: &AnyRow, ids: &RunIds, run_tags: Vec<String>, created_by: Value) -> RunRelations {
        let named = |id: &Option<String>, name_col: &str, tags_col: Option<&str>| -> Option<Named> {
            let id = id.clone()?;
            let name = text(row, name_col)?;
            Some(Named { id, name, tags: tags_col.map(|c| tags(row, c)).unwrap_or_default() })
        };
        RunRelations {
            flow: named(&ids.flow, "rel_flow_name", Some("rel_flow_tags")),
            deployment: named(&ids.deployment, "rel_deployment_name", Some("rel_deployment_tags")),
            work_queue: named(&ids.work_queue, "rel_work_queue_name", None),
            work_pool: named(&ids.work_pool, "rel_work_pool_name", None).map(|p| (p, text(row, "rel_work_pool_type").unwrap_or_default())),
            task_run: named(&ids.task_run, "rel_task_run_name", Some("rel_task_run_tags")),
            run_tags,
            created_by,
        }
    }

    /// Reads the relations of a run that is not stored yet (it is being
    /// created), in one round trip.
    pub async fn load(conn: &mut AnyConnection, dialect: Dialect, ids: &RunIds, run_tags: Vec<String>, created_by: Value) -> Result<RunRelations, sqlx::Error> {
        let sql = format!("SELECT {}", columns(&RelationIds { flow: "$1", deployment: "$2", work_queue: "$3", work_pool: "$4", task_run: "$5" }));
        let row = sqlx::query(&dialect.rewrite(&sql))
            .bind(ids.flow.clone())
            .bind(ids.deployment.clone())
            .bind(ids.work_queue.clone())
            .bind(ids.work_pool.clone())
            .bind(ids.task_run.clone())
            .fetch_one(&mut *conn)
            .await?;
        Ok(RunRelations::from_row(&row, ids, run_tags, created_by))
    }

    /// Prefect's related resources, in Prefect's order.
    pub fn related(&self) -> Vec<Value> {
        let entry = |kind: &str, n: &Named| json!({"prefect.resource.id": format!("prefect.{kind}.{}", n.id), "prefect.resource.role": kind, "prefect.resource.name": n.name});
        let objects: Vec<(&str, &Named)> = [
            self.flow.as_ref().map(|n| ("flow", n)),
            self.deployment.as_ref().map(|n| ("deployment", n)),
            self.work_queue.as_ref().map(|n| ("work-queue", n)),
            self.work_pool.as_ref().map(|(n, _)| ("work-pool", n)),
            self.task_run.as_ref().map(|n| ("task-run", n)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut related: Vec<Value> = objects.iter().map(|(kind, n)| entry(kind, n)).collect();
        if let Some((_, kind)) = &self.work_pool {
            if let Some(pool) = related.iter_mut().find(|r| r["prefect.resource.role"] == "work-pool") {
                pool["prefect.work-pool.type"] = json!(kind);
            }
        }
        let mut all_tags: Vec<&str> = self.run_tags.iter().chain(objects.iter().flat_map(|(_, n)| &n.tags)).map(String::as_str).collect();
        all_tags.sort_unstable();
        all_tags.dedup();
        related.extend(all_tags.iter().map(|t| json!({"prefect.resource.id": format!("prefect.tag.{t}"), "prefect.resource.role": "tag"})));
        related.extend(self.creator());
        related
    }

    /// Prefect's `_provenance_as_related_resources`.
    fn creator(&self) -> Option<Value> {
        let kind = match self.created_by.get("type").and_then(Value::as_str)? {
            "DEPLOYMENT" => "deployment",
            "AUTOMATION" => "automation",
            _ => return None,
        };
        let id = self.created_by.get("id").and_then(Value::as_str)?;
        let mut creator = json!({"prefect.resource.id": format!("prefect.{kind}.{id}"), "prefect.resource.role": "creator"});
        if let Some(name) = self.created_by.get("display_value").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            creator["prefect.resource.name"] = json!(name);
        }
        Some(creator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(id: &str, name: &str, tags: &[&str]) -> Named {
        Named { id: id.into(), name: name.into(), tags: tags.iter().map(|t| (*t).to_owned()).collect() }
    }

    #[test]
    fn related_resources_follow_prefects_order_with_all_tags_sorted_once() {
        let r = RunRelations {
            flow: Some(named("f", "etl", &["b"])),
            deployment: Some(named("d", "nightly", &["a", "b"])),
            work_queue: Some(named("q", "default", &[])),
            work_pool: Some((named("p", "pool", &[]), "process".into())),
            task_run: Some(named("t", "parent-task", &["c"])),
            run_tags: vec!["z".into(), "a".into()],
            created_by: json!({"id": "x", "type": "AUTOMATION", "display_value": "recover"}),
        };
        let related = r.related();
        let ids: Vec<&str> = related.iter().map(|v| v["prefect.resource.id"].as_str().unwrap()).collect();
        assert_eq!(
            ids,
            [
                "prefect.flow.f", "prefect.deployment.d", "prefect.work-queue.q", "prefect.work-pool.p", "prefect.task-run.t",
                "prefect.tag.a", "prefect.tag.b", "prefect.tag.c", "prefect.tag.z", "prefect.automation.x",
            ]
        );
        assert_eq!(related[3]["prefect.work-pool.type"], json!("process"));
        assert_eq!(related[9], json!({"prefect.resource.id": "prefect.automation.x", "prefect.resource.role": "creator", "prefect.resource.name": "recover"}));
    }

    #[test]
    fn a_scheduled_run_has_no_creator_resource() {
        let r = RunRelations { created_by: json!({"id": "s", "type": "SCHEDULE", "display_value": "every day"}), ..Default::default() };
        assert!(r.related().is_empty());
    }
}
