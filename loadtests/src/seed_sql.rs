//! `seed-events-sql`: bulk-loads events straight into a server's events read model (its
//! `events` and `event_resources` tables), for filter benchmarks at sizes that ingestion over
//! `/events/in` would take too long to reach (1M events at ~3,000 events/s is over 5 minutes for
//! prefect-server and about 20 for Python). It measures nothing itself: it only seeds.
//!
//! Both servers get the same data for the same `--seed` and `--events`: the mix of the
//! `seed-events` scenario (flow-run state events and heartbeats, task-run state events with a
//! related flow run and flow, and a custom event), `occurred` spread uniformly over the last
//! `--days` days and inserted in time order (as a live server would store them), each row laid out as that server would store it:
//!
//! * `--server rust`: prefect-server's read model (projections/events/schema.sql): timestamps as
//!   text (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), JSON as text, the nil workspace id, log position 0.
//! * `--server python`: Prefect 3.8.8's ORM tables (`prefect/server/database/orm_models.py`): on
//!   Postgres `timestamptz`, `jsonb` / `json` and `uuid` columns (ids of `event_resources`,
//!   `created` and `updated` from the column defaults); on SQLite SQLAlchemy's `DATETIME` text
//!   (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC), UUIDs as text and JSON as text.
//!
//! The tables must exist: start each server once on the database first (compare.sh does).
//! Afterwards the tables are analysed (and on Postgres vacuumed, so that both servers start from
//! the same visibility map and statistics that autovacuum would give them in time).

use std::time::Instant;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{json, Value};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};
use uuid::Uuid;

use crate::{emit, num, SEED_NAMES};

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Server {
    Rust,
    Python,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Postgres,
    Sqlite,
}

/// splitmix64: a small deterministic generator, so that both servers get the same rows.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uuid(&mut self) -> String {
        let hi = self.next() as u128;
        let lo = self.next() as u128;
        let bytes = ((hi << 64) | lo).to_be_bytes();
        uuid::Builder::from_random_bytes(bytes).into_uuid().hyphenated().to_string()
    }
}

/// One seeded event, independent of how a server stores it.
struct SeedRow {
    id: String,
    occurred: DateTime<Utc>,
    received: DateTime<Utc>,
    event: &'static str,
    resource: Value,
    related: Vec<Value>,
    payload: Value,
}

struct Generator {
    rng: Rng,
    tag: String,
    runs: Vec<String>,
    flows: Vec<String>,
    now: DateTime<Utc>,
    span_us: u64,
    events: usize,
}

impl Generator {
    fn new(seed: u64, now: DateTime<Utc>, days: u32, events: usize) -> Generator {
        let mut rng = Rng(seed);
        let tag = format!("{:08x}", rng.next() as u32);
        let runs = (0..200).map(|_| format!("{tag}{}", &rng.uuid()[8..])).collect();
        let flows = (0..10).map(|_| rng.uuid()).collect();
        Generator { rng, tag, runs, flows, now, span_us: u64::from(days.max(1)) * 86_400_000_000, events }
    }

