//! A flow run's graph (Prefect's `GET /flow_runs/{id}/graph-v2`, the UI's
//! run timeline): one node per task run of the run, or the subflow run a
//! task run stands for, linked by the task runs' `task_inputs`. Prefect
//! builds it in SQL per backend; here the rows are loaded with two plain
//! queries and the graph is built by [`build_nodes`], a pure function.

use std::collections::HashMap;

use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};

use crate::db::Dialect;

/// A task run of the flow run, or the subflow run it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphRow {
    /// `flow-run` or `task-run`.
    pub kind: &'static str,
    /// The task run's id (what `task_inputs` refer to).
    pub task_run_id: String,
    /// The node's id: the subflow run's when there is one.
    pub id: String,
    pub label: String,
    pub state_type: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    /// `task_inputs` as stored: `{argument: [{"input_type", "id"}, ...]}`.
    pub task_inputs: Value,
}

/// A built node, in Prefect's `Node` shape.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphNode {
    pub row: GraphRow,
    pub parents: Vec<String>,
    pub children: Vec<String>,
    pub encapsulating: Vec<String>,
}

/// More nodes than `PREFECT_API_MAX_FLOW_RUN_GRAPH_NODES` (Prefect's 400).
#[derive(Debug, PartialEq)]
pub struct TooLarge;

fn push_unique(list: &mut Vec<String>, id: &str) {
    if !list.iter().any(|x| x == id) {
        list.push(id.to_owned());
    }
}

/// The graph's nodes: each row with a start time, linked to the nodes its
/// task inputs name (`__parents__` inputs are encapsulating tasks, not
/// parents). Links are ordered by the linked node's start time and listed
/// once each. Only nodes still running or ending at or after `since` are
/// returned, by start then end time.
pub fn build_nodes(rows: Vec<GraphRow>, since: &str, max_nodes: usize) -> Result<Vec<GraphNode>, TooLarge> {
    let rows: Vec<GraphRow> = rows.into_iter().filter(|r| r.start_time.is_some()).collect();
    let by_id: HashMap<&str, &GraphRow> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
    let start_of = |id: &str| by_id.get(id).and_then(|r| r.start_time.clone()).unwrap_or_default();
    let mut parents: HashMap<String, Vec<String>> = HashMap::new();
    let mut children: HashMap<String, Vec<String>> = HashMap::new();
    let mut encapsulating: HashMap<String, Vec<String>> = HashMap::new();
    for row in &rows {
        let Some(inputs) = row.task_inputs.as_object() else { continue };
        for (argument, values) in inputs {
            for upstream in values.as_array().into_iter().flatten().filter_map(|v| v.get("id")?.as_str()) {
                if !by_id.contains_key(upstream) {
                    continue;
                }
                if argument == "__parents__" {
                    push_unique(encapsulating.entry(row.id.clone()).or_default(), upstream);
                } else {
                    push_unique(parents.entry(row.id.clone()).or_default(), upstream);
                    push_unique(children.entry(upstream.to_owned()).or_default(), &row.id);
                }
            }
        }
    }
    for links in parents.values_mut().chain(children.values_mut()).chain(encapsulating.values_mut()) {
        links.sort_by_key(|id| start_of(id));
    }
    let mut nodes: Vec<GraphNode> = rows
        .into_iter()
        .filter(|r| r.end_time.as_deref().is_none_or(|end| end >= since))
        .map(|row| GraphNode {
            parents: parents.remove(&row.id).unwrap_or_default(),
            children: children.remove(&row.id).unwrap_or_default(),
            encapsulating: encapsulating.remove(&row.id).unwrap_or_default(),
            row,
        })
        .collect();
    // Postgres orders NULL end times last.
    nodes.sort_by(|a, b| (&a.row.start_time, a.row.end_time.is_none(), &a.row.end_time).cmp(&(&b.row.start_time, b.row.end_time.is_none(), &b.row.end_time)));
    if nodes.len() > max_nodes {
        return Err(TooLarge);
    }
    Ok(nodes)
}

fn text(row: &sqlx::any::AnyRow, col: &str) -> Option<String> {
    row.try_get::<Option<String>, _>(col).ok().flatten()
}

