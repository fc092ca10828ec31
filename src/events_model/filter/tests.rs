//! Event filters, counts and rows run against the real events read-model
//! DDL: in-memory SQLite always, and a throwaway Postgres database when one
//! is reachable (`EVENTS_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1/postgres`).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

use super::*;
use crate::db::sql::{Bind, Dialect, Sql};
use crate::events_model::count_by::{count_sql, event_counts, CountByBody, CountRow, Countable};
use crate::events_model::event_row::event_json;

const SCHEMA: &str = include_str!("../../../projections/events/schema.sql");
const WS: &str = "00000000-0000-0000-0000-000000000000";
const OTHER_WS: &str = "99999999-0000-0000-0000-000000000000";
const NOW: &str = "2026-03-01T00:00:00Z";

fn now() -> DateTime<Utc> {
    parse_stored(NOW).unwrap()
}

/// `"e1"` -> `00000000-0000-0000-0000-0000000000e1`.
fn id(short: &str) -> String {
    format!("00000000-0000-0000-0000-{short:0>12}")
}

fn short(full: &str) -> String {
    full.trim_start_matches("00000000-0000-0000-0000-").trim_start_matches('0').to_owned()
}

fn rel(id: &str, role: &str, extra: Value) -> Value {
    let mut m = json!({"prefect.resource.id": id, "prefect.resource.role": role});
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    m
}

/// The seeded events (as Prefect `ReceivedEvent`s) and their workspaces.
fn seed_events() -> Vec<(&'static str, Value)> {
    let f1 = rel("prefect.flow.f1", "flow", json!({"prefect.resource.name": "etl"}));
    let f2 = rel("prefect.flow.f2", "flow", json!({"prefect.resource.name": "report"}));
    let ev = |short: &str, occurred: &str, event: &str, resource: Value, related: Vec<Value>, payload: Value| {
        json!({"occurred": occurred, "event": event, "resource": resource, "related": related, "payload": payload,
               "id": id(short), "follows": null, "received": occurred})
    };
    vec![
        (
            WS,
            ev(
                "e1",
                "2026-01-01T00:00:01Z",
                "prefect.flow-run.Completed",
                json!({"prefect.resource.id": "prefect.flow-run.aaa", "prefect.resource.name": "happy-otter", "prefect.state-type": "COMPLETED"}),
                vec![f1.clone(), rel("prefect.tag.prod", "tag", json!({}))],
                json!({"intended": {"from": "RUNNING", "to": "COMPLETED"}}),
            ),
        ),
        (
            WS,
            ev(
                "e2",
                "2026-01-01T00:00:02.600000Z",
                "prefect.flow-run.Running",
                json!({"prefect.resource.id": "prefect.flow-run.aaa", "prefect.resource.name": "happy-otter", "prefect.state-type": "RUNNING"}),
                vec![f1.clone(), rel("prefect.deployment.d1", "deployment", json!({"prefect.resource.name": "nightly_etl"}))],
                json!({}),
            ),
        ),
        (
            WS,
            ev(
                "e3",
                "2026-01-02T00:00:00Z",
                "prefect.flow-run.Failed",
                json!({"prefect.resource.id": "prefect.flow-run.bbb", "prefect.resource.name": "Sad-Panda", "prefect.state-type": "FAILED"}),
                vec![f2.clone(), rel("prefect.tag.prod", "tag", json!({})), rel("prefect.tag.Big%_[x]", "tag", json!({}))],
                json!({"message": "Connection TIMEOUT error"}),
            ),
        ),
        (
            WS,
            ev(
                "e4",
                "2026-01-02T00:00:00Z",
                "prefect.task-run.Completed",
                json!({"prefect.resource.id": "prefect.task-run.ccc", "prefect.resource.name": "extract-0", "prefect.orchestration": "client"}),
                vec![rel("prefect.flow-run.aaa", "flow-run", json!({"prefect.resource.name": "happy-otter"})), f1.clone()],
                json!({"task_run": {"name": "extract"}}),
            ),
        ),
        (
            WS,
            ev(
                "e5",
                "2026-01-03T00:00:00Z",
                "prefect.worker.started",
                json!({"prefect.resource.id": "prefect.worker.process.w1", "prefect.name": "worker-one"}),
                vec![rel("prefect.work-pool.p1", "work-pool", json!({"prefect.work-pool.type": "process"}))],
                json!({"debug": true, "progress": "100%"}),
            ),
        ),
        (
            WS,
            ev(
                "e6",
                "2026-01-04T00:00:00Z",
                "my.custom_event",
                json!({"prefect.resource.id": "my.resource.1", "label.with\"quote": "q", "env": "prod", "prefect.resource.name": "Widget*"}),
                vec![],
                json!({"note": "héllo wörld"}),
            ),
        ),
        (
            OTHER_WS,
            ev(
                "e7",
                "2026-01-02T00:00:00Z",
                "prefect.flow-run.Completed",
                json!({"prefect.resource.id": "prefect.flow-run.aaa", "prefect.resource.name": "happy-otter"}),
                vec![f1.clone()],
                json!({}),
            ),
        ),
        (
            WS,
            ev(
                "e8",
                "2025-06-01T00:00:00Z",
                "prefect.flow-run.Completed",
                json!({"prefect.resource.id": "prefect.flow-run.old"}),
                vec![],
                json!({}),
            ),
        ),
        // Before Prefect's bucket pivot (2024-04-01).
        (
            WS,
            ev(
                "eb",
                "2024-03-31T12:00:00Z",
                "prefect.flow-run.Completed",
                json!({"prefect.resource.id": "prefect.flow-run.ancient"}),
                vec![],
                json!({}),
            ),
        ),
        (
            WS,
            ev(
                "e9",
                "2026-04-01T00:00:00Z",
                "prefect.flow-run.Completed",
                json!({"prefect.resource.id": "prefect.flow-run.future"}),
                vec![],
                json!({}),
            ),
        ),
        (
            WS,
            ev(
                "ea",
                "2026-01-05T00:00:00Z",
                "prefect.flow-run.Completed",
                json!({"prefect.resource.id": "prefect.flow-run.bbb", "prefect.resource.name": "Glad-Panda"}),
                vec![f2.clone()],
                json!({}),
            ),
        ),
    ]
}

fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// INSERTs as the events projector stores an event.
fn seed_sql() -> String {
    let mut s = String::new();
    for (pos, (ws, e)) in seed_events().iter().enumerate() {
        let ts = |k: &str| format_ts(parse_stored(e[k].as_str().unwrap()).unwrap());
        let resource = e["resource"].as_object().unwrap();
        let rid = resource["prefect.resource.id"].as_str().unwrap();
        let related = e["related"].as_array().unwrap();
        let related_ids: Vec<Value> = related.iter().map(|r| r["prefect.resource.id"].clone()).collect();
        s += &format!(
            "INSERT INTO events (id, workspace_id, occurred, event, resource_id, resource, related_resource_ids, related, payload, received, recorded, follows, log_position) \
             VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, NULL, {});\n",
            q(e["id"].as_str().unwrap()), q(ws), q(&ts("occurred")), q(e["event"].as_str().unwrap()), q(rid),
            q(&e["resource"].to_string()), q(&Value::Array(related_ids).to_string()), q(&e["related"].to_string()),
            q(&e["payload"].to_string()), q(&ts("received")), q(&ts("received")), pos + 1,
        );
        let strip = |r: &Value| {
            let mut m = r.as_object().unwrap().clone();
            m.remove("prefect.resource.id");
            m.remove("prefect.resource.role");
            Value::Object(m).to_string()
        };
        let mut rows = vec![(rid.to_owned(), String::new(), strip(&e["resource"]))];
        for r in related {
            rows.push((
                r["prefect.resource.id"].as_str().unwrap().to_owned(),
                r["prefect.resource.role"].as_str().unwrap().to_owned(),
                strip(r),
            ));
        }
        for (rid, role, labels) in rows {
            s += &format!(
                "INSERT INTO event_resources (event_id, occurred, resource_id, resource_role, resource) VALUES ({}, {}, {}, {}, {});\n",
                q(e["id"].as_str().unwrap()),
                q(&ts("occurred")),
                q(&rid),
                q(&role),
                q(&labels),
            );
        }
    }
    s
}

struct Case {
    filter: Value,
    expect: &'static [&'static str],
    /// (limit, offset) when not the default (50, 0).
    page: Option<(i64, i64)>,
    /// Why Prefect's own SQLite backend answers differently (for the
    /// cross-check against Prefect; see `dump_cases_for_prefect`).
    prefect_sqlite_differs: Option<&'static str>,
}

fn c(filter: Value, expect: &'static [&'static str]) -> Case {
    Case { filter, expect, page: None, prefect_sqlite_differs: None }
}

const ALL: &[&str] = &["ea", "e6", "e5", "e4", "e3", "e2", "e1"];

