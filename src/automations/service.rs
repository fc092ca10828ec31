//! The triggers service (Prefect's `ReactiveTriggers`, `ProactiveTriggers`
//! and `Actions` in one loop): follows the event log from its checkpoint,
//! evaluates every enabled automation's triggers against each Prefect
//! event, checks proactive triggers every few seconds, and takes the
//! actions of what fires.
//!
//! Its buckets live in memory and in `automation_trigger_state`, saved with
//! the checkpoint in one transaction after the batch's actions, so a crash
//! repeats the batch from the state it started with. A repeated firing has
//! the same id (it derives from its cause), so what it appends is
//! deduplicated by the log and a run it starts by its idempotency key.
//!
//! A fresh install starts at the tail of the log: automations react to what
//! happens after the service first runs, not to history.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::actions::TriggeredAction;
use super::schema::{AutomationSpec, CompositeTrigger, EventTrigger, Posture, Trigger};
use super::triggers::{on_event, on_tick, Buckets, Firing};
use crate::commands::client_events::ClientEvent;
use crate::db::Db;
use crate::eventlog::{read_after, tail_cursor, Cursor};
use crate::events_model::projector::{load_checkpoint, prefect_event, save_checkpoint};

pub const CHECKPOINT: &str = "automations:triggers";
const BATCH: i64 = 500;
const POLL: Duration = Duration::from_millis(250);
/// How often an idle service (no enabled automation) looks again.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How often proactive triggers are checked (Prefect: every 5 s).
const PROACTIVE_EVERY: chrono::Duration = chrono::Duration::seconds(5);

/// An enabled automation as the service holds it.
struct Loaded {
    id: Uuid,
    spec: AutomationSpec,
}

/// Where a trigger sits: its automation, and its parent when it is a child
/// of a composite trigger.
struct Placement {
    automation: usize,
    parent: Option<Uuid>,
}

/// State to write at the next save.
#[derive(Default)]
struct Dirty {
    buckets: HashSet<(Uuid, Vec<String>)>,
    children: HashSet<Uuid>,
    gone: HashSet<Uuid>,
}

impl Dirty {
    fn is_empty(&self) -> bool {
        self.buckets.is_empty() && self.children.is_empty() && self.gone.is_empty()
    }
}

/// The keys whose bucket differs between two snapshots of a trigger's buckets.
fn changed_keys(before: &Buckets, after: &Buckets) -> Vec<Vec<String>> {
    let mut keys: Vec<Vec<String>> = after.iter().filter(|(k, b)| before.get(*k) != Some(*b)).map(|(k, _)| k.clone()).collect();
    keys.extend(before.keys().filter(|k| !after.contains_key(*k)).cloned());
    keys
}

/// What the service knows: the automations, and the state of each trigger.
#[derive(Default)]
pub struct Evaluator {
    automations: Vec<Loaded>,
    /// Every event trigger of the automations (children of composites
    /// included), gathered once per reload rather than per event.
    triggers: Vec<EventTrigger>,
    placements: HashMap<Uuid, Placement>,
    buckets: HashMap<Uuid, Buckets>,
    children: HashMap<Uuid, Vec<Firing>>,
    /// What changed since the last save: buckets by (trigger, key), and
    /// triggers whose child firings (or, when gone, all state) changed.
    dirty: Dirty,
    /// Events to append (the automations' and their actions' feed events).
    pub emitted: Vec<ClientEvent>,
}

fn event_triggers(trigger: &Trigger, out: &mut Vec<EventTrigger>) {
    match trigger {
        Trigger::Event(t) => out.push(t.clone()),
        Trigger::Composite(c) => c.triggers.iter().for_each(|t| event_triggers(t, out)),
    }
}

fn find_composite(trigger: &Trigger, id: Uuid) -> Option<&CompositeTrigger> {
    match trigger {
        Trigger::Composite(c) if c.id == id => Some(c),
        Trigger::Composite(c) => c.triggers.iter().find_map(|t| find_composite(t, id)),
        Trigger::Event(_) => None,
    }
}

fn place(trigger: &Trigger, automation: usize, parent: Option<Uuid>, out: &mut HashMap<Uuid, Placement>) {
    out.insert(trigger.id(), Placement { automation, parent });
    if let Trigger::Composite(c) = trigger {
        c.triggers.iter().for_each(|t| place(t, automation, Some(c.id), out));
    }
}

