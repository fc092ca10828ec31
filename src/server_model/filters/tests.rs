//! Filters and sorts run against the real read-model DDL: in-memory SQLite
//! always, and a throwaway Postgres database when one is reachable
//! (`FILTERS_TEST_PG_URL`, default `postgres://postgres@127.0.0.1/postgres`).

use serde_json::{json, Value};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

use super::*;
use crate::db::sql::{Bind, Dialect, Sql};
use crate::db::text_search::parse_text_search_query;

const SCHEMA: &str = include_str!("../../../projections/server/schema.sql");
const WS: &str = "00000000-0000-0000-0000-000000000000";
const OTHER_WS: &str = "99999999-0000-0000-0000-000000000000";

/// `"f1"` -> `00000000-0000-0000-0000-0000000000f1`.
fn id(short: &str) -> String {
    format!("00000000-0000-0000-0000-{short:0>12}")
}

fn insert(table: &str, cols: &[(&str, Option<&str>)]) -> String {
    let names: Vec<&str> = cols.iter().map(|(c, _)| *c).collect();
    let vals: Vec<String> = cols
        .iter()
        .map(|(_, v)| match v {
            Some(v) => format!("'{}'", v.replace('\'', "''")),
            None => "NULL".to_owned(),
        })
        .collect();
    format!("INSERT INTO {table} ({}) VALUES ({});\n", names.join(", "), vals.join(", "))
}

const T0: &str = "2026-01-01T00:00:00.000000Z";

fn flow(short: &str, ws: &str, name: &str, tags: &str, created: &str, updated: &str) -> String {
    let i = id(short);
    insert(
        "flow",
        &[("id", Some(&i)), ("workspace_id", Some(ws)), ("created", Some(created)), ("updated", Some(updated)), ("name", Some(name)), ("tags", Some(tags)), ("version", Some("1"))],
    )
}

#[derive(Default)]
struct Fr<'a> {
    short: &'a str,
    ws: &'a str,
    flow: &'a str,
    name: &'a str,
    tags: &'a str,
    state: Option<(&'a str, &'a str)>,
    start: Option<&'a str>,
    end: Option<&'a str>,
    expected: Option<&'a str>,
    next: Option<&'a str>,
    deployment: Option<&'a str>,
    work_queue: Option<&'a str>,
    version: Option<&'a str>,
    idem: Option<&'a str>,
    created_by: Option<&'a str>,
    parent_task: Option<&'a str>,
}

fn flow_run(r: Fr) -> String {
    let (i, f) = (id(r.short), id(r.flow));
    let dep = r.deployment.map(id);
    let parent = r.parent_task.map(id);
    insert(
        "flow_run",
        &[
            ("id", Some(&i)),
            ("workspace_id", Some(r.ws)),
            ("created", Some(T0)),
            ("updated", Some(T0)),
            ("name", Some(r.name)),
            ("flow_id", Some(&f)),
            ("tags", Some(r.tags)),
            ("state_type", r.state.map(|s| s.0)),
            ("state_name", r.state.map(|s| s.1)),
            ("start_time", r.start),
            ("end_time", r.end),
            ("expected_start_time", r.expected),
            ("next_scheduled_start_time", r.next),
            ("deployment_id", dep.as_deref()),
            ("work_queue_name", r.work_queue),
            ("flow_version", r.version),
            ("idempotency_key", r.idem),
            ("created_by", r.created_by),
            ("parent_task_run_id", parent.as_deref()),
            ("version", Some("1")),
        ],
    )
}

#[derive(Default)]
struct Tr<'a> {
    short: &'a str,
    ws: &'a str,
    flow_run: Option<&'a str>,
    name: &'a str,
    tags: &'a str,
    state: Option<(&'a str, &'a str)>,
    start: Option<&'a str>,
    end: Option<&'a str>,
    expected: Option<&'a str>,
}

fn task_run(r: Tr) -> String {
    let i = id(r.short);
    let fr = r.flow_run.map(id);
    insert(
        "task_run",
        &[
            ("id", Some(&i)),
            ("workspace_id", Some(r.ws)),
            ("created", Some(T0)),
            ("updated", Some(T0)),
            ("name", Some(r.name)),
            ("flow_run_id", fr.as_deref()),
            ("task_key", Some(r.short)),
            ("dynamic_key", Some("0")),
            ("tags", Some(r.tags)),
            ("state_type", r.state.map(|s| s.0)),
            ("state_name", r.state.map(|s| s.1)),
            ("start_time", r.start),
            ("end_time", r.end),
            ("expected_start_time", r.expected),
            ("version", Some("1")),
        ],
    )
}

#[allow(clippy::too_many_arguments)]
fn log(short: &str, ws: &str, flow_run: Option<&str>, task_run: Option<&str>, level: &str, name: &str, message: &str, ts: &str) -> String {
    let i = id(short);
    let (fr, tr) = (flow_run.map(id), task_run.map(id));
    insert(
        "log",
        &[
            ("id", Some(&i)),
            ("workspace_id", Some(ws)),
            ("created", Some(ts)),
            ("name", Some(name)),
            ("level", Some(level)),
            ("flow_run_id", fr.as_deref()),
            ("task_run_id", tr.as_deref()),
            ("message", Some(message)),
            ("timestamp", Some(ts)),
        ],
    )
}