fn cases() -> Vec<Case> {
    vec![
        // ---- window and order
        c(json!({}), ALL),
        c(
            json!({"occurred": null, "event": null, "resource": null, "related": null, "any_resource": null, "id": null, "text": null, "order": null}),
            ALL,
        ),
        c(json!({"order": "ASC"}), &["e1", "e2", "e3", "e4", "e5", "e6", "ea"]),
        c(json!({"occurred": {"since": "2026-01-02T00:00:00Z", "until": "2026-01-03T00:00:00Z"}}), &["e5", "e4", "e3"]),
        c(json!({"occurred": {"since": "2026-01-02T01:00:00+01:00", "until": "2026-01-02"}}), &["e4", "e3"]),
        c(json!({"occurred": {"since": "2025-01-01"}}), &["ea", "e6", "e5", "e4", "e3", "e2", "e1", "e8"]),
        c(json!({"occurred": {"until": "2026-12-31T00:00:00Z"}}), &["e9", "ea", "e6", "e5", "e4", "e3", "e2", "e1"]),
        c(json!({"occurred": {"since": 1767225601, "until": "2026-01-01T00:00:02.6Z"}}), &["e2", "e1"]),
        // ---- event names
        c(json!({"event": {"prefix": ["prefect.flow-run."]}}), &["ea", "e3", "e2", "e1"]),
        c(json!({"event": {"prefix": ["prefect.flow-run.", "prefect.worker"]}}), &["ea", "e5", "e3", "e2", "e1"]),
        c(json!({"event": {"prefix": []}}), ALL),
        c(json!({"event": {"prefix": [""]}}), ALL),
        c(json!({"event": {"exclude_prefix": ["prefect.flow-run."]}}), &["e6", "e5", "e4"]),
        c(json!({"event": {"exclude_prefix": ["prefect.flow-run.", "prefect.task-run."]}}), &["e6", "e5"]),
        c(json!({"event": {"name": ["prefect.flow-run.Completed"]}}), &["ea", "e1"]),
        c(json!({"event": {"name": ["prefect.flow-run.Completed"], "prefix": ["prefect.flow-run."]}}), &["ea", "e1"]),
        c(json!({"event": {"exclude_name": ["prefect.flow-run.Completed", "my.custom_event"]}}), &["e5", "e4", "e3", "e2"]),
        c(json!({"event": {"prefix": ["my.custom_"]}}), &["e6"]),
        Case {
            prefect_sqlite_differs: Some("Prefect's startswith leaves '_' a LIKE wildcard"),
            ..c(json!({"event": {"prefix": ["my_custom"]}}), &[])
        },
        Case {
            prefect_sqlite_differs: Some("SQLite LIKE is case-insensitive"),
            ..c(json!({"event": {"prefix": ["PREFECT.flow-run"]}}), &[])
        },
        // ---- primary resource
        c(json!({"resource": {"id": ["prefect.flow-run.aaa"]}}), &["e2", "e1"]),
        c(json!({"resource": {"id": []}}), ALL),
        c(json!({"resource": {"id_prefix": ["prefect.flow-run.", "prefect.worker."]}}), &["ea", "e5", "e3", "e2", "e1"]),
        c(json!({"resource": {"labels": {}}}), ALL),
        c(json!({"resource": {"labels": {"prefect.resource.name": "happy-*"}}}), &["e2", "e1"]),
        c(json!({"resource": {"labels": {"prefect.resource.name": ["happy-otter", "Sad-Panda"]}}}), &["e3", "e2", "e1"]),
        c(json!({"resource": {"labels": {"prefect.resource.name": "!happy-*"}}}), &["ea", "e6", "e4", "e3"]),
        c(json!({"resource": {"labels": {"prefect.resource.name": ["!happy-*", "happy-otter"]}}}), &["ea", "e6", "e4", "e3", "e2", "e1"]),
        c(json!({"resource": {"labels": {"prefect.resource.name": ["!happy-*", "!Sad-*"]}}}), &["ea", "e6", "e4", "e3", "e2", "e1"]),
        Case {
            prefect_sqlite_differs: Some("SQLite LIKE is case-insensitive"),
            ..c(json!({"resource": {"labels": {"prefect.resource.name": "sad-panda"}}}), &[])
        },
        c(json!({"resource": {"labels": {"prefect.resource.name": "?ad-Panda"}}}), &["e3"]),
        c(json!({"resource": {"labels": {"prefect.resource.name": "*Panda"}}}), &["ea", "e3"]),
        c(json!({"resource": {"labels": {"prefect.resource.name": "Widget*"}}}), &["e6"]),
        c(json!({"resource": {"labels": {"prefect.resource.name": "Widget"}}}), &[]),
        c(json!({"resource": {"labels": {"prefect.resource.id": "prefect.flow-run.*"}}}), &["ea", "e3", "e2", "e1"]),
        c(json!({"resource": {"labels": {"prefect.resource.id": "prefect.flow-run.*", "prefect.state-type": "COMPLETED"}}}), &["e1"]),
        c(json!({"resource": {"labels": {"prefect.resource.id": ["!prefect.flow-run.*"]}}}), &["e6", "e5", "e4"]),
        c(json!({"resource": {"labels": {"prefect.resource.id": []}}}), ALL),
        c(json!({"resource": {"labels": {"prefect.resource.id": ""}}}), ALL),
        c(json!({"resource": {"labels": {"env": []}}}), &[]),
        c(json!({"resource": {"labels": {"env": ""}}}), &[]),
        c(json!({"resource": {"labels": {"env": "prod", "prefect.resource.id": "my.*"}}}), &["e6"]),
        c(json!({"resource": {"labels": {"label.with\"quote": "q"}}}), &["e6"]),
        c(json!({"resource": {"labels": {"prefect.resource.role": "flow"}}}), &[]),
        c(json!({"resource": {"labels": {"prefect.name": "worker-*"}}}), &["e5"]),
        // ---- distinct
        c(json!({"resource": {"distinct": true}}), &["ea", "e6", "e5", "e4", "e2"]),
        c(json!({"resource": {"distinct": true}, "order": "ASC"}), &["e1", "e3", "e4", "e5", "e6"]),
        c(json!({"resource": {"distinct": true, "id_prefix": ["prefect.flow-run."]}}), &["ea", "e2"]),
        c(json!({"resource": {"distinct": null}}), ALL),
        // ---- related
        c(json!({"related": {}}), ALL),
        c(json!({"related": []}), ALL),
        c(json!({"related": {"id": ["prefect.flow.f1"]}}), &["e4", "e2", "e1"]),
        c(json!({"related": {"id": ["prefect.flow-run.aaa"]}}), &["e4"]),
        c(json!({"related": {"role": ["tag"]}}), &["e3", "e1"]),
        c(json!({"related": {"role": ["flow"], "id": ["prefect.flow.f2"]}}), &["ea", "e3"]),
        c(json!({"related": {"role": ["tag"], "id": ["prefect.flow.f2"]}}), &[]),
        c(json!({"related": {"resources_in_roles": [["prefect.flow.f1", "flow"]]}}), &["e4", "e2", "e1"]),
        c(json!({"related": {"resources_in_roles": [["prefect.flow.f1", "deployment"], ["prefect.work-pool.p1", "work-pool"]]}}), &["e5"]),
        c(json!({"related": {"labels": {"prefect.resource.name": "etl"}}}), &["e4", "e2", "e1"]),
        c(json!({"related": {"labels": {"prefect.resource.name": "*etl"}}}), &["e4", "e2", "e1"]),
        c(json!({"related": {"labels": {"prefect.resource.role": "deployment"}}}), &["e2"]),
        c(json!({"related": {"labels": {"prefect.resource.role": ["deployment", "work-pool"]}}}), &["e5", "e2"]),
        c(json!({"related": {"labels": {"prefect.resource.id": "prefect.tag.*"}}}), &["e3", "e1"]),
        c(json!({"related": {"labels": {"prefect.work-pool.type": "proc*"}}}), &["e5"]),
        c(json!({"related": {"labels": {"prefect.resource.id": "prefect.tag.Big%_[x]"}}}), &["e3"]),
        c(json!({"related": {"labels": {"prefect.resource.id": "prefect.tag.Big??[x]"}}}), &["e3"]),
        c(json!({"related": {"labels": {"prefect.resource.id": "prefect.tag.Big__[x]"}}}), &[]),
        c(json!({"related": {"labels": {"prefect.resource.id": "prefect.tag.Big%%[x]"}}}), &[]),
        c(json!({"related": {"labels": {"prefect.resource.name": "happy-otter"}}}), &["e4"]),
        c(json!({"related": [{"role": ["flow"]}, {"role": ["tag"]}]}), &["e3", "e1"]),
        c(json!({"related": [{"id": ["prefect.flow.f1"]}, {"id": ["prefect.deployment.d1"]}]}), &["e2"]),
        // An explicit role lets the primary resource (role "") match.
        c(json!({"related": {"id": ["prefect.flow-run.aaa"], "role": [""]}}), &["e2", "e1"]),
        c(json!({"related": {"labels": {"prefect.resource.id": []}}}), &["ea", "e5", "e4", "e3", "e2", "e1"]),
        // ---- any resource
        c(json!({"any_resource": {}}), ALL),
        c(json!({"any_resource": {"id": ["prefect.flow-run.aaa"]}}), &["e4", "e2", "e1"]),
        c(json!({"any_resource": {"id_prefix": ["prefect.work-pool."]}}), &["e5"]),
        c(json!({"any_resource": {"id_prefix": ["prefect.tag.Big%"]}}), &["e3"]),
        c(json!({"any_resource": {"labels": {"prefect.resource.role": "flow-run"}}}), &["e4"]),
        c(json!({"any_resource": {"labels": {"prefect.resource.name": "etl"}}}), &["e4", "e2", "e1"]),
        c(json!({"any_resource": {"labels": {"prefect.resource.name": "happy-otter"}}}), &["e4", "e2", "e1"]),
        c(json!({"any_resource": [{"id": ["prefect.flow.f1"]}, {"id_prefix": ["prefect.task-run."]}]}), &["e4"]),
        c(json!({"any_resource": {"id": ["prefect.flow.f1"], "labels": {"prefect.resource.role": "deployment"}}}), &[]),
        // ---- ids
        c(json!({"id": {"id": [id("e3"), id("e5"), id("e7"), "00000000-0000-0000-0000-00000000ffff"]}}), &["e5", "e3"]),
        c(json!({"id": {"id": [format!("{}E3", "0".repeat(30))]}}), &["e3"]),
        c(json!({"id": {"id": []}}), ALL),
        c(json!({"id": {}}), ALL),
        // ---- text
        c(json!({"text": {"query": "timeout"}}), &["e3"]),
        c(json!({"text": {"query": "TIMEOUT -panda"}}), &[]),
        c(json!({"text": {"query": "otter extract"}}), &["e4", "e2", "e1"]),
        c(json!({"text": {"query": "+flow-run +completed"}}), &["ea", "e4", "e1"]),
        c(json!({"text": {"query": "\"happy-otter\" -task"}}), &["e2", "e1"]),
        c(json!({"text": {"query": "100%"}}), &["e5"]),
        c(json!({"text": {"query": "nightly_etl"}}), &["e2"]),
        c(json!({"text": {"query": "   "}}), ALL),
        c(json!({"text": {"query": "-prefect"}}), &[]),
        Case { prefect_sqlite_differs: Some("Prefect's SQLite JSON is ASCII-escaped"), ..c(json!({"text": {"query": "HÉLLO"}}), &["e6"]) },
        // ---- combinations and paging
        c(json!({"event": {"prefix": ["prefect.flow-run."]}, "related": {"role": ["tag"]}, "order": "ASC"}), &["e1", "e3"]),
        // e1's payload mentions RUNNING.
        c(json!({"any_resource": {"id": ["prefect.flow.f1"]}, "text": {"query": "running"}}), &["e2", "e1"]),
        Case { page: Some((2, 1)), ..c(json!({}), &["e6", "e5"]) },
        Case { page: Some((50, 6)), ..c(json!({}), &["e1"]) },
        Case { page: Some((0, 0)), ..c(json!({}), &[]) },
        // logical_limit: asking for one id returns at most one row.
        Case { page: Some((50, 0)), ..c(json!({"id": {"id": [id("e1")]}}), &["e1"]) },
    ]
}

