//! Global (v2) concurrency limit commands (Prefect's
//! `concurrency_limits_v2` router): limits are documents on their own
//! streams, and so are leases, so every slot taken, released or renewed is
//! in the log. The decisions are `orchestration::concurrency_limits`; this
//! module loads what they need under the limits' stream locks and appends
//! what they decide.
//!
//! A limit's stored `active_slots` only counts slots taken without a lease;
//! what a limit reports and enforces adds its live leases and, for a
//! deployment's `deployment:{id}` limit, the deployment's runs holding a
//! slot. An expired lease therefore frees its slots at once; the
//! repossessor only deletes its row.

use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sqlx::{AnyConnection, Row};

pub use crate::server_model::concurrency_limits::LimitRef;
use uuid::Uuid;

use super::documents::{self as doc, find};
use super::{present, write, ws};
use crate::api::error::{ApiResult, AppError};
use crate::db::{Bind, Db, Dialect};
use crate::eventlog::{lock_key, lock_stream, StreamRef, StreamType};
use crate::orchestration::concurrency_limits::{
    clamped_poisson_interval, decide_acquire, decide_release, Acquisition, Counters, LimitState, Mode, WaitSettings,
};
use crate::server_model::concurrency_limits::{deployment_limit_name, limit_row, limit_state, limits_named, minimal, row_id};
use crate::server_model::documents::CONCURRENCY_LEASE;


fn not_found() -> AppError {
    AppError::Detail(StatusCode::NOT_FOUND, "Concurrency Limit not found".into())
}

pub(crate) fn now() -> DateTime<Utc> {
    crate::time::micros(Utc::now())
}

// ------------------------------------------------------------- bodies ---

/// `ConcurrencyLimitV2Create`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitCreate {
    #[serde(default = "yes")]
    pub active: bool,
    pub name: String,
    pub limit: i64,
    #[serde(default)]
    pub active_slots: i64,
    #[serde(default)]
    pub denied_slots: i64,
    #[serde(default)]
    pub slot_decay_per_second: f64,
}

fn yes() -> bool {
    true
}

/// `ConcurrencyLimitV2Update`: only the fields sent change; `Some(None)` is
/// an explicit `null`, which the table's NOT NULL columns refuse.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitUpdate {
    #[serde(default, deserialize_with = "present")]
    pub active: Option<Option<bool>>,
    #[serde(default, deserialize_with = "present")]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub limit: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    pub active_slots: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    pub denied_slots: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    pub slot_decay_per_second: Option<Option<f64>>,
}


/// Pydantic's `NonNegativeInteger` / `NonNegativeFloat` error.
fn non_negative(errors: &mut Vec<Value>, key: &str, v: Option<f64>, input: Value) {
    if v.is_some_and(|v| v < 0.0) {
        errors.push(json!({"type": "greater_than_equal", "loc": ["body", key], "msg": "Input should be greater than or equal to 0", "input": input, "ctx": {"ge": 0}}));
    }
}

fn check(errors: Vec<Value>) -> ApiResult<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::Validation { detail: errors, body: Value::Null })
    }
}

impl LimitCreate {
    fn validate(&self) -> ApiResult<()> {
        super::names::validate_name(&["body", "name"], &self.name)?;
        let mut errors = Vec::new();
        non_negative(&mut errors, "limit", Some(self.limit as f64), json!(self.limit));
        non_negative(&mut errors, "active_slots", Some(self.active_slots as f64), json!(self.active_slots));
        non_negative(&mut errors, "denied_slots", Some(self.denied_slots as f64), json!(self.denied_slots));
        non_negative(&mut errors, "slot_decay_per_second", Some(self.slot_decay_per_second), json!(self.slot_decay_per_second));
        check(errors)
    }
}

impl LimitUpdate {
    fn validate(&self) -> ApiResult<()> {
        if let Some(Some(name)) = &self.name {
            super::names::validate_name(&["body", "name"], name)?;
        }
        let mut errors = Vec::new();
        for (key, v) in [("limit", self.limit), ("active_slots", self.active_slots), ("denied_slots", self.denied_slots)] {
            let v = v.flatten();
            non_negative(&mut errors, key, v.map(|v| v as f64), json!(v));
        }
        let decay = self.slot_decay_per_second.flatten();
        non_negative(&mut errors, "slot_decay_per_second", decay, json!(decay));
        check(errors)
    }
}