impl Evaluator {
    /// Replaces the automations; state of triggers that no longer exist is
    /// dropped (and deleted at the next save).
    fn set_automations(&mut self, automations: Vec<Loaded>) {
        let mut placements = HashMap::new();
        for (i, a) in automations.iter().enumerate() {
            place(&a.spec.trigger, i, None, &mut placements);
        }
        let gone: Vec<Uuid> = self.buckets.keys().chain(self.children.keys()).filter(|id| !placements.contains_key(id)).copied().collect();
        for id in gone {
            self.buckets.remove(&id);
            self.children.remove(&id);
            self.dirty.gone.insert(id);
        }
        let mut triggers = vec![];
        for a in &automations {
            event_triggers(&a.spec.trigger, &mut triggers);
        }
        self.triggers = triggers;
        self.automations = automations;
        self.placements = placements;
    }

    /// Evaluates one event against every trigger that covers it.
    pub fn on_event(&mut self, event: &Value, wall: DateTime<Utc>) -> Vec<Firing> {
        let mut fired = vec![];
        for t in self.triggers.iter().filter(|t| t.covers(event)) {
            // An event only touches the bucket of its own key.
            let key = t.bucketing_key(event);
            let buckets = self.buckets.entry(t.id).or_default();
            let before = buckets.get(&key).cloned();
            fired.extend(on_event(t, buckets, event, wall));
            if buckets.get(&key) != before.as_ref() {
                self.dirty.buckets.insert((t.id, key));
            }
        }
        fired
    }

    /// Checks every proactive trigger as of `now`.
    pub fn on_tick(&mut self, now: DateTime<Utc>) -> Vec<Firing> {
        let mut fired = vec![];
        for t in self.triggers.iter().filter(|t| t.posture == Posture::Proactive) {
            let buckets = self.buckets.entry(t.id).or_default();
            let before = buckets.clone();
            fired.extend(on_tick(t, buckets, now));
            for key in changed_keys(&before, buckets) {
                self.dirty.buckets.insert((t.id, key));
            }
        }
        fired
    }

    /// Follows a firing up through composite parents; returns the firings
    /// of whole automations (their top-level trigger fired).
    fn resolve(&mut self, firing: Firing, wall: DateTime<Utc>) -> Option<(usize, Firing)> {
        let placement = self.placements.get(&firing.trigger_id)?;
        let automation = placement.automation;
        let Some(parent_id) = placement.parent else { return Some((automation, firing)) };
        let parent = find_composite(&self.automations[automation].spec.trigger, parent_id)?.clone();
        let children = self.children.entry(parent_id).or_default();
        let parent_firing = parent.on_child_firing(children, firing, wall);
        self.dirty.children.insert(parent_id);
        self.resolve(parent_firing?, wall)
    }
}

/// Prefect's `prefect.automation.triggered` event for a firing.
fn triggered_event(automation_id: Uuid, spec: &AutomationSpec, firing: &Firing) -> ClientEvent {
    let mut resource = Map::new();
    resource.insert("prefect.resource.id".into(), json!(format!("prefect.automation.{automation_id}")));
    resource.insert("prefect.resource.name".into(), json!(spec.name));
    if let Trigger::Event(t) = &spec.trigger {
        resource.insert("prefect.posture".into(), serde_json::to_value(t.posture).unwrap_or(Value::Null));
    }
    let triggering_id = firing.triggering_event.as_ref().and_then(|e| e.get("id")).and_then(Value::as_str);
    let related = triggering_id
        .map(|id| vec![Map::from_iter([("prefect.resource.id".to_owned(), json!(format!("prefect.event.{id}"))), ("prefect.resource.role".to_owned(), json!("triggering-event"))])])
        .unwrap_or_default();
    ClientEvent {
        occurred: firing.triggered,
        event: "prefect.automation.triggered".into(),
        resource,
        related,
        payload: Map::from_iter([
            ("triggering_labels".to_owned(), Value::Object(firing.triggering_labels.clone())),
            ("triggering_event".to_owned(), firing.triggering_event.clone().unwrap_or(Value::Null)),
        ]),
        id: Uuid::new_v5(&firing.id, b"automation.triggered"),
        follows: None,
    }
}

/// Prefect's `act`: reports the firing, then takes the automation's
/// `actions` (for the triggering event) and `actions_on_trigger` (for the
/// `triggered` event itself).
async fn act(db: &Db, automation_id: Uuid, spec: &AutomationSpec, firing: &Firing) -> Vec<ClientEvent> {
    let triggered = triggered_event(automation_id, spec, firing);
    let triggered_json = triggered.received(Utc::now());
    let mut automation = spec.record();
    automation.insert("id".into(), json!(automation_id));
    let automation = Value::Object(automation);
    let mut out = vec![];
    let plans = spec
        .actions
        .iter()
        .map(|a| (a, firing.triggering_event.as_ref()))
        .chain(spec.actions_on_trigger.iter().map(|a| (a, Some(&triggered_json))));
    for (index, (action, triggering_event)) in plans.enumerate() {
        let step = TriggeredAction {
            automation_id,
            automation_name: &spec.name,
            automation: &automation,
            trigger: &spec.trigger,
            action,
            action_index: index,
            invocation: Uuid::new_v5(&firing.id, format!("action {index}").as_bytes()),
            triggered: firing.triggered,
            triggering_labels: &firing.triggering_labels,
            triggering_event,
            automation_triggered_event_id: Some(triggered.id),
        };
        out.extend(step.run(db).await);
    }
    let mut events = vec![triggered];
    events.extend(out);
    events
}