    /// The `seed-events` mix (see `seed_event` in main.rs), with `occurred` anywhere in the span.
    fn row(&mut self, i: usize) -> SeedRow {
        let name = SEED_NAMES[i % SEED_NAMES.len()];
        // In arrival order, as a live server stores them (the table's physical order follows
        // time), uniformly over the span, with up to a minute of jitter (never in the future).
        let at = (self.span_us as u128 * i as u128 / self.events.max(1) as u128) as i64;
        let jitter = (self.rng.next() % 120_000_000) as i64 - 60_000_000;
        let ago = (self.span_us as i64 - at - jitter).max(1_000_000);
        let occurred = self.now - Duration::microseconds(ago);
        let received = occurred + Duration::microseconds((self.rng.next() % 200_000) as i64);
        let run = self.runs[(self.rng.next() % self.runs.len() as u64) as usize].clone();
        let flow = self.flows[(self.rng.next() % self.flows.len() as u64) as usize].clone();
        let (resource, related) = if let Some(state) = name.strip_prefix("prefect.flow-run.") {
            let mut r = json!({"prefect.resource.id": format!("prefect.flow-run.{run}"), "prefect.resource.name": format!("seed-{}", &run[9..13])});
            if state != "heartbeat" {
                r["prefect.state-name"] = json!(state);
                r["prefect.state-type"] = json!(state.to_uppercase());
            }
            (r, vec![json!({"prefect.resource.id": format!("prefect.flow.{flow}"), "prefect.resource.role": "flow", "prefect.resource.name": "seed-flow"})])
        } else if let Some(state) = name.strip_prefix("prefect.task-run.") {
            let task = format!("{}{}", self.tag, &self.rng.uuid()[8..]);
            (
                json!({"prefect.resource.id": format!("prefect.task-run.{task}"), "prefect.resource.name": "seed-task", "prefect.state-name": state, "prefect.state-type": state.to_uppercase()}),
                vec![
                    json!({"prefect.resource.id": format!("prefect.flow-run.{run}"), "prefect.resource.role": "flow-run"}),
                    json!({"prefect.resource.id": format!("prefect.flow.{flow}"), "prefect.resource.role": "flow"}),
                ],
            )
        } else {
            (json!({"prefect.resource.id": format!("load.resource.{}.{}", self.tag, i % 50)}), vec![])
        };
        SeedRow { id: self.rng.uuid(), occurred, received, event: name, resource, related, payload: json!({"i": i}) }
    }
}