/// Prefect's `prefect.concurrency-limit.<action>` lifecycle event.
pub(crate) fn limit_event(action: &str, id: Uuid, row: &Map<String, Value>, occurred: DateTime<Utc>) -> Value {
    let name = row.get("name").cloned().unwrap_or(Value::Null);
    json!({
        "id": Uuid::now_v7(),
        "occurred": crate::time::fmt_ts(occurred),
        "event": format!("prefect.concurrency-limit.{action}"),
        "resource": {"prefect.resource.id": format!("prefect.concurrency-limit.{id}"), "prefect.resource.name": name},
        "related": [],
        "payload": {
            "name": name,
            "limit": row.get("limit"),
            "active": row.get("active"),
            "slot_decay_per_second": row.get("slot_decay_per_second").and_then(Value::as_f64).unwrap_or(0.0),
        },
    })
}

// ----------------------------------------------------------- CRUD ---

pub(crate) async fn lock_name(conn: &mut AnyConnection, dialect: Dialect, name: &str) -> ApiResult<()> {
    lock_key(conn, dialect, &format!("concurrency-limit-name:{name}")).await?;
    Ok(())
}

/// Creates a limit (a taken name is Prefect's integrity 409); returns its row.
pub async fn create(db: &Db, body: LimitCreate) -> ApiResult<Map<String, Value>> {
    body.validate()?;
    let dialect = db.dialect;
    write(db, move |conn| {
        let body = body.clone();
        Box::pin(async move {
            lock_name(conn, dialect, &body.name).await?;
            if limit_row(conn, dialect, &LimitRef::Name(body.name.clone())).await?.is_some() {
                return Err(AppError::Conflict);
            }
            let id = insert_limit(conn, dialect, &body, now(), true).await?;
            limit_row(conn, dialect, &LimitRef::Id(id)).await?.ok_or_else(not_found)
        })
    })
    .await
}

/// Appends a new limit (the caller holds its name lock and checked the
/// name is free), with Prefect's `created` feed event when `announce`.
pub(crate) async fn insert_limit(conn: &mut AnyConnection, dialect: Dialect, body: &LimitCreate, at: DateTime<Utc>, announce: bool) -> ApiResult<Uuid> {
    let id = Uuid::now_v7();
    let record = Map::from_iter([
        ("name".into(), json!(body.name)),
        ("limit".into(), json!(body.limit)),
        ("active".into(), json!(body.active)),
        ("active_slots".into(), json!(body.active_slots)),
        ("denied_slots".into(), json!(body.denied_slots)),
        ("slot_decay_per_second".into(), json!(body.slot_decay_per_second)),
        ("avg_slot_occupancy_seconds".into(), json!(2.0)),
    ]);
    let event = announce.then(|| limit_event("created", id, &record, at));
    doc::create(conn, dialect, StreamType::ConcurrencyLimit, id, record, at, event).await?;
    Ok(id)
}

impl LimitCreate {
    /// A plain limit of `limit` slots.
    pub fn named(name: String, limit: i64) -> LimitCreate {
        LimitCreate { active: true, name, limit, active_slots: 0, denied_slots: 0, slot_decay_per_second: 0.0 }
    }
}