async fn load_automations(db: &Db) -> Result<Vec<Loaded>, sqlx::Error> {
    Ok(crate::commands::automations::all(db)
        .await?
        .iter()
        .filter_map(|doc| {
            let id = doc.get("id").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok())?;
            let spec = AutomationSpec::from_record(doc)?;
            spec.enabled.then_some(Loaded { id, spec })
        })
        .collect())
}

async fn load_state(db: &Db, evaluator: &mut Evaluator) -> Result<(), sqlx::Error> {
    let rows = sqlx::query("SELECT trigger_id, state_key, value FROM automation_trigger_state").fetch_all(db.reader()).await?;
    for row in rows {
        let (trigger, key, value): (String, String, String) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let Ok(trigger) = Uuid::parse_str(&trigger) else { continue };
        if key == "children" {
            if let Ok(firings) = serde_json::from_str(&value) {
                evaluator.children.insert(trigger, firings);
            }
        } else if let (Ok(key), Ok(bucket)) = (serde_json::from_str::<Vec<String>>(&key), serde_json::from_str(&value)) {
            evaluator.buckets.entry(trigger).or_default().insert(key, bucket);
        }
    }
    Ok(())
}

/// Writes the state of the triggers that changed, and the checkpoint.
async fn save(db: &Db, evaluator: &mut Evaluator, cursor: Cursor) -> Result<(), sqlx::Error> {
    let dialect = db.dialect;
    let mut tx = db.begin_write().await?;
    let conn: &mut AnyConnection = &mut tx;
    load_checkpoint(conn, dialect, CHECKPOINT).await?;
    let dirty = std::mem::take(&mut evaluator.dirty);
    let delete_all = dialect.rewrite("DELETE FROM automation_trigger_state WHERE trigger_id = $1");
    let delete_one = dialect.rewrite("DELETE FROM automation_trigger_state WHERE trigger_id = $1 AND state_key = $2");
    let insert = dialect.rewrite("INSERT INTO automation_trigger_state (trigger_id, state_key, automation_id, value) VALUES ($1, $2, $3, $4)");
    let automation_of = |trigger: &Uuid| evaluator.placements.get(trigger).map(|p| evaluator.automations[p.automation].id.to_string()).unwrap_or_default();
    for trigger in &dirty.gone {
        sqlx::query(&delete_all).bind(trigger.to_string()).execute(&mut *conn).await?;
    }
    for (trigger, key) in &dirty.buckets {
        let state_key = serde_json::to_string(key).unwrap_or_default();
        sqlx::query(&delete_one).bind(trigger.to_string()).bind(&state_key).execute(&mut *conn).await?;
        if let Some(bucket) = evaluator.buckets.get(trigger).and_then(|b| b.get(key)) {
            let value = serde_json::to_string(bucket).unwrap_or_default();
            sqlx::query(&insert).bind(trigger.to_string()).bind(&state_key).bind(automation_of(trigger)).bind(value).execute(&mut *conn).await?;
        }
    }
    for trigger in &dirty.children {
        sqlx::query(&delete_one).bind(trigger.to_string()).bind("children").execute(&mut *conn).await?;
        if let Some(children) = evaluator.children.get(trigger).filter(|c| !c.is_empty()) {
            let value = serde_json::to_string(children).unwrap_or_default();
            sqlx::query(&insert).bind(trigger.to_string()).bind("children").bind(automation_of(trigger)).bind(value).execute(&mut *conn).await?;
        }
    }
    save_checkpoint(conn, dialect, CHECKPOINT, cursor).await?;
    tx.commit().await
}

/// Where the service starts: its checkpoint, or on first run the tail of
/// the log (recorded at once, so a restart does not skip ahead again).
async fn starting_cursor(db: &Db) -> Result<Cursor, sqlx::Error> {
    let dialect = db.dialect;
    let exists: Option<String> = sqlx::query_scalar(&dialect.rewrite("SELECT name FROM es_checkpoints WHERE name = $1")).bind(CHECKPOINT).fetch_optional(db.reader()).await?;
    let mut tx = db.begin_write().await?;
    let cursor = if exists.is_some() {
        load_checkpoint(&mut tx, dialect, CHECKPOINT).await?
    } else {
        let mut reader = db.reader().acquire().await?;
        let tail = tail_cursor(&mut reader, dialect).await?;
        load_checkpoint(&mut tx, dialect, CHECKPOINT).await?;
        save_checkpoint(&mut tx, dialect, CHECKPOINT, tail).await?;
        tail
    };
    tx.commit().await?;
    Ok(cursor)
}