fn label(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn without_id_and_role(v: &Value) -> String {
    let mut m = v.as_object().cloned().unwrap_or_default();
    m.remove("prefect.resource.id");
    m.remove("prefect.resource.role");
    Value::Object(m).to_string()
}

/// How one server lays out the two tables on one backend.
struct Layout {
    server: Server,
    backend: Backend,
}

impl Layout {
    fn ts(&self, t: DateTime<Utc>) -> String {
        match (self.server, self.backend) {
            (Server::Python, Backend::Sqlite) => t.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
            _ => t.to_rfc3339_opts(SecondsFormat::Micros, true),
        }
    }

    /// Column name and the SQL for its value (`{}` is the placeholder).
    fn event_columns(&self) -> Vec<(&'static str, &'static str)> {
        let pg = self.backend == Backend::Postgres;
        match self.server {
            Server::Rust => vec![
                ("id", "{}"),
                ("workspace_id", "{}"),
                ("occurred", "{}"),
                ("event", "{}"),
                ("resource_id", "{}"),
                ("resource", "{}"),
                ("related_resource_ids", "{}"),
                ("related", "{}"),
                ("payload", "{}"),
                ("received", "{}"),
                ("recorded", "{}"),
                ("follows", "NULL"),
                ("log_position", "0"),
            ],
            Server::Python if pg => vec![
                ("id", "CAST({} AS uuid)"),
                ("occurred", "CAST({} AS timestamptz)"),
                ("event", "{}"),
                ("resource_id", "{}"),
                ("resource", "CAST({} AS jsonb)"),
                ("related_resource_ids", "CAST({} AS jsonb)"),
                ("related", "CAST({} AS jsonb)"),
                ("payload", "CAST({} AS jsonb)"),
                ("received", "CAST({} AS timestamptz)"),
                ("recorded", "CAST({} AS timestamptz)"),
                ("follows", "NULL"),
            ],
            Server::Python => vec![
                ("id", "{}"),
                ("occurred", "{}"),
                ("event", "{}"),
                ("resource_id", "{}"),
                ("resource", "{}"),
                ("related_resource_ids", "{}"),
                ("related", "{}"),
                ("payload", "{}"),
                ("received", "{}"),
                ("recorded", "{}"),
                ("follows", "NULL"),
                ("created", "{}"),
                ("updated", "{}"),
            ],
        }
    }

    fn event_values(&self, r: &SeedRow) -> Vec<String> {
        let rid = label(&r.resource, "prefect.resource.id");
        let related_ids: Vec<Value> = r.related.iter().map(|x| json!(label(x, "prefect.resource.id"))).collect();
        let (occ, rec) = (self.ts(r.occurred), self.ts(r.received));
        let (res, rids, rel, pl) =
            (r.resource.to_string(), Value::Array(related_ids).to_string(), Value::Array(r.related.clone()).to_string(), r.payload.to_string());
        match (self.server, self.backend) {
            (Server::Rust, _) => vec![r.id.clone(), Uuid::nil().to_string(), occ, r.event.to_owned(), rid, res, rids, rel, pl, rec.clone(), rec],
            (Server::Python, Backend::Postgres) => vec![r.id.clone(), occ, r.event.to_owned(), rid, res, rids, rel, pl, rec.clone(), rec],
            (Server::Python, Backend::Sqlite) => {
                vec![r.id.clone(), occ, r.event.to_owned(), rid, res, rids, rel, pl, rec.clone(), rec.clone(), rec.clone(), rec]
            }
        }
    }

    fn resource_columns(&self) -> Vec<(&'static str, &'static str)> {
        match (self.server, self.backend) {
            (Server::Rust, _) => vec![("event_id", "{}"), ("occurred", "{}"), ("resource_id", "{}"), ("resource_role", "{}"), ("resource", "{}")],
            (Server::Python, Backend::Postgres) => vec![
                ("event_id", "CAST({} AS uuid)"),
                ("occurred", "CAST({} AS timestamptz)"),
                ("resource_id", "{}"),
                ("resource_role", "{}"),
                ("resource", "CAST({} AS json)"),
            ],
            (Server::Python, Backend::Sqlite) => vec![
                ("id", "{}"),
                ("event_id", "{}"),
                ("occurred", "{}"),
                ("resource_id", "{}"),
                ("resource_role", "{}"),
                ("resource", "{}"),
                ("created", "{}"),
                ("updated", "{}"),
            ],
        }
    }

    fn resource_values(&self, r: &SeedRow, rng: &mut Rng) -> Vec<Vec<String>> {
        let occ = self.ts(r.occurred);
        let mut out = Vec::with_capacity(1 + r.related.len());
        let mut push = |rid: String, role: String, labels: String| match (self.server, self.backend) {
            (Server::Python, Backend::Sqlite) => {
                let rec = self.ts(r.received);
                out.push(vec![rng.uuid(), r.id.clone(), occ.clone(), rid, role, labels, rec.clone(), rec])
            }
            _ => out.push(vec![r.id.clone(), occ.clone(), rid, role, labels]),
        };
        push(label(&r.resource, "prefect.resource.id"), String::new(), without_id_and_role(&r.resource));
        for x in &r.related {
            push(label(x, "prefect.resource.id"), label(x, "prefect.resource.role"), without_id_and_role(x));
        }
        out
    }
}

fn check_database_url(url: &str) -> Result<Backend> {
    if let Some(rest) = url.strip_prefix("postgresql://").or_else(|| url.strip_prefix("postgres://")) {
        let authority = rest.split('/').next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        match host {
            "127.0.0.1" | "localhost" | "[::1]" => Ok(Backend::Postgres),
            _ => bail!("refusing non-loopback database {url}"),
        }
    } else if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else {
        bail!("--database-url must be postgresql://127.0.0.1/... or sqlite://<path>")
    }
}

pub async fn seed_events_sql(server: Server, database_url: &str, events: usize, days: u32, seed: u64, batch: usize, max_seconds: u64, label_: &str) -> Result<()> {
    let backend = check_database_url(database_url)?;
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new().max_connections(1).connect(database_url).await.with_context(|| format!("connect {database_url}"))?;
    if backend == Backend::Sqlite {
        pool.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -1000000;").await?;
    }
    let layout = Layout { server, backend };
    let now = Utc::now();
    let mut generator = Generator::new(seed, now, days, events);
    let mut uuids = Rng(seed ^ 0x5EED);
    let (ecols, rcols) = (layout.event_columns(), layout.resource_columns());
    // Stay under SQLite's and Postgres's bound-parameter limits (32,766 and 65,535).
    let per_event = ecols.iter().filter(|(_, e)| e.contains("{}")).count();
    let per_resource = rcols.iter().filter(|(_, e)| e.contains("{}")).count();
    let max_params = if backend == Backend::Sqlite { 32_000 } else { 65_000 };
    let batch = batch.clamp(1, max_params / (per_resource * 3).max(per_event));
    let start = Instant::now();
    let deadline = start + std::time::Duration::from_secs(max_seconds);
    println!("seed-events-sql: {events} {server:?}-layout events over the last {days} days into {database_url} ({batch} a statement)");
    let (mut done, mut resources) = (0usize, 0usize);
    while done < events {
        if Instant::now() > deadline {
            bail!("deadline reached after {done} of {events} events");
        }
        let n = batch.min(events - done);
        let rows: Vec<SeedRow> = (done..done + n).map(|i| generator.row(i)).collect();
        let erows: Vec<Vec<String>> = rows.iter().map(|r| layout.event_values(r)).collect();
        let rrows: Vec<Vec<String>> = rows.iter().flat_map(|r| layout.resource_values(r, &mut uuids)).collect();
        let mut tx = pool.begin().await?;
        insert_tx(&mut tx, backend, "events", &ecols, &erows).await?;
        for chunk in rrows.chunks(max_params / per_resource) {
            insert_tx(&mut tx, backend, "event_resources", &rcols, chunk).await?;
        }
        tx.commit().await?;
        done += n;
        resources += rrows.len();
        if done % (batch * 50) < n || done == events {
            println!("  {done} events, {resources} resource rows, {:.1} s", start.elapsed().as_secs_f64());
        }
    }
    let load_secs = start.elapsed().as_secs_f64();
    let t = Instant::now();
    match backend {
        Backend::Postgres => {
            // One statement each: VACUUM cannot run in the implicit transaction of a multi-statement string.
            pool.execute("VACUUM ANALYZE events").await?;
            pool.execute("VACUUM ANALYZE event_resources").await?;
        }
        Backend::Sqlite => {
            pool.execute("ANALYZE").await?;
            pool.execute("PRAGMA wal_checkpoint(TRUNCATE)").await?;
        }
    }
    let analyze_secs = t.elapsed().as_secs_f64();
    let last_hour = rows_since(&layout, &pool, now - Duration::hours(1)).await.unwrap_or(-1);
    println!("  loaded in {load_secs:.1} s ({:.0} events/s), analysed in {analyze_secs:.1} s; {last_hour} events in the last hour", events as f64 / load_secs);
    emit(json!({
        "scenario": "seed-events-sql", "label": label_, "server": format!("{server:?}").to_lowercase(), "events": events,
        "resource_rows": resources, "days": days, "load_seconds": num(load_secs), "analyze_seconds": num(analyze_secs),
        "events_last_hour": last_hour, "complete": true
    }));
    pool.close().await;
    Ok(())
}

/// A multi-row INSERT of `rows` (each the bound values of the `{}` columns, in order).
async fn insert_tx(tx: &mut sqlx::Transaction<'_, sqlx::Any>, backend: Backend, table: &str, cols: &[(&str, &str)], rows: &[Vec<String>]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = cols.iter().map(|(n, _)| *n).collect();
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", names.join(", "));
    let mut n = 0usize;
    for k in 0..rows.len() {
        if k > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for (j, (_, expr)) in cols.iter().enumerate() {
            if j > 0 {
                sql.push_str(", ");
            }
            if expr.contains("{}") {
                n += 1;
                let ph = if backend == Backend::Postgres { format!("${n}") } else { "?".to_owned() };
                sql.push_str(&expr.replace("{}", &ph));
            } else {
                sql.push_str(expr);
            }
        }
        sql.push(')');
    }
    let mut q = sqlx::query(&sql);
    for row in rows {
        for v in row {
            q = q.bind(v.as_str());
        }
    }
    q.execute(&mut **tx).await.with_context(|| format!("insert into {table}"))?;
    Ok(())
}

/// How many seeded events fall in `[since, now]` (a sanity figure for the report).
async fn rows_since(layout: &Layout, pool: &AnyPool, since: DateTime<Utc>) -> Result<i64> {
    let sql = match layout.backend {
        Backend::Postgres if layout.server == Server::Python => "SELECT COUNT(*) FROM events WHERE occurred >= CAST($1 AS timestamptz)",
        Backend::Postgres => "SELECT COUNT(*) FROM events WHERE occurred >= $1",
        Backend::Sqlite => "SELECT COUNT(*) FROM events WHERE occurred >= ?",
    };
    let row: (i64,) = sqlx::query_as(sql).bind(layout.ts(since)).fetch_one(pool).await?;
    Ok(row.0)
}