/// Applies an update (404 when there is no such limit). Setting
/// `active_slots` resets what the limit holds: its live leases are revoked
/// too, so the limit then reports exactly the value sent.
pub async fn update(db: &Db, which: LimitRef, body: LimitUpdate) -> ApiResult<()> {
    body.validate()?;
    let dialect = db.dialect;
    write(db, move |conn| {
        let body = body.clone();
        let which = which.clone();
        Box::pin(async move {
            let current = limit_row(conn, dialect, &which).await?.ok_or_else(not_found)?;
            let id = row_id(&current);
            lock_stream(conn, dialect, &StreamRef::new(StreamType::ConcurrencyLimit, id)).await?;
            let mut changes = Map::new();
            if let Some(name) = &body.name {
                let name = name.as_ref().ok_or(AppError::Conflict)?;
                if current.get("name").and_then(Value::as_str) != Some(name.as_str()) {
                    lock_name(conn, dialect, name).await?;
                    if limit_row(conn, dialect, &LimitRef::Name(name.clone())).await?.is_some() {
                        return Err(AppError::Conflict);
                    }
                }
                changes.insert("name".into(), json!(name));
            }
            for (key, v) in [("limit", body.limit), ("active_slots", body.active_slots), ("denied_slots", body.denied_slots)] {
                if let Some(v) = v {
                    changes.insert(key.into(), json!(v.ok_or(AppError::Conflict)?));
                }
            }
            if let Some(v) = body.active {
                changes.insert("active".into(), json!(v.ok_or(AppError::Conflict)?));
            }
            if let Some(v) = body.slot_decay_per_second {
                changes.insert("slot_decay_per_second".into(), json!(v.ok_or(AppError::Conflict)?));
            }
            let at = now();
            if changes.contains_key("active_slots") {
                revoke_leases_of(conn, dialect, id, at).await?;
            }
            let event = limit_event("updated", id, &crate::server_model::feed_events::merged(&current, &changes), at);
            doc::update(conn, dialect, StreamType::ConcurrencyLimit, id, changes, at, Some(event)).await
        })
    })
    .await
}

/// Deletes a limit (404 when there is none).
pub async fn delete(db: &Db, which: LimitRef) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let which = which.clone();
        Box::pin(async move {
            let current = limit_row(conn, dialect, &which).await?.ok_or_else(not_found)?;
            let id = row_id(&current);
            lock_stream(conn, dialect, &StreamRef::new(StreamType::ConcurrencyLimit, id)).await?;
            let at = now();
            let event = limit_event("deleted", id, &current, at);
            doc::delete(conn, dialect, StreamType::ConcurrencyLimit, id, at, Some(event)).await
        })
    })
    .await
}

/// Keeps a deployment's own limit in step with its `concurrency_limit`
/// (Prefect's `_create_or_update_deployment_concurrency_limit`): created,
/// changed or deleted with no feed event, as Prefect's ORM does it.
pub async fn sync_deployment_limit(conn: &mut AnyConnection, dialect: Dialect, deployment_id: Uuid, limit: Option<i64>, at: DateTime<Utc>) -> ApiResult<()> {
    let name = deployment_limit_name(deployment_id);
    lock_name(conn, dialect, &name).await?;
    let current = limit_row(conn, dialect, &LimitRef::Name(name.clone())).await?;
    match (current, limit) {
        (None, None) => Ok(()),
        (Some(row), None) => doc::delete(conn, dialect, StreamType::ConcurrencyLimit, row_id(&row), at, None).await,
        (Some(row), Some(limit)) if row.get("limit").and_then(Value::as_i64) == Some(limit) => Ok(()),
        (Some(row), Some(limit)) => {
            let id = row_id(&row);
            lock_stream(conn, dialect, &StreamRef::new(StreamType::ConcurrencyLimit, id)).await?;
            doc::update(conn, dialect, StreamType::ConcurrencyLimit, id, Map::from_iter([("limit".into(), json!(limit))]), at, None).await
        }
        (None, Some(limit)) => insert_limit(conn, dialect, &LimitCreate::named(name, limit), at, false).await.map(|_| ()),
    }
}

// ------------------------------------------------------------ slots ---

/// An increment request (`/increment` or `/increment-with-lease`).
#[derive(Debug, Clone)]
pub struct Increment {
    pub names: Vec<String>,
    pub slots: i64,
    pub mode: Mode,
    /// With a lease: its duration in seconds and holder.
    pub lease: Option<(f64, Value)>,
}