async fn run_ids(pool: &AnyPool, dialect: Dialect, sql: &Sql) -> Result<Vec<String>, sqlx::Error> {
    let rows = fetch(pool, dialect, sql).await?;
    rows.iter().map(|r| r.try_get::<String, _>("id")).collect()
}

async fn fetch(pool: &AnyPool, dialect: Dialect, sql: &Sql) -> Result<Vec<sqlx::any::AnyRow>, sqlx::Error> {
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
    q.fetch_all(pool).await
}


async fn run_cases(pool: &AnyPool, dialect: Dialect) -> usize {
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in cases() {
        ran += 1;
        let filter: EventFilter = match serde_json::from_value(case.filter.clone()) {
            Ok(f) => f,
            Err(e) => {
                failures.push(format!("{}: parse error {e}", case.filter));
                continue;
            }
        };
        let (limit, offset) = case.page.unwrap_or((50, 0));
        let select = select_events(&filter, dialect, WS, now(), limit, offset).unwrap();
        let count = count_events(&filter, dialect, WS, now()).unwrap();
        for sql in [&select, &count] {
            if let Err(e) = sql.check_placeholders() {
                failures.push(format!("{}: {e}\n  {}", case.filter, sql.text));
            }
        }
        let got = match run_ids(pool, dialect, &select).await {
            Ok(g) => g,
            Err(e) => {
                failures.push(format!("{}: query error {e}\n  {}", case.filter, select.text));
                continue;
            }
        };
        let want: Vec<String> = case.expect.iter().map(|s| id(s)).collect();
        if got != want {
            let got: Vec<String> = got.iter().map(|g| short(g)).collect();
            failures.push(format!("{}: got {got:?}, want {:?}\n  {}\n  {:?}", case.filter, case.expect, select.text, select.binds));
        }
        if case.page.is_none() {
            match fetch(pool, dialect, &count).await.and_then(|r| r[0].try_get::<i64, _>(0)) {
                Ok(n) if n == want.len() as i64 => {}
                Ok(n) => failures.push(format!("{}: count {n}, want {}", case.filter, want.len())),
                Err(e) => failures.push(format!("{}: count error {e}\n  {}", case.filter, count.text)),
            }
        }
    }
    assert!(failures.is_empty(), "{} of {ran} cases failed on {dialect:?}:\n{}", failures.len(), failures.join("\n"));
    ran
}