/// The flow run's task runs, each replaced by its subflow run if it has one.
pub async fn load_rows(conn: &mut AnyConnection, dialect: Dialect, flow_run_id: &str) -> Result<Vec<GraphRow>, sqlx::Error> {
    let sql = dialect.rewrite(
        "SELECT t.id AS task_run_id, t.name AS task_name, t.state_type AS task_state_type, t.start_time AS task_start, \
                t.expected_start_time AS task_expected, t.end_time AS task_end, t.task_inputs, \
                s.id AS subflow_id, s.name AS subflow_name, f.name AS flow_name, s.state_type AS subflow_state_type, \
                s.start_time AS subflow_start, s.expected_start_time AS subflow_expected, s.end_time AS subflow_end \
         FROM task_run t LEFT JOIN flow_run s ON s.parent_task_run_id = t.id LEFT JOIN flow f ON f.id = s.flow_id \
         WHERE t.flow_run_id = $1",
    );
    let rows = sqlx::query(&sql).bind(flow_run_id.to_owned()).fetch_all(&mut *conn).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let task_run_id = text(r, "task_run_id").unwrap_or_default();
            let completed = text(r, "task_state_type").as_deref() == Some("COMPLETED");
            let task_end = text(r, "task_end").or_else(|| if completed { text(r, "task_expected") } else { None });
            let task_inputs = text(r, "task_inputs").and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
            match text(r, "subflow_id") {
                Some(id) => GraphRow {
                    kind: "flow-run",
                    id,
                    label: format!("{} / {}", text(r, "flow_name").unwrap_or_default(), text(r, "subflow_name").unwrap_or_default()),
                    state_type: text(r, "subflow_state_type"),
                    start_time: text(r, "subflow_start").or_else(|| text(r, "subflow_expected")).or_else(|| text(r, "task_start")).or_else(|| text(r, "task_expected")),
                    end_time: text(r, "subflow_end").or(task_end),
                    task_run_id,
                    task_inputs,
                },
                None => GraphRow {
                    kind: "task-run",
                    id: task_run_id.clone(),
                    label: text(r, "task_name").unwrap_or_default(),
                    state_type: text(r, "task_state_type"),
                    start_time: text(r, "task_start").or_else(|| text(r, "task_expected")),
                    end_time: task_end,
                    task_run_id,
                    task_inputs,
                },
            }
        })
        .collect())
}

/// Prefect's `GraphState`s: the flow run's states, oldest first.
pub async fn load_states(conn: &mut AnyConnection, dialect: Dialect, flow_run_id: &str) -> Result<Vec<Value>, sqlx::Error> {
    let sql = dialect.rewrite("SELECT id, timestamp, type, name FROM flow_run_state WHERE flow_run_id = $1 ORDER BY timestamp");
    let rows = sqlx::query(&sql).bind(flow_run_id.to_owned()).fetch_all(&mut *conn).await?;
    Ok(rows.iter().map(|r| json!({"id": text(r, "id"), "timestamp": text(r, "timestamp"), "type": text(r, "type"), "name": text(r, "name")})).collect())
}

/// A task run (Prefect's `TaskRun` JSON) as the v1 graph's
/// `DependencyResult`: its upstream task runs are the task-run inputs of
/// any argument, each once, in the order first named.
pub fn dependency_result(task_run: &Value) -> Value {
    let mut upstream: Vec<Value> = Vec::new();
    for inputs in task_run["task_inputs"].as_object().into_iter().flat_map(|m| m.values()) {
        for input in inputs.as_array().into_iter().flatten() {
            if input["input_type"] == "task_run" {
                let entry = json!({"input_type": "task_run", "id": input["id"]});
                if !upstream.contains(&entry) {
                    upstream.push(entry);
                }
            }
        }
    }
    let state = &task_run["state"];
    json!({
        "id": task_run["id"],
        "name": task_run["name"],
        "upstream_dependencies": upstream,
        "state": state,
        "expected_start_time": task_run["expected_start_time"],
        "start_time": task_run["start_time"],
        "end_time": task_run["end_time"],
        "total_run_time": task_run["total_run_time"],
        "estimated_run_time": task_run["estimated_run_time"],
        "untrackable_result": state["state_details"]["untrackable_result"].as_bool().unwrap_or(false),
    })
}

/// Prefect's `PREFECT_API_MAX_FLOW_RUN_GRAPH_ARTIFACTS` default.
const MAX_ARTIFACTS: i64 = 10_000;

/// The run's artifacts as Prefect's `GraphArtifact`s, by the task run
/// that made them (`None`: the flow run itself), oldest first; result
/// artifacts are left out and only progress artifacts carry their data.
pub async fn load_artifacts(conn: &mut AnyConnection, dialect: Dialect, flow_run_id: &str) -> Result<HashMap<Option<String>, Vec<Value>>, sqlx::Error> {
    let sql = dialect.rewrite(&format!(
        "SELECT a.id, a.created, a.key, a.type, a.data, a.task_run_id, c.id AS latest_of FROM artifact a \
         LEFT JOIN artifact_collection c ON c.key = a.key AND c.latest_id = a.id \
         WHERE a.flow_run_id = $1 AND (a.type IS NULL OR a.type <> 'result') ORDER BY a.created, a.id LIMIT {MAX_ARTIFACTS}"
    ));
    let rows = sqlx::query(&sql).bind(flow_run_id.to_owned()).fetch_all(&mut *conn).await?;
    let mut out: HashMap<Option<String>, Vec<Value>> = HashMap::new();
    for r in &rows {
        let kind = r.try_get::<Option<String>, _>("type")?;
        let key = r.try_get::<Option<String>, _>("key")?;
        let data = match kind.as_deref() {
            Some("progress") => crate::server_model::json_col(r, "data"),
            _ => Value::Null,
        };
        let is_latest = key.is_none() || r.try_get::<Option<String>, _>("latest_of")?.is_some();
        let artifact = json!({"id": text(r, "id"), "created": text(r, "created"), "key": key, "type": kind, "is_latest": is_latest, "data": data});
        out.entry(r.try_get::<Option<String>, _>("task_run_id")?).or_default().push(artifact);
    }
    Ok(out)
}