/// What an increment did.
#[derive(Debug, Clone)]
pub enum Incremented {
    /// The limits found (`MinimalConcurrencyLimitResponse`s) and the lease
    /// holding the slots, when one was asked for and limits exist.
    Granted { limits: Vec<Value>, lease_id: Option<Uuid> },
    /// 423 with this `Retry-After` (seconds).
    Locked { retry_after: f64 },
}

async fn write_counters(conn: &mut AnyConnection, dialect: Dialect, before: &LimitState, after: &Counters, at: DateTime<Utc>) -> ApiResult<()> {
    let unchanged = before.active_slots == after.active_slots
        && before.denied_slots == after.denied_slots
        && before.avg_slot_occupancy_seconds == after.avg_slot_occupancy_seconds;
    if unchanged {
        return Ok(());
    }
    let changes = Map::from_iter([
        ("active_slots".into(), json!(after.active_slots)),
        ("denied_slots".into(), json!(after.denied_slots)),
        ("avg_slot_occupancy_seconds".into(), json!(after.avg_slot_occupancy_seconds)),
    ]);
    doc::update(conn, dialect, StreamType::ConcurrencyLimit, before.id, changes, at, None).await
}

/// Locks the named limits (in id order) and reads them as decisions see them.
async fn lock_limits(conn: &mut AnyConnection, dialect: Dialect, names: &[String], at: DateTime<Utc>) -> ApiResult<Vec<(Map<String, Value>, LimitState)>> {
    for row in limits_named(conn, dialect, names).await? {
        lock_stream(conn, dialect, &StreamRef::new(StreamType::ConcurrencyLimit, row_id(&row))).await?;
    }
    // Read again under the locks: the counters may have moved meanwhile.
    let mut out = Vec::new();
    for row in limits_named(conn, dialect, names).await? {
        let state = limit_state(conn, dialect, &row, at, None).await?;
        out.push((row, state));
    }
    Ok(out)
}

pub async fn increment(db: &Db, req: Increment, waits: WaitSettings) -> ApiResult<Incremented> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let req = req.clone();
        Box::pin(async move {
            let at = now();
            let limits = lock_limits(conn, dialect, &req.names, at).await?;
            let states: Vec<LimitState> = limits.iter().map(|(_, s)| s.clone()).collect();
            let decision = decide_acquire(&states, req.slots, req.mode, req.lease.is_some(), at, waits)
                .map_err(|e| AppError::Detail(StatusCode::UNPROCESSABLE_ENTITY, e.message()))?;
            let (updates, locked) = match decision {
                Acquisition::Granted { updates } => (updates, None),
                Acquisition::Locked { updates, average_interval } => (updates, Some(average_interval)),
            };
            for (id, counters) in &updates {
                if let Some(before) = states.iter().find(|s| s.id == *id) {
                    write_counters(conn, dialect, before, counters, at).await?;
                }
            }
            if let Some(average) = locked {
                let u = (Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64;
                return Ok(Incremented::Locked { retry_after: clamped_poisson_interval(average, u) });
            }
            let minimal: Vec<Value> = limits.iter().map(|(row, _)| minimal(row)).collect();
            let lease_id = match req.lease {
                Some((duration, holder)) if !limits.is_empty() => {
                    let held: Vec<String> = states.iter().filter(|s| s.active).map(|s| s.id.to_string()).collect();
                    Some(create_lease(conn, dialect, held, req.slots, holder, duration, at).await?)
                }
                _ => None,
            };
            Ok(Incremented::Granted { limits: minimal, lease_id })
        })
    })
    .await
}

/// `/decrement`: releases `slots` of each named active limit; answers the
/// limits found (`[]` when none).
pub async fn decrement(db: &Db, names: Vec<String>, slots: i64, occupancy_seconds: Option<f64>, waits: WaitSettings) -> ApiResult<Vec<Value>> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let names = names.clone();
        Box::pin(async move {
            let at = now();
            let limits = lock_limits(conn, dialect, &names, at).await?;
            for (_, state) in limits.iter().filter(|(_, s)| s.active) {
                let after = decide_release(state, slots, occupancy_seconds, false, at, waits);
                write_counters(conn, dialect, state, &after, at).await?;
            }
            Ok(limits.iter().map(|(row, _)| minimal(row)).collect())
        })
    })
    .await
}