fn seed() -> String {
    let mut s = String::new();
    s += &flow("f1", WS, "etl-Marvin", r#"["prod", "etl"]"#, "2026-01-01T00:00:01.000000Z", "2026-01-01T00:00:05.000000Z");
    s += &flow("f2", WS, "report", "[]", "2026-01-01T00:00:02.000000Z", "2026-01-01T00:00:04.000000Z");
    s += &flow("f3", WS, "idle_flow", r#"["prod"]"#, "2026-01-01T00:00:03.000000Z", "2026-01-01T00:00:03.000000Z");
    s += &flow("f4", OTHER_WS, "etl-other", r#"["prod"]"#, T0, T0);
    s += &flow_run(Fr {
        short: "a1",
        ws: WS,
        flow: "f1",
        name: "r1-alpha",
        tags: r#"["prod", "nightly"]"#,
        state: Some(("COMPLETED", "Completed")),
        start: Some("2026-01-02T00:00:00.000000Z"),
        end: Some("2026-01-02T01:00:00.000000Z"),
        expected: Some("2026-01-01T23:59:00.000000Z"),
        deployment: Some("d1"),
        work_queue: Some("default"),
        version: Some("1.0"),
        idem: Some("k1"),
        created_by: Some(r#"{"id": "00000000-0000-0000-0000-0000000000e1", "type": "DEPLOYMENT", "display_value": "dep"}"#),
        ..Default::default()
    });
    s += &flow_run(Fr {
        short: "a2",
        ws: WS,
        flow: "f1",
        name: "r2-beta",
        tags: "[]",
        state: Some(("FAILED", "Failed")),
        expected: Some("2026-01-03T00:00:00.000000Z"),
        version: Some("2.0"),
        parent_task: Some("b1"),
        ..Default::default()
    });
    s += &flow_run(Fr {
        short: "a3",
        ws: WS,
        flow: "f2",
        name: "r3-Alpha",
        tags: r#"["nightly"]"#,
        state: Some(("SCHEDULED", "Late")),
        expected: Some("2026-01-04T00:00:00.000000Z"),
        next: Some("2026-01-04T00:00:00.000000Z"),
        ..Default::default()
    });
    s += &flow_run(Fr { short: "a4", ws: OTHER_WS, flow: "f4", name: "r1-alpha", tags: "[]", ..Default::default() });
    s += &task_run(Tr {
        short: "b1",
        ws: WS,
        flow_run: Some("a1"),
        name: "extract",
        tags: r#"["io"]"#,
        state: Some(("COMPLETED", "Completed")),
        start: Some("2026-01-02T00:10:00.000000Z"),
        end: Some("2026-01-02T00:20:00.000000Z"),
        expected: Some("2026-01-02T00:10:00.000000Z"),
    });
    s += &task_run(Tr {
        short: "b2",
        ws: WS,
        flow_run: Some("a1"),
        name: "load-Data",
        tags: "[]",
        state: Some(("RUNNING", "Running")),
        start: Some("2026-01-02T00:30:00.000000Z"),
        expected: Some("2026-01-02T00:30:00.000000Z"),
        ..Default::default()
    });
    s += &task_run(Tr { short: "b3", ws: WS, name: "solo", tags: r#"["io", "x"]"#, state: Some(("PENDING", "Pending")), ..Default::default() });
    s += &task_run(Tr { short: "b4", ws: WS, flow_run: Some("a3"), name: "extract", tags: "[]", state: Some(("FAILED", "Failed")), ..Default::default() });
    // A task run whose flow run is not in the read model.
    s += &task_run(Tr { short: "b5", ws: WS, flow_run: Some("a9"), name: "orphan", tags: "[]", ..Default::default() });
    s += &task_run(Tr { short: "b6", ws: OTHER_WS, flow_run: Some("a4"), name: "extract", tags: "[]", ..Default::default() });
    s += &log("c1", WS, Some("a1"), Some("b1"), "20", "prefect.task_runs", "Extracting rows", "2026-01-02T00:10:01.000000Z");
    s += &log("c2", WS, Some("a1"), None, "40", "prefect.flow_runs", "Flow failed: connection timeout", "2026-01-02T00:50:00.000000Z");
    s += &log("c3", WS, Some("a2"), None, "10", "prefect.flow_runs", "debug 100% done", "2026-01-03T00:00:00.000000Z");
    s += &log("c4", OTHER_WS, Some("a4"), None, "40", "prefect.flow_runs", "Flow failed: connection timeout", "2026-01-02T00:50:00.000000Z");
    s
}

#[derive(Clone, Copy, Debug)]
enum Route {
    Flows,
    FlowRuns,
    TaskRuns,
    Logs,
    CountFlows,
    CountFlowRuns,
    CountTaskRuns,
}

enum Expect {
    Ids(&'static [&'static str]),
    Count(i64),
}

struct Case {
    route: Route,
    body: Value,
    expect: Expect,
    /// Order depends on the backend's NULL placement: SQLite only.
    sqlite_only: bool,
}

fn ids(route: Route, body: Value, expect: &'static [&'static str]) -> Case {
    Case { route, body, expect: Expect::Ids(expect), sqlite_only: false }
}

fn count(route: Route, body: Value, n: i64) -> Case {
    Case { route, body, expect: Expect::Count(n), sqlite_only: false }
}

fn build(route: Route, body: &Value, dialect: Dialect) -> Result<Sql, FilterError> {
    let bytes = serde_json::to_vec(body).unwrap();
    let run = || RunFilterBody::from_json(&bytes);
    match route {
        Route::Flows => select_flows(&run()?, dialect, WS, "flow.id"),
        Route::FlowRuns => select_flow_runs(&run()?, dialect, WS, "flow_run.id"),
        Route::TaskRuns => select_task_runs(&run()?, dialect, WS, "task_run.id"),
        Route::Logs => select_logs(&LogFilterBody::from_json(&bytes)?, dialect, WS, "log.id"),
        Route::CountFlows => count_flows(&run()?, dialect, WS),
        Route::CountFlowRuns => count_flow_runs(&run()?, dialect, WS),
        Route::CountTaskRuns => count_task_runs(&run()?, dialect, WS),
    }
}

use Route::*;

fn cases() -> Vec<Case> {
    vec![
        // ---- flows
        ids(Flows, json!({}), &["f1", "f3", "f2"]),
        ids(Flows, json!({"flows": null, "flow_runs": null, "sort": null, "limit": null, "offset": null}), &["f1", "f3", "f2"]),
        ids(Flows, json!({"flows": {}}), &["f1", "f3", "f2"]),
        ids(Flows, json!({"flows": {"name": {"like_": "marvin"}}}), &["f1"]),
        ids(Flows, json!({"flows": {"name": {"like_": "MAR"}}}), &["f1"]),
        ids(Flows, json!({"flows": {"name": {"like_": ""}}}), &["f1", "f3", "f2"]),
        ids(Flows, json!({"flows": {"name": {"any_": ["report", "nope"]}}}), &["f2"]),
        ids(Flows, json!({"flows": {"name": {"any_": []}}}), &[]),
        ids(Flows, json!({"flows": {"id": {"any_": [id("f1"), id("f4")]}}}), &["f1"]),
        ids(Flows, json!({"flows": {"id": {"not_any_": [id("f1")]}}}), &["f3", "f2"]),
        ids(Flows, json!({"flows": {"id": {"not_any_": []}}}), &["f1", "f3", "f2"]),
        ids(Flows, json!({"flows": {"tags": {"all_": ["prod"]}}}), &["f1", "f3"]),
        ids(Flows, json!({"flows": {"tags": {"all_": ["prod", "etl"]}}}), &["f1"]),
        ids(Flows, json!({"flows": {"tags": {"all_": []}}}), &["f1", "f3", "f2"]),
        ids(Flows, json!({"flows": {"tags": {"is_null_": true}}}), &["f2"]),
        ids(Flows, json!({"flows": {"tags": {"is_null_": false}}}), &["f1", "f3"]),
        ids(Flows, json!({"flows": {"tags": {"operator": "or_", "all_": ["etl"], "is_null_": true}}}), &["f1", "f2"]),
        ids(Flows, json!({"flows": {"operator": "or_", "name": {"any_": ["report"]}, "tags": {"all_": ["etl"]}}}), &["f1", "f2"]),
        // An empty sub-filter is TRUE, so OR-ing with it matches everything (as in Prefect).
        ids(Flows, json!({"flows": {"operator": "or_", "id": {}, "name": {"any_": ["report"]}}}), &["f1", "f3", "f2"]),
        ids(Flows, json!({"flows": {"deployment": {"is_null_": true}}}), &["f1", "f3", "f2"]),
        ids(Flows, json!({"flows": {"deployment": {"is_null_": false}}}), &[]),
        ids(Flows, json!({"flow_runs": {}}), &["f1", "f2"]),
        ids(Flows, json!({"flow_runs": {"state": {"type": {"any_": ["FAILED"]}}}}), &["f1"]),
        ids(Flows, json!({"task_runs": {"name": {"any_": ["extract"]}}}), &["f1", "f2"]),
        ids(Flows, json!({"task_runs": {"state": {"type": {"any_": ["FAILED"]}}}}), &["f2"]),
        ids(Flows, json!({"flow_runs": {"name": {"any_": ["r1-alpha"]}}, "task_runs": {"name": {"any_": ["extract"]}}}), &["f1"]),
        ids(Flows, json!({"flow_runs": {"name": {"any_": ["r2-beta"]}}, "task_runs": {}}), &[]),
        // A present deployment filter needs a matching deployment, and there are none.
        ids(Flows, json!({"deployments": {"operator": "and_", "id": null, "name": {}}, "work_pools": null, "work_pool_queues": {"id": {"any_": []}}}), &[]),
        ids(Flows, json!({"work_pool_queues": {"id": {"any_": []}}}), &["f1", "f3", "f2"]),
        ids(Flows, json!({"sort": "CREATED_DESC"}), &["f3", "f2", "f1"]),
        ids(Flows, json!({"sort": "UPDATED_DESC"}), &["f1", "f2", "f3"]),
        ids(Flows, json!({"sort": "NAME_DESC"}), &["f2", "f3", "f1"]),
        ids(Flows, json!({"sort": "NAME_ASC", "limit": 1, "offset": 1}), &["f3"]),
        ids(Flows, json!({"limit": 0}), &[]),
        ids(Flows, json!({"limit": "2", "offset": 2.0}), &["f2"]),
        ids(Flows, json!({"unknown_top_level_key": 1}), &["f1", "f3", "f2"]),
        count(CountFlows, json!({}), 3),
        count(CountFlows, json!({"flows": {"tags": {"all_": ["prod"]}}, "sort": "BOGUS", "limit": 5000}), 2),
        count(CountFlows, json!({"flow_runs": {"tags": {"any_": ["nightly"]}}}), 2),
        // ---- flow runs
        ids(FlowRuns, json!({}), &["a3", "a2", "a1"]),
        ids(FlowRuns, json!({"flow_runs": {"id": {"any_": [id("a1"), id("a4")]}}}), &["a1"]),
        ids(FlowRuns, json!({"flow_runs": {"id": {"not_any_": [id("a1")]}}}), &["a3", "a2"]),
        ids(FlowRuns, json!({"flow_runs": {"name": {"like_": "alpha"}}}), &["a3", "a1"]),
        ids(FlowRuns, json!({"flow_runs": {"name": {"any_": ["r2-beta"]}}}), &["a2"]),
        ids(FlowRuns, json!({"flow_runs": {"state": {"type": {"any_": ["COMPLETED", "FAILED"]}}}}), &["a2", "a1"]),
        ids(FlowRuns, json!({"flow_runs": {"state": {"type": {"not_any_": ["COMPLETED"]}}}}), &["a3", "a2"]),
        // Prefect drops a state sub-filter that has both any_ and not_any_.
        ids(FlowRuns, json!({"flow_runs": {"state": {"type": {"any_": ["COMPLETED"], "not_any_": ["FAILED"]}}}}), &["a3", "a2", "a1"]),
        ids(FlowRuns, json!({"flow_runs": {"state": {"type": {"any_": []}}}}), &[]),
        ids(FlowRuns, json!({"flow_runs": {"state": {"name": {"not_any_": ["Late"]}}}}), &["a2", "a1"]),
        ids(FlowRuns, json!({"flow_runs": {"state": {"operator": "or_", "type": {"any_": ["COMPLETED"]}, "name": {"any_": ["Late"]}}}}), &["a3", "a1"]),
        ids(FlowRuns, json!({"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}, "name": {"any_": ["Late"]}}}}), &["a3"]),
        ids(FlowRuns, json!({"flow_runs": {"start_time": {"before_": "2026-01-02T12:00:00+00:00"}}}), &["a1"]),
        ids(FlowRuns, json!({"flow_runs": {"start_time": {"after_": "2026-01-03"}}}), &["a3", "a2"]),
        ids(FlowRuns, json!({"flow_runs": {"start_time": {"after_": "2026-01-02T00:00:00Z", "before_": "2026-01-02T00:00:00Z"}}}), &["a1"]),
        ids(FlowRuns, json!({"flow_runs": {"start_time": {"is_null_": true}}}), &["a3", "a2"]),
        ids(FlowRuns, json!({"flow_runs": {"expected_start_time": {"after_": "2026-01-03T01:00:00+01:00"}}}), &["a3", "a2"]),
        ids(FlowRuns, json!({"flow_runs": {"expected_start_time": {"before_": 1767311940}}}), &["a1"]),
        ids(FlowRuns, json!({"flow_runs": {"end_time": {"is_null_": false}}}), &["a1"]),
        ids(FlowRuns, json!({"flow_runs": {"end_time": {"before_": "2026-01-02 01:00:00"}}}), &["a1"]),
        ids(FlowRuns, json!({"flow_runs": {"end_time": {"after_": "2026-01-02T01:00:00.000001Z"}}}), &[]),
        ids(FlowRuns, json!({"flow_runs": {"next_scheduled_start_time": {"before_": "2026-02-01T00:00:00Z"}}}), &["a3"]),
        ids(FlowRuns, json!({"flow_runs": {"tags": {"any_": ["nightly", "zzz"]}}}), &["a3", "a1"]),
        ids(FlowRuns, json!({"flow_runs": {"tags": {"any_": []}}}), &[]),
        ids(FlowRuns, json!({"flow_runs": {"tags": {"all_": ["prod", "nightly"]}}}), &["a1"]),
        ids(FlowRuns, json!({"flow_runs": {"tags": {"is_null_": true}}}), &["a2"]),
        ids(FlowRuns, json!({"flow_runs": {"deployment_id": {"is_null_": false}}}), &["a1"]),
        ids(FlowRuns, json!({"flow_runs": {"deployment_id": {"any_": [id("d1")]}}}), &["a1"]),
        ids(FlowRuns, json!({"flow_runs": {"work_queue_name": {"any_": ["default"]}}}), &["a1"]),
        ids(FlowRuns, json!({"flow_runs": {"work_queue_name": {"is_null_": true}}}), &["a3", "a2"]),
        ids(FlowRuns, json!({"flow_runs": {"flow_version": {"any_": ["2.0"]}}}), &["a2"]),
        ids(FlowRuns, json!({"flow_runs": {"parent_flow_run_id": {"any_": [id("a1")]}}}), &["a2"]),
        ids(FlowRuns, json!({"flow_runs": {"parent_task_run_id": {"is_null_": false}}}), &["a2"]),
        ids(FlowRuns, json!({"flow_runs": {"parent_task_run_id": {"any_": [id("b1")]}}}), &["a2"]),
        ids(FlowRuns, json!({"flow_runs": {"idempotency_key": {"any_": ["k1"]}}}), &["a1"]),
        // SQL NOT IN never matches a NULL key, as in Prefect.
        ids(FlowRuns, json!({"flow_runs": {"idempotency_key": {"not_any_": ["k1"]}}}), &[]),
        ids(FlowRuns, json!({"flow_runs": {"created_by": {"type_": ["DEPLOYMENT"]}}}), &["a1"]),
        ids(FlowRuns, json!({"flow_runs": {"created_by": {"id_": [id("e1")]}}}), &["a1"]),
        ids(FlowRuns, json!({"flow_runs": {"created_by": {"is_null_": true}}}), &["a3", "a2"]),
        ids(FlowRuns, json!({"flow_runs": {"operator": "or_", "name": {"any_": ["r2-beta"]}, "tags": {"any_": ["nightly"]}}}), &["a3", "a2", "a1"]),
        ids(FlowRuns, json!({"flows": {"name": {"any_": ["report"]}}}), &["a3"]),
        ids(FlowRuns, json!({"flows": {}}), &["a3", "a2", "a1"]),
        ids(FlowRuns, json!({"task_runs": {}}), &["a3", "a1"]),
        ids(FlowRuns, json!({"task_runs": {"name": {"any_": ["load-Data"]}}}), &["a1"]),
        ids(FlowRuns, json!({"flows": {"name": {"any_": ["etl-Marvin"]}}, "task_runs": {"name": {"any_": ["extract"]}}}), &["a1"]),
        ids(FlowRuns, json!({"sort": "START_TIME_DESC"}), &["a3", "a2", "a1"]),
        ids(FlowRuns, json!({"sort": "START_TIME_ASC"}), &["a1", "a2", "a3"]),
        ids(FlowRuns, json!({"sort": "EXPECTED_START_TIME_ASC"}), &["a1", "a2", "a3"]),
        ids(FlowRuns, json!({"sort": "EXPECTED_START_TIME_DESC"}), &["a3", "a2", "a1"]),
        ids(FlowRuns, json!({"sort": "NAME_ASC"}), &["a1", "a2", "a3"]),
        ids(FlowRuns, json!({"sort": "NAME_DESC"}), &["a3", "a2", "a1"]),
        Case { sqlite_only: true, ..ids(FlowRuns, json!({"sort": "END_TIME_DESC"}), &["a1", "a3", "a2"]) },
        Case { sqlite_only: true, ..ids(FlowRuns, json!({"sort": "NEXT_SCHEDULED_START_TIME_ASC"}), &["a1", "a2", "a3"]) },
        count(CountFlowRuns, json!({}), 3),
        count(CountFlowRuns, json!({"flow_runs": {"state": {"type": {"any_": ["FAILED"]}}}}), 1),
        count(CountFlowRuns, json!({"flows": {"tags": {"all_": ["etl"]}}}), 2),
        // ---- task runs
        ids(TaskRuns, json!({}), &["b5", "b4", "b3", "b2", "b1"]),
        ids(TaskRuns, json!({"task_runs": {"id": {"any_": [id("b1"), id("b6")]}}}), &["b1"]),
        ids(TaskRuns, json!({"task_runs": {"flow_run_id": {}}}), &["b5", "b4", "b2", "b1"]),
        ids(TaskRuns, json!({"task_runs": {"flow_run_id": {"is_null_": null}}}), &["b5", "b4", "b3", "b2", "b1"]),
        ids(TaskRuns, json!({"task_runs": {"flow_run_id": {"is_null_": true}}}), &["b3"]),
        ids(TaskRuns, json!({"task_runs": {"flow_run_id": {"any_": [id("a1")]}}}), &["b2", "b1"]),
        ids(TaskRuns, json!({"task_runs": {"flow_run_id": {"is_null_": true, "any_": [id("a1")]}}}), &["b3"]),
        ids(TaskRuns, json!({"task_runs": {"subflow_runs": {"exists_": true}}}), &["b1"]),
        ids(TaskRuns, json!({"task_runs": {"subflow_runs": {"exists_": false}}}), &["b5", "b4", "b3", "b2"]),
        ids(TaskRuns, json!({"task_runs": {"name": {"like_": "DATA"}}}), &["b2"]),
        ids(TaskRuns, json!({"task_runs": {"name": {"any_": ["extract"]}}}), &["b4", "b1"]),
        ids(TaskRuns, json!({"task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}), &["b1"]),
        ids(TaskRuns, json!({"task_runs": {"state": {"name": {"any_": ["Running"]}}}}), &["b2"]),
        ids(TaskRuns, json!({"task_runs": {"state": {"operator": "or_", "type": {"any_": ["PENDING"]}, "name": {"any_": ["Running"]}}}}), &["b3", "b2"]),
        ids(TaskRuns, json!({"task_runs": {"tags": {"all_": ["io"]}}}), &["b3", "b1"]),
        ids(TaskRuns, json!({"task_runs": {"tags": {"is_null_": true}}}), &["b5", "b4", "b2"]),
        ids(TaskRuns, json!({"task_runs": {"start_time": {"after_": "2026-01-02T00:15:00Z"}}}), &["b2"]),
        ids(TaskRuns, json!({"task_runs": {"start_time": {"is_null_": false}}}), &["b2", "b1"]),
        ids(TaskRuns, json!({"task_runs": {"end_time": {"is_null_": true}}}), &["b5", "b4", "b3", "b2"]),
        ids(TaskRuns, json!({"task_runs": {"end_time": {"before_": "2026-01-02T00:20:00Z"}}}), &["b1"]),
        ids(TaskRuns, json!({"task_runs": {"expected_start_time": {"before_": "2026-01-02T00:10:00.000000Z"}}}), &["b1"]),
        // Prefect's read shortcut: ids alone need no flow run row.
        ids(TaskRuns, json!({"flow_runs": {"id": {"any_": [id("a1"), id("a9")]}}}), &["b5", "b2", "b1"]),
        count(CountTaskRuns, json!({"flow_runs": {"id": {"any_": [id("a1"), id("a9")]}}}), 2),
        ids(TaskRuns, json!({"flow_runs": {}}), &["b4", "b2", "b1"]),
        ids(TaskRuns, json!({"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}), &["b4"]),
        ids(TaskRuns, json!({"flows": {"name": {"any_": ["report"]}}}), &["b4"]),
        ids(TaskRuns, json!({"flows": {"name": {"like_": "etl"}}, "flow_runs": {"name": {"any_": ["r1-alpha"]}}}), &["b2", "b1"]),
        ids(TaskRuns, json!({"work_pools": {"id": {"any_": [id("d1")]}}}), &["b5", "b4", "b3", "b2", "b1"]),
        ids(TaskRuns, json!({"sort": "NAME_ASC"}), &["b1", "b4", "b2", "b5", "b3"]),
        ids(TaskRuns, json!({"sort": "NAME_DESC", "limit": 2}), &["b3", "b5"]),
        ids(TaskRuns, json!({"sort": "EXPECTED_START_TIME_DESC", "task_runs": {"expected_start_time": {"after_": "2020-01-01"}}}), &["b2", "b1"]),
        count(CountTaskRuns, json!({}), 5),
        count(CountTaskRuns, json!({"task_runs": {"tags": {"all_": ["io"]}}}), 2),
        count(CountTaskRuns, json!({"flows": {"name": {"any_": ["etl-Marvin"]}}}), 2),
        // ---- logs
        ids(Logs, json!({}), &["c1", "c2", "c3"]),
        ids(Logs, json!({"logs": null, "sort": "TIMESTAMP_DESC"}), &["c3", "c2", "c1"]),
        ids(Logs, json!({"logs": {"level": {"ge_": 20}}}), &["c1", "c2"]),
        ids(Logs, json!({"logs": {"level": {"le_": 10}}}), &["c3"]),
        ids(Logs, json!({"logs": {"level": {"ge_": 15, "le_": 30}}}), &["c1"]),
        ids(Logs, json!({"logs": {"flow_run_id": {"any_": [id("a1")]}}}), &["c1", "c2"]),
        ids(Logs, json!({"logs": {"task_run_id": {"is_null_": true}}}), &["c2", "c3"]),
        ids(Logs, json!({"logs": {"task_run_id": {"any_": [id("b1")]}}}), &["c1"]),
        ids(Logs, json!({"logs": {"timestamp": {"after_": "2026-01-02T00:50:00Z"}}}), &["c2", "c3"]),
        ids(Logs, json!({"logs": {"timestamp": {"before_": "2026-01-02T00:50:00Z"}}}), &["c1", "c2"]),
        ids(Logs, json!({"logs": {"text": {"query": "TIMEOUT"}}}), &["c2"]),
        ids(Logs, json!({"logs": {"text": {"query": "-flow_runs"}}}), &["c1"]),
        ids(Logs, json!({"logs": {"text": {"query": "100%"}}}), &["c3"]),
        ids(Logs, json!({"logs": {"text": {"query": "0%"}}}), &["c3"]),
        ids(Logs, json!({"logs": {"text": {"query": "flow -timeout"}}}), &["c3"]),
        ids(Logs, json!({"logs": {"text": {"query": "+debug +done"}}}), &["c3"]),
        ids(Logs, json!({"logs": {"text": {"query": "\"connection timeout\""}}}), &["c2"]),
        ids(Logs, json!({"logs": {"text": {"query": "   "}}}), &["c1", "c2", "c3"]),
        ids(Logs, json!({"logs": {"operator": "or_", "level": {"ge_": 40}, "text": {"query": "debug"}}}), &["c2", "c3"]),
        ids(Logs, json!({"logs": {"level": {"ge_": 10}}, "limit": 1, "offset": 2}), &["c3"]),
    ]
}

async fn run_query(pool: &AnyPool, dialect: Dialect, sql: &Sql, is_count: bool) -> Result<Vec<String>, sqlx::Error> {
    let text = dialect.rewrite(&sql.text);
    let mut q = sqlx::query(&text);
    for b in &sql.binds {
        q = match b {
            Bind::Text(s) => q.bind(s.clone()),
            Bind::Int(v) => q.bind(*v),
            Bind::Float(v) => q.bind(*v),
            Bind::Null => q.bind(Option::<String>::None),
            Bind::NullInt => q.bind(Option::<i64>::None),
        };
    }
    let rows = q.fetch_all(pool).await?;
    if is_count {
        let n: i64 = rows[0].try_get(0)?;
        return Ok(vec![n.to_string()]);
    }
    rows.iter().map(|r| r.try_get::<String, _>(0)).collect()
}


async fn run_cases(pool: &AnyPool, dialect: Dialect) -> usize {
    let mut failures = Vec::new();
    let mut ran = 0;
    for c in cases() {
        if c.sqlite_only && dialect != Dialect::Sqlite {
            continue;
        }
        ran += 1;
        let sql = match build(c.route, &c.body, dialect) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{:?} {}: build error {e}", c.route, c.body));
                continue;
            }
        };
        if let Err(e) = sql.check_placeholders() {
            failures.push(format!("{:?} {}: {e}\n  {}", c.route, c.body, sql.text));
            continue;
        }
        let is_count = matches!(c.expect, Expect::Count(_));
        let got = match run_query(pool, dialect, &sql, is_count).await {
            Ok(g) => g,
            Err(e) => {
                failures.push(format!("{:?} {}: query error {e}\n  {}", c.route, c.body, sql.text));
                continue;
            }
        };
        let want: Vec<String> = match c.expect {
            Expect::Ids(v) => v.iter().map(|s| id(s)).collect(),
            Expect::Count(n) => vec![n.to_string()],
        };
        if got != want {
            let short: Vec<String> = got.iter().map(|g| g.trim_start_matches("00000000-0000-0000-0000-").trim_start_matches('0').to_owned()).collect();
            failures.push(format!("{:?} {}: got {short:?}\n  {}\n  {:?}", c.route, c.body, sql.text, sql.binds));
        }
    }
    assert!(failures.is_empty(), "{} of {ran} cases failed on {dialect:?}:\n{}", failures.len(), failures.join("\n"));
    ran
}

async fn seeded(pool: &AnyPool) {
    sqlx::raw_sql(SCHEMA).execute(pool).await.expect("schema");
    sqlx::raw_sql(&seed()).execute(pool).await.expect("seed");
}

#[tokio::test]
async fn sqlite_cases() {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    seeded(&pool).await;
    let n = run_cases(&pool, Dialect::Sqlite).await;
    eprintln!("{n} SQLite cases passed");
}

#[tokio::test]
async fn postgres_cases() {
    sqlx::any::install_default_drivers();
    let url = std::env::var("FILTERS_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1/postgres".to_owned());
    let admin = match AnyPoolOptions::new().max_connections(1).connect(&url).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipping Postgres cases: cannot connect to {url}: {e}");
            return;
        }
    };
    let db = format!("filters_test_{}", std::process::id());
    sqlx::raw_sql(&format!("CREATE DATABASE {db}")).execute(&admin).await.expect("create database");
    let (base, _) = url.rsplit_once('/').expect("database url");
    let pool = AnyPoolOptions::new().max_connections(1).connect(&format!("{base}/{db}")).await.expect("connect");
    seeded(&pool).await;
    let result = tokio::spawn({
        let pool = pool.clone();
        async move { run_cases(&pool, Dialect::Postgres).await }
    })
    .await;
    pool.close().await;
    sqlx::raw_sql(&format!("DROP DATABASE {db} WITH (FORCE)")).execute(&admin).await.expect("drop database");
    match result {
        Ok(n) => eprintln!("{n} Postgres cases passed"),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

// ------------------------------------------------------------ no database ---

fn err(route: Route, body: Value) -> FilterError {
    build(route, &body, Dialect::Sqlite).expect_err("expected an error")
}

#[test]
fn rejects_bad_paging_and_sorts() {
    let loc = |f: &str| vec!["body".to_owned(), f.to_owned()];
    assert!(matches!(err(Flows, json!({"limit": 201})), FilterError::Invalid { loc: l, msg } if l == loc("limit") && msg.contains("less than or equal to 200")));
    assert!(matches!(err(FlowRuns, json!({"limit": -1})), FilterError::Invalid { loc: l, .. } if l == loc("limit")));
    assert!(matches!(err(TaskRuns, json!({"offset": -1})), FilterError::Invalid { loc: l, .. } if l == loc("offset")));
    assert!(matches!(err(Logs, json!({"limit": 1.5})), FilterError::Invalid { loc: l, .. } if l == vec!["body".to_owned()]));
    match err(FlowRuns, json!({"sort": "NAME_ASCENDING"})) {
        FilterError::Invalid { loc: l, msg } => {
            assert_eq!(l, loc("sort"));
            assert!(msg.starts_with("Input should be 'ID_DESC', 'START_TIME_ASC'"), "{msg}");
            assert!(msg.ends_with(" or 'END_TIME_DESC'"), "{msg}");
        }
        e => panic!("{e:?}"),
    }
    // A flow sort is not a task run sort.
    assert!(matches!(err(TaskRuns, json!({"sort": "START_TIME_ASC"})), FilterError::Invalid { .. }));
    assert!(matches!(err(Logs, json!({"sort": "ID_DESC"})), FilterError::Invalid { .. }));
}

#[test]
fn rejects_unknown_filter_keys_and_bad_values() {
    for (route, body) in [
        (Flows, json!({"flows": {"bogus": 1}})),
        (Flows, json!({"flows": {"tags": {"any_": ["x"]}}})),
        (FlowRuns, json!({"flow_runs": {"state": {"type": {"any_": ["DONE"]}}}})),
        (FlowRuns, json!({"flow_runs": {"id": {"any_": ["not-a-uuid"]}}})),
        (FlowRuns, json!({"flow_runs": {"start_time": {"before_": "yesterday"}}})),
        (FlowRuns, json!({"flow_runs": {"operator": "xor_"}})),
        (TaskRuns, json!({"task_runs": {"id": {"not_any_": []}}})),
        (Logs, json!({"logs": {"text": {}}})),
        (Logs, json!({"logs": {"level": {"ge_": "high"}}})),
        (Flows, json!({"flows": 5})),
        (Flows, json!([])),
    ] {
        match err(route, body.clone()) {
            FilterError::Invalid { loc, .. } => assert_eq!(loc, vec!["body".to_owned()], "{body}"),
            e => panic!("{body}: {e:?}"),
        }
    }
    let long = "x".repeat(201);
    match err(Logs, json!({"logs": {"text": {"query": long}}})) {
        FilterError::Invalid { loc, msg } => {
            assert_eq!(loc, ["body", "logs", "text", "query"]);
            assert_eq!(msg, "String should have at most 200 characters");
        }
        e => panic!("{e:?}"),
    }
    assert!(build(Logs, &json!({"logs": {"text": {"query": "é".repeat(200)}}}), Dialect::Sqlite).is_ok());
}

#[test]
fn document_filters_compile_and_reject_unknown_keys() {
    for (route, body) in [
        (Flows, json!({"deployments": {"id": {"any_": [id("d1")]}}})),
        (CountFlows, json!({"work_pools": {"name": {"any_": []}}})),
        (FlowRuns, json!({"work_pool_queues": {"name": {"any_": ["q"], "startswith_": ["a"]}}})),
        (CountTaskRuns, json!({"deployments": {"paused": {"eq_": true}}})),
        (Flows, json!({"deployments": {}, "work_pools": {"operator": "or_", "id": {"any_": null}}})),
        (FlowRuns, json!({"deployments": null, "work_pools": {}, "work_pool_queues": {"name": {}}})),
        // Not parameters of these routes in Prefect, so ignored whatever they hold.
        (Flows, json!({"work_pool_queues": {"name": {"any_": ["q"]}}})),
        (TaskRuns, json!({"work_pools": {"name": {"any_": ["p"]}}, "work_pool_queues": {"id": {"any_": []}}})),
    ] {
        let sql = build(route, &body, Dialect::Sqlite).unwrap_or_else(|e| panic!("{body}: {e:?}"));
        sql.check_placeholders().unwrap_or_else(|e| panic!("{body}: {e}"));
    }
    for body in [
        json!({"deployments": {"nme": {"any_": ["x"]}}}),
        json!({"deployments": {"name": {"eq_": "x"}}}),
        json!({"work_pools": {"id": {"any_": ["not-a-uuid"]}}}),
    ] {
        assert!(matches!(err(FlowRuns, body.clone()), FilterError::Invalid { .. }), "{body}");
    }
}

#[test]
fn timestamps_normalise_like_pydantic() {
    let t = |v: Value| serde_json::from_value::<Timestamp>(v).map(|t| t.0).map_err(|e| e.to_string());
    assert_eq!(t(json!("2024-01-01")).unwrap(), "2024-01-01T00:00:00.000000Z");
    assert_eq!(t(json!("2024-01-01T00:00:00")).unwrap(), "2024-01-01T00:00:00.000000Z");
    assert_eq!(t(json!("2024-01-01T01:00:00+01:00")).unwrap(), "2024-01-01T00:00:00.000000Z");
    assert_eq!(t(json!(1700000000)).unwrap(), "2023-11-14T22:13:20.000000Z");
    assert_eq!(t(json!("1700000000")).unwrap(), "2023-11-14T22:13:20.000000Z");
    assert_eq!(t(json!(1700000000123i64)).unwrap(), "2023-11-14T22:13:20.123000Z");
    assert_eq!(t(json!(1700000000.5)).unwrap(), "2023-11-14T22:13:20.500000Z");
    assert_eq!(t(json!("2024-01-01T00:00:00.1234567Z")).unwrap(), "2024-01-01T00:00:00.123456Z");
    assert_eq!(t(json!("2024-01-01 00:00:00Z")).unwrap(), "2024-01-01T00:00:00.000000Z");
    assert_eq!(t(json!("2024-01-01T00:00Z")).unwrap(), "2024-01-01T00:00:00.000000Z");
    assert_eq!(t(json!("2024-01-01T00:00:00+0100")).unwrap(), "2023-12-31T23:00:00.000000Z");
    assert_eq!(t(json!("2024-01-01T00:00:00-05")).unwrap(), "2024-01-01T05:00:00.000000Z");
    assert_eq!(t(json!("2026-11-23T07:58:33.316432Z")).unwrap(), "2026-11-23T07:58:33.316432Z");
    assert_eq!(t(json!("2026-11-23T07:58:33.3164+00:00")).unwrap(), "2026-11-23T07:58:33.316400Z");
    for bad in [json!("yesterday"), json!("2024-13-01"), json!("2024-01-01T25:00:00Z"), json!(true), json!("2024-01-01T00:00:00+2500"), json!("")] {
        assert!(t(bad.clone()).is_err(), "{bad}");
    }
}

#[test]
fn text_search_parser_matches_prefect() {
    let p = |q: &str| {
        let r = parse_text_search_query(q);
        (r.include, r.exclude, r.required)
    };
    let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // Expected values produced by prefect.server.utilities.text_search_parser.
    assert_eq!(p(r#"err -de_bug +"a%b" x"#), (v(&["err", "x"]), v(&["de_bug"]), v(&["a%b"])));
    assert_eq!(p(r#"a "b \" c" !d"#), (v(&["a", r#"b " c"#]), v(&["d"]), v(&[])));
    assert_eq!(p("- x"), (v(&["x"]), v(&[]), v(&[])));
    assert_eq!(p("\"unclosed phrase"), (v(&["unclosed phrase"]), v(&[]), v(&[])));
    assert_eq!(p("+"), (v(&[]), v(&[]), v(&[])));
    assert_eq!(p("a\"b\"c"), (v(&["a", "b", "c"]), v(&[]), v(&[])));
    assert_eq!(p("--x"), (v(&[]), v(&["-x"]), v(&[])));
    assert_eq!(p(r#""\\n""#), (v(&[r"\n"]), v(&[]), v(&[])));
    assert_eq!(p(r#"  +"  " y"#), (v(&["y"]), v(&[]), v(&[])));
}

#[test]
fn postgres_text_uses_jsonb_and_ilike() {
    let body = json!({"flow_runs": {"tags": {"all_": ["a"]}, "name": {"like_": "x"}, "created_by": {"type_": ["T"]}}});
    let sql = build(FlowRuns, &body, Dialect::Postgres).unwrap();
    assert!(sql.text.contains("(flow_run.tags)::jsonb ? $"), "{}", sql.text);
    assert!(sql.text.contains("flow_run.name ILIKE $"), "{}", sql.text);
    assert!(sql.text.contains("((flow_run.created_by)::jsonb ->> 'type') IN ($"), "{}", sql.text);
    let sql = build(FlowRuns, &body, Dialect::Sqlite).unwrap();
    assert!(sql.text.contains("json_extract(flow_run.created_by, $"), "{}", sql.text);
    assert!(sql.binds.contains(&Bind::Text("$.type".into())));
}