/// Takes the actions of the firings and queues their events.
async fn take_actions(db: &Db, evaluator: &mut Evaluator, fired: Vec<Firing>, wall: DateTime<Utc>) {
    for firing in fired {
        let Some((index, firing)) = evaluator.resolve(firing, wall) else { continue };
        let automation = &evaluator.automations[index];
        tracing::info!(automation = %automation.id, name = %automation.spec.name, trigger = %firing.trigger_id, "automation triggered");
        let events = act(db, automation.id, &automation.spec, &firing).await;
        evaluator.emitted.extend(events);
    }
}

/// What a pass did.
struct Passed {
    cursor: Cursor,
    /// Log entries read (0 when caught up).
    read: usize,
    /// No automation is enabled: the service only keeps up with the tail.
    idle: bool,
}

/// How stale the saved checkpoint may get when a pass changed nothing else
/// (a restart re-reads at most this much of the log, harmlessly).
const SAVE_AT_LEAST_EVERY: chrono::Duration = chrono::Duration::seconds(5);

/// One pass: the next batch of the log, then proactive triggers when due.
async fn pass(db: &Db, evaluator: &mut Evaluator, cursor: Cursor, clock: &mut Clock) -> anyhow::Result<Passed> {
    evaluator.set_automations(load_automations(db).await?);
    let wall = Utc::now();
    if evaluator.automations.is_empty() {
        // Nothing to evaluate: follow the tail without reading the log (an
        // automation created later reacts to what happens after it).
        let tail = {
            let mut conn = db.reader().acquire().await?;
            tail_cursor(&mut conn, db.dialect).await?
        };
        let next = tail.max(cursor);
        if !evaluator.dirty.is_empty() || (next != cursor && wall - clock.saved >= SAVE_AT_LEAST_EVERY) {
            save(db, evaluator, next).await?;
            clock.saved = wall;
        }
        return Ok(Passed { cursor: next, read: 0, idle: true });
    }
    let batch = {
        let mut conn = db.reader().acquire().await?;
        read_after(&mut conn, db.dialect, cursor, BATCH).await?
    };
    let next = batch.last().map(|e| Cursor { tx_id: e.tx_id, position: e.position }).unwrap_or(cursor);
    let mut fired = vec![];
    for entry in &batch {
        if let Some(event) = prefect_event(entry) {
            fired.extend(evaluator.on_event(&event, wall));
        }
    }
    if wall - clock.ticked >= PROACTIVE_EVERY {
        clock.ticked = wall;
        fired.extend(evaluator.on_tick(wall));
    }
    take_actions(db, evaluator, fired, wall).await;
    let acted = !evaluator.emitted.is_empty();
    if acted {
        crate::commands::client_events::ingest(db, &evaluator.emitted).await.map_err(|e| anyhow::anyhow!(e.reason()))?;
        evaluator.emitted.clear();
    }
    if acted || !evaluator.dirty.is_empty() || (next != cursor && wall - clock.saved >= SAVE_AT_LEAST_EVERY) {
        save(db, evaluator, next).await?;
        clock.saved = wall;
    }
    Ok(Passed { cursor: next, read: batch.len(), idle: false })
}

/// When the service last checked proactive triggers and saved its state.
struct Clock {
    ticked: DateTime<Utc>,
    saved: DateTime<Utc>,
}

/// Runs the triggers service until the task is dropped.
pub async fn run(db: Db) {
    let mut evaluator = Evaluator::default();
    let mut cursor = loop {
        let started = async {
            load_state(&db, &mut evaluator).await?;
            starting_cursor(&db).await
        };
        match started.await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, "triggers service cannot start yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let mut clock = Clock { ticked: DateTime::<Utc>::MIN_UTC, saved: Utc::now() };
    loop {
        let notified = db.appended.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match pass(&db, &mut evaluator, cursor, &mut clock).await {
            Ok(passed) => {
                cursor = passed.cursor;
                if passed.idle {
                    // Without automations there is nothing to hurry for.
                    tokio::time::sleep(IDLE_POLL).await;
                    continue;
                }
                if passed.read as i64 == BATCH {
                    continue;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "triggers service pass failed; retrying from its checkpoint");
                // Start again from what was saved: the batch is evaluated
                // again from the state it began with.
                let mut fresh = Evaluator::default();
                if load_state(&db, &mut fresh).await.is_ok() {
                    evaluator = fresh;
                }
                if let Ok(c) = starting_cursor(&db).await {
                    cursor = c;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        let _ = tokio::time::timeout(POLL, notified).await;
    }
}