// ------------------------------------------------------------ leases ---

pub(crate) async fn create_lease(conn: &mut AnyConnection, dialect: Dialect, resource_ids: Vec<String>, slots: i64, holder: Value, seconds: f64, at: DateTime<Utc>) -> ApiResult<Uuid> {
    let id = Uuid::now_v7();
    let record = Map::from_iter([
        ("resource_ids".into(), json!(resource_ids)),
        ("slots".into(), json!(slots)),
        ("holder".into(), holder),
        ("expiration".into(), json!(crate::time::fmt_ts(at + seconds_of(seconds)))),
    ]);
    doc::create(conn, dialect, StreamType::ConcurrencyLease, id, record, at, None).await?;
    Ok(id)
}

fn seconds_of(seconds: f64) -> Duration {
    Duration::microseconds((seconds * 1e6) as i64)
}

async fn lease_row(conn: &mut AnyConnection, dialect: Dialect, id: Uuid) -> ApiResult<Option<Map<String, Value>>> {
    find(conn, dialect, &CONCURRENCY_LEASE, "t.workspace_id = $1 AND t.id = $2", &[Bind::Text(ws()), Bind::Text(id.to_string())]).await
}

fn lease_limits(lease: &Map<String, Value>) -> Vec<Uuid> {
    lease.get("resource_ids").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).filter_map(|s| Uuid::parse_str(s).ok()).collect()
}

/// Ends a lease: its row goes and each limit it held records the
/// occupancy (Prefect's `decrement-with-lease` and the repossessor).
pub(crate) async fn end_lease(conn: &mut AnyConnection, dialect: Dialect, lease: &Map<String, Value>, at: DateTime<Utc>, waits: WaitSettings) -> ApiResult<()> {
    let id = row_id(lease);
    let slots = lease.get("slots").and_then(Value::as_i64).unwrap_or(0);
    let created = lease.get("created").and_then(Value::as_str).and_then(crate::time::parse_ts).unwrap_or(at);
    let occupancy = (at - created).num_microseconds().unwrap_or(0) as f64 / 1e6;
    let mut limit_ids = lease_limits(lease);
    limit_ids.sort();
    for limit_id in limit_ids {
        lock_stream(conn, dialect, &StreamRef::new(StreamType::ConcurrencyLimit, limit_id)).await?;
        let Some(row) = limit_row(conn, dialect, &LimitRef::Id(limit_id)).await? else { continue };
        let state = limit_state(conn, dialect, &row, at, None).await?;
        if state.active {
            let after = decide_release(&state, slots, Some(occupancy), true, at, waits);
            write_counters(conn, dialect, &state, &after, at).await?;
        }
    }
    doc::delete(conn, dialect, StreamType::ConcurrencyLease, id, at, None).await
}

/// Ends the leases `holder_id` (a task run) holds on any of `limit_ids`.
pub(crate) async fn end_holder_leases(conn: &mut AnyConnection, dialect: Dialect, limit_ids: &[Uuid], holder_id: Uuid, at: DateTime<Utc>, waits: WaitSettings) -> ApiResult<()> {
    let sql = dialect.rewrite("SELECT id FROM concurrency_lease WHERE workspace_id = $1 AND resource_ids LIKE $2 AND holder LIKE $3 ORDER BY id");
    let mut leases: Vec<Uuid> = Vec::new();
    for limit_id in limit_ids {
        let found = sqlx::query(&sql).bind(ws()).bind(format!("%{limit_id}%")).bind(format!("%{holder_id}%")).fetch_all(&mut *conn).await?;
        leases.extend(found.iter().filter_map(|r| r.try_get::<String, _>(0).ok()).filter_map(|s| Uuid::parse_str(&s).ok()));
    }
    leases.sort();
    leases.dedup();
    for lease_id in leases {
        lock_stream(conn, dialect, &StreamRef::new(StreamType::ConcurrencyLease, lease_id)).await?;
        if let Some(lease) = lease_row(conn, dialect, lease_id).await? {
            end_lease(conn, dialect, &lease, at, waits).await?;
        }
    }
    Ok(())
}