async fn counts(pool: &AnyPool, dialect: Dialect, countable: Countable, body: Value) -> Value {
    let body = CountByBody::from_json(body.to_string().as_bytes()).unwrap();
    let sql = count_sql(countable, &body, dialect, WS, now()).unwrap();
    sql.check_placeholders().unwrap();
    let rows = fetch(pool, dialect, &sql).await.unwrap_or_else(|e| panic!("{e}\n{}", sql.text));
    let rows: Vec<CountRow> = rows.iter().map(|r| CountRow::from_row(r).unwrap()).collect();
    serde_json::to_value(event_counts(countable, &body, now(), rows).unwrap()).unwrap()
}

fn brief(v: &Value) -> Vec<(String, String, i64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| (c["value"].as_str().unwrap().to_owned(), c["label"].as_str().unwrap().to_owned(), c["count"].as_i64().unwrap()))
        .collect()
}

fn b(items: &[(&str, &str, i64)]) -> Vec<(String, String, i64)> {
    items.iter().map(|(v, l, n)| ((*v).to_owned(), (*l).to_owned(), *n)).collect()
}

async fn run_counts(pool: &AnyPool, dialect: Dialect) {
    let got = counts(pool, dialect, Countable::Event, json!({"filter": {}})).await;
    assert_eq!(
        brief(&got),
        b(&[
            ("prefect.flow-run.Completed", "prefect.flow-run.Completed", 2),
            ("my.custom_event", "my.custom_event", 1),
            ("prefect.flow-run.Failed", "prefect.flow-run.Failed", 1),
            ("prefect.flow-run.Running", "prefect.flow-run.Running", 1),
            ("prefect.task-run.Completed", "prefect.task-run.Completed", 1),
            ("prefect.worker.started", "prefect.worker.started", 1),
        ])
    );
    assert_eq!(got[0]["start_time"], "2026-01-01T00:00:01Z");
    assert_eq!(got[0]["end_time"], "2026-01-05T00:00:00Z");

    let got = counts(pool, dialect, Countable::Resource, json!({"filter": {}})).await;
    assert_eq!(
        brief(&got),
        b(&[
            // Relabelled with the latest event's name.
            ("prefect.flow-run.bbb", "Glad-Panda", 2),
            ("prefect.flow-run.aaa", "happy-otter", 2),
            ("my.resource.1", "Widget*", 1),
            ("prefect.task-run.ccc", "extract-0", 1),
            // prefect.name when there is no prefect.resource.name.
            ("prefect.worker.process.w1", "worker-one", 1),
        ])
    );
    let got =
        counts(pool, dialect, Countable::Resource, json!({"filter": {"occurred": {"since": "2025-01-01", "until": "2025-12-31"}}})).await;
    assert_eq!(brief(&got), b(&[("prefect.flow-run.old", "prefect.flow-run.old", 1)]));

    let window = json!({"since": "2026-01-01T00:00:00Z", "until": "2026-01-05T12:00:00Z"});
    let got = counts(pool, dialect, Countable::Day, json!({"filter": {"occurred": window}})).await;
    assert_eq!(
        brief(&got),
        b(&[
            ("0", "2026-01-01T00:00:00+00:00", 2),
            ("1", "2026-01-02T00:00:00+00:00", 2),
            ("2", "2026-01-03T00:00:00+00:00", 1),
            ("3", "2026-01-04T00:00:00+00:00", 1),
            ("4", "2026-01-05T00:00:00+00:00", 1),
        ])
    );
    assert_eq!(got[4]["start_time"], "2026-01-05T00:00:00Z");
    assert_eq!(got[4]["end_time"], "2026-01-05T23:59:59.999999Z");

    let window = json!({"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T23:00:00Z"});
    let got =
        counts(pool, dialect, Countable::Time, json!({"filter": {"occurred": window}, "time_unit": "hour", "time_interval": 12})).await;
    assert_eq!(
        brief(&got),
        b(&[
            ("0", "2026-01-01T00:00:00+00:00", 2),
            ("1", "2026-01-01T12:00:00+00:00", 0),
            ("2", "2026-01-02T00:00:00+00:00", 2),
            ("3", "2026-01-02T12:00:00+00:00", 0),
        ])
    );

    // Half-second buckets see the stored microseconds (e2 at 02.6 s).
    let window = json!({"since": "2026-01-01T00:00:00Z", "until": "2026-01-01T00:00:03Z"});
    let got =
        counts(pool, dialect, Countable::Time, json!({"filter": {"occurred": window}, "time_unit": "second", "time_interval": 0.5})).await;
    assert_eq!(got.as_array().unwrap().iter().map(|c| c["count"].as_i64().unwrap()).collect::<Vec<_>>(), [0, 0, 1, 0, 0, 1]);

    // Filters apply to counts (and before the pivot buckets are negative).
    let window = json!({"since": "2024-03-30T00:00:00Z", "until": "2024-04-02T00:00:00Z"});
    let got =
        counts(pool, dialect, Countable::Day, json!({"filter": {"occurred": window, "event": {"prefix": ["prefect.flow-run."]}}})).await;
    assert_eq!(got.as_array().unwrap().iter().map(|c| c["count"].as_i64().unwrap()).collect::<Vec<_>>(), [0, 1, 0]);
}