/// A node as Prefect's `(id, Node)` pair, with its artifacts.
pub fn node_json(node: &GraphNode, artifacts: &HashMap<Option<String>, Vec<Value>>) -> Value {
    let edges = |ids: &[String]| Value::Array(ids.iter().map(|id| json!({"id": id})).collect());
    let r = &node.row;
    json!([r.id, {
        "kind": r.kind,
        "id": r.id,
        "label": r.label,
        "state_type": r.state_type,
        "start_time": r.start_time,
        "end_time": r.end_time,
        "parents": edges(&node.parents),
        "children": edges(&node.children),
        "encapsulating": edges(&node.encapsulating),
        "artifacts": artifacts.get(&Some(r.id.clone())).cloned().unwrap_or_default(),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, start: &str, end: Option<&str>, inputs: Value) -> GraphRow {
        GraphRow {
            kind: "task-run",
            task_run_id: id.into(),
            id: id.into(),
            label: id.into(),
            state_type: Some("COMPLETED".into()),
            start_time: Some(start.into()),
            end_time: end.map(str::to_owned),
            task_inputs: inputs,
        }
    }

    fn ids(list: &[String]) -> Vec<&str> {
        list.iter().map(String::as_str).collect()
    }

    #[test]
    fn given_task_inputs_then_nodes_link_parents_children_and_encapsulating_tasks() {
        let rows = vec![
            row("c", "3", Some("4"), json!({"x": [{"input_type": "task_run", "id": "b"}, {"input_type": "task_run", "id": "a"}], "y": [{"input_type": "task_run", "id": "a"}]})),
            row("a", "1", Some("2"), json!({})),
            row("b", "2", Some("3"), json!({"__parents__": [{"input_type": "task_run", "id": "a"}], "z": [{"input_type": "parameter", "name": "p"}]})),
            row("unknown-parent", "5", None, json!({"x": [{"input_type": "task_run", "id": "gone"}]})),
        ];
        let nodes = build_nodes(rows, "", 10).unwrap();
        let order: Vec<&str> = nodes.iter().map(|n| n.row.id.as_str()).collect();
        assert_eq!(order, ["a", "b", "c", "unknown-parent"]);
        let c = &nodes[2];
        assert_eq!(ids(&c.parents), ["a", "b"], "ordered by start time, listed once");
        assert_eq!(ids(&nodes[0].children), ["c"]);
        assert_eq!(ids(&nodes[1].encapsulating), ["a"]);
        assert!(nodes[1].parents.is_empty(), "an encapsulating task is not a parent");
        assert!(nodes[3].parents.is_empty());
    }

    #[test]
    fn a_dependency_result_names_each_upstream_task_run_once() {
        let task_run = json!({
            "id": "c", "name": "c-1", "start_time": null, "end_time": null, "expected_start_time": null,
            "total_run_time": 0.0, "estimated_run_time": 0.0,
            "task_inputs": {"x": [{"input_type": "task_run", "id": "a"}, {"input_type": "parameter", "name": "p"}], "y": [{"input_type": "task_run", "id": "a"}, {"input_type": "task_run", "id": "b"}]},
            "state": {"type": "COMPLETED", "state_details": {"untrackable_result": true}},
        });
        let result = dependency_result(&task_run);
        assert_eq!(result["upstream_dependencies"], json!([{"input_type": "task_run", "id": "a"}, {"input_type": "task_run", "id": "b"}]));
        assert_eq!(result["untrackable_result"], true);
        assert_eq!(result["name"], "c-1");
    }

    #[test]
    fn given_since_then_only_nodes_running_or_ending_after_it_are_returned() {
        let rows = vec![row("old", "1", Some("2"), json!({})), row("new", "3", Some("9"), json!({})), row("running", "4", None, json!({}))];
        let nodes = build_nodes(rows, "5", 10).unwrap();
        assert_eq!(nodes.iter().map(|n| n.row.id.as_str()).collect::<Vec<_>>(), ["new", "running"]);
    }

    #[test]
    fn given_rows_without_a_start_time_then_they_are_not_nodes_and_too_many_nodes_fail() {
        let mut unstarted = row("u", "1", None, json!({}));
        unstarted.start_time = None;
        assert!(build_nodes(vec![unstarted], "", 10).unwrap().is_empty());
        let many = (0..3).map(|i| row(&i.to_string(), "1", None, json!({}))).collect();
        assert_eq!(build_nodes(many, "", 2), Err(TooLarge));
    }
}