/// `/decrement-with-lease`: an unknown lease is already released.
pub async fn release_lease(db: &Db, lease_id: Uuid, waits: WaitSettings) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        Box::pin(async move {
            lock_stream(conn, dialect, &StreamRef::new(StreamType::ConcurrencyLease, lease_id)).await?;
            match lease_row(conn, dialect, lease_id).await? {
                Some(lease) => end_lease(conn, dialect, &lease, now(), waits).await,
                None => Ok(()),
            }
        })
    })
    .await
}

/// Renews a live lease for `seconds` from now; `false` when it is gone or
/// already expired (Prefect's 410).
pub async fn renew_lease(db: &Db, lease_id: Uuid, seconds: f64) -> ApiResult<bool> {
    let dialect = db.dialect;
    write(db, move |conn| {
        Box::pin(async move {
            lock_stream(conn, dialect, &StreamRef::new(StreamType::ConcurrencyLease, lease_id)).await?;
            let at = now();
            let Some(lease) = lease_row(conn, dialect, lease_id).await? else { return Ok(false) };
            let expiration = lease.get("expiration").and_then(Value::as_str).and_then(crate::time::parse_ts);
            if expiration.is_none_or(|e| e <= at) {
                return Ok(false);
            }
            let changes = Map::from_iter([("expiration".into(), json!(crate::time::fmt_ts(at + seconds_of(seconds))))]);
            doc::update(conn, dialect, StreamType::ConcurrencyLease, lease_id, changes, at, None).await?;
            Ok(true)
        })
    })
    .await
}

/// Revokes every live lease on a limit (a reset of its `active_slots`).
pub(crate) async fn revoke_leases_of(conn: &mut AnyConnection, dialect: Dialect, limit_id: Uuid, at: DateTime<Utc>) -> ApiResult<()> {
    let sql = dialect.rewrite("SELECT id FROM concurrency_lease WHERE workspace_id = $1 AND resource_ids LIKE $2 ORDER BY id");
    let rows = sqlx::query(&sql).bind(ws()).bind(format!("%{limit_id}%")).fetch_all(&mut *conn).await?;
    for row in rows {
        let Ok(id) = Uuid::parse_str(&row.try_get::<String, _>(0)?) else { continue };
        lock_stream(conn, dialect, &StreamRef::new(StreamType::ConcurrencyLease, id)).await?;
        doc::delete(conn, dialect, StreamType::ConcurrencyLease, id, at, None).await?;
    }
    Ok(())
}

/// The repossessor's pass: ends up to `max` leases expired at `at`, each in
/// its own transaction (re-checked under its lock, so a lease renewed
/// meanwhile stays). Returns how many ended.
pub async fn revoke_expired(db: &Db, max: i64, waits: WaitSettings) -> ApiResult<usize> {
    let sql = db.q("SELECT id FROM concurrency_lease WHERE workspace_id = $1 AND expiration <= $2 ORDER BY expiration LIMIT $3");
    let rows = sqlx::query(&sql).bind(ws()).bind(crate::time::fmt_ts(now())).bind(max).fetch_all(db.reader()).await?;
    let ids: Vec<Uuid> = rows.iter().filter_map(|r| r.try_get::<String, _>(0).ok()).filter_map(|s| Uuid::parse_str(&s).ok()).collect();
    let dialect = db.dialect;
    let mut ended = 0;
    for lease_id in ids {
        let done = write(db, move |conn| {
            Box::pin(async move {
                lock_stream(conn, dialect, &StreamRef::new(StreamType::ConcurrencyLease, lease_id)).await?;
                let at = now();
                let Some(lease) = lease_row(conn, dialect, lease_id).await? else { return Ok(false) };
                let expired = lease.get("expiration").and_then(Value::as_str).and_then(crate::time::parse_ts).is_some_and(|e| e <= at);
                if expired {
                    end_lease(conn, dialect, &lease, at, waits).await?;
                }
                Ok(expired)
            })
        })
        .await?;
        ended += usize::from(done);
    }
    Ok(ended)
}