async fn run_rows(pool: &AnyPool, dialect: Dialect) {
    let filter: EventFilter = serde_json::from_value(json!({"id": {"id": [id("e2"), id("e6")]}, "order": "ASC"})).unwrap();
    let rows = fetch(pool, dialect, &select_events(&filter, dialect, WS, now(), 50, 0).unwrap()).await.unwrap();
    let got: Vec<Value> = rows.iter().map(event_json).collect();
    let keys: Vec<&str> = got[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["occurred", "event", "resource", "related", "payload", "id", "follows", "received"]);
    let (_, e2) = seed_events().into_iter().find(|(_, e)| e["id"] == id("e2")).unwrap();
    assert_eq!(got[0]["occurred"], "2026-01-01T00:00:02.600000Z");
    assert_eq!(got[0]["resource"], e2["resource"]);
    assert_eq!(got[0]["related"], e2["related"]);
    assert_eq!(got[0]["follows"], Value::Null);
    assert_eq!(got[1]["occurred"], "2026-01-04T00:00:00Z");
    assert_eq!(got[1]["payload"], json!({"note": "héllo wörld"}));
    // Resource labels keep their order.
    let labels: Vec<&str> = got[1]["resource"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(labels, ["prefect.resource.id", "label.with\"quote", "env", "prefect.resource.name"]);
}

async fn seeded(pool: &AnyPool) {
    sqlx::raw_sql(SCHEMA).execute(pool).await.expect("schema");
    sqlx::raw_sql(&seed_sql()).execute(pool).await.expect("seed");
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
    run_counts(&pool, Dialect::Sqlite).await;
    run_rows(&pool, Dialect::Sqlite).await;
    eprintln!("{n} SQLite cases passed");
}

#[tokio::test]
async fn postgres_cases() {
    sqlx::any::install_default_drivers();
    let url = std::env::var("EVENTS_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1/postgres".to_owned());
    let admin = match AnyPoolOptions::new().max_connections(1).connect(&url).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipping Postgres cases: cannot connect to {url}: {e}");
            return;
        }
    };
    let db = format!("events_test_{}", std::process::id());
    sqlx::raw_sql(&format!("CREATE DATABASE {db}")).execute(&admin).await.expect("create database");
    let (base, _) = url.rsplit_once('/').expect("database url");
    let pool = AnyPoolOptions::new().max_connections(1).connect(&format!("{base}/{db}")).await.expect("connect");
    seeded(&pool).await;
    let result = tokio::spawn({
        let pool = pool.clone();
        async move {
            let n = run_cases(&pool, Dialect::Postgres).await;
            run_counts(&pool, Dialect::Postgres).await;
            run_rows(&pool, Dialect::Postgres).await;
            n
        }
    })
    .await;
    pool.close().await;
    sqlx::raw_sql(&format!("DROP DATABASE {db} WITH (FORCE)")).execute(&admin).await.expect("drop database");
    match result {
        Ok(n) => eprintln!("{n} Postgres cases passed"),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// With `EVENTS_CASES_DUMP=<path>`, writes the seed and the cases as JSON
/// for a cross-check against Prefect's own storage (a development aid).
#[test]
fn dump_cases_for_prefect() {
    let Ok(path) = std::env::var("EVENTS_CASES_DUMP") else { return };
    let seed: Vec<Value> = seed_events().into_iter().filter(|(ws, _)| *ws == WS).map(|(_, e)| e).collect();
    let cases: Vec<Value> = cases()
        .into_iter()
        .map(|c| {
            let (limit, offset) = c.page.unwrap_or((50, 0));
            json!({"filter": c.filter, "expect": c.expect.iter().map(|s| id(s)).collect::<Vec<_>>(), "limit": limit, "offset": offset,
                   "differs": c.prefect_sqlite_differs})
        })
        .collect();
    std::fs::write(path, json!({"now": NOW, "seed": seed, "cases": cases}).to_string()).unwrap();
}

// ------------------------------------------------------------ no database ---

#[test]
fn rejects_what_prefect_rejects() {
    let bad = [
        json!({"bogus": 1}),
        json!({"event": {"prefix": "prefect."}}),
        json!({"event": {"nope": []}}),
        json!({"resource": {"labels": {"a": 1}}}),
        json!({"resource": {"labels": {"a": [1]}}}),
        json!({"resource": {"labels": {"a": null}}}),
        json!({"related": [{"role": ["x"]}, {"bogus": 1}]}),
        json!({"related": {"resources_in_roles": [["only-one"]]}}),
        json!({"id": {"id": ["not-a-uuid"]}}),
        json!({"text": {}}),
        json!({"text": {"query": "x".repeat(201)}}),
        json!({"order": "asc"}),
        json!({"occurred": {"since": "yesterday"}}),
    ];
    for b in bad {
        assert!(serde_json::from_value::<EventFilter>(b.clone()).is_err(), "accepted {b}");
    }
    assert!(serde_json::from_value::<EventFilter>(json!({"text": {"query": "é".repeat(200)}})).is_ok());
}

#[test]
fn read_events_body() {
    let b = ReadEventsBody::from_json(b"").unwrap();
    assert_eq!((b.filter, b.limit), (EventFilter::default(), 50));
    let b = ReadEventsBody::from_json(br#"{"filter": null, "limit": "7", "other": 1}"#).unwrap();
    assert_eq!(b.limit, 7);
    let err = ReadEventsBody::from_json(br#"{"limit": 51}"#).unwrap_err();
    assert_eq!(err, EventFilterError::invalid(&["body", "limit"], "Input should be less than or equal to 50"));
    assert_eq!(err.detail()[0]["loc"], json!(["body", "limit"]));
    assert!(ReadEventsBody::from_json(br#"{"limit": -1}"#).is_err());
    assert!(
        matches!(ReadEventsBody::from_json(br#"{"filter": {"x": 1}}"#), Err(EventFilterError::Invalid { loc, .. }) if loc == ["body", "filter"])
    );
}

#[test]
fn serialises_like_prefects_model_dump() {
    let f: EventFilter = serde_json::from_value(json!({
        "occurred": {"since": "2024-05-01T00:00:00+02:00", "until": "2024-05-02T00:00:00.5Z"},
        "related": [{"labels": {"a": "b", "c": ["d"]}}],
        "resource": {"distinct": true},
        "id": {"id": ["0000000000000000000000000000000A"]},
    }))
    .unwrap();
    assert_eq!(
        serde_json::to_value(&f).unwrap().to_string(),
        json!({
            "occurred": {"since": "2024-04-30T22:00:00Z", "until": "2024-05-02T00:00:00.500000Z"},
            "event": null,
            "resource": {"id": null, "id_prefix": null, "labels": null, "distinct": true},
            "related": [{"id": null, "role": null, "resources_in_roles": null, "labels": {"a": "b", "c": ["d"]}}],
            "any_resource": null,
            "id": {"id": ["00000000-0000-0000-0000-00000000000a"]},
            "text": null,
            "order": "DESC",
        })
        .to_string()
    );
    // And back.
    assert_eq!(serde_json::from_value::<EventFilter>(serde_json::to_value(&f).unwrap()).unwrap(), f);
}

#[test]
fn defaults_window_and_sql_shapes() {
    let n = parse_stored("2026-03-01T15:04:05.5Z").unwrap();
    let (since, until) = EventOccurredFilter::default().bounds(n);
    assert_eq!(since.as_str(), "2025-09-02T00:00:00.000000Z");
    assert_eq!(until.as_str(), "2026-03-01T15:04:05.500000Z");
    let f: EventFilter =
        serde_json::from_value(json!({"resource": {"labels": {"x.y": "a*"}}, "related": {"labels": {"q\"z": "1"}}})).unwrap();
    let pg = select_events(&f, Dialect::Postgres, WS, n, 10, 0).unwrap();
    assert!(pg.text.contains("::jsonb ->> $"), "{}", pg.text);
    assert!(pg.text.contains("LIKE $"), "{}", pg.text);
    assert!(pg.binds.contains(&Bind::Text("a%".into())));
    let lite = select_events(&f, Dialect::Sqlite, WS, n, 10, 0).unwrap();
    assert!(lite.text.contains("json_extract(er_1.resource, $"), "{}", lite.text);
    assert!(lite.text.contains("json_each(er_2.resource)"), "{}", lite.text);
    assert!(lite.binds.contains(&Bind::Text("$.\"x.y\"".into())));
    assert!(!Dialect::Sqlite.rewrite(&lite.text).contains('$'));
    pg.check_placeholders().unwrap();
    lite.check_placeholders().unwrap();
}
