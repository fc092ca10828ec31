//! When a trigger fires: Prefect's bucket algorithm (`events/triggers.py`)
//! as pure functions over in-memory buckets, so it is tested without a
//! database or a clock. The service (`automations::service`) feeds events
//! and ticks in, persists the buckets, and acts on the firings.
//!
//! One bucket per (trigger, bucketing key) counts the matching events of
//! one window. A Reactive trigger fires as soon as its count reaches the
//! threshold, then waits out the window; a Proactive one fires when a
//! window closes with fewer events than the threshold.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::schema::{CompositeTrigger, EventTrigger, Posture};
use crate::events_model::matcher::glob;
use crate::time::parse_ts;

/// How far back the first bucket of a trigger reaches, so that events
/// arriving out of order around its first event still count (Prefect's
/// `PRECEDING_EVENT_LOOKBACK`).
pub const PRECEDING_EVENT_LOOKBACK: Duration = Duration::minutes(15);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub count: i64,
    pub last_event: Option<Value>,
}

/// One firing of a trigger (Prefect's `Firing`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    /// Derived from what caused it, so evaluating the same event again
    /// (after a crash before the service's checkpoint) fires with the same
    /// id, and what it appends is deduplicated by the log.
    pub id: Uuid,
    pub trigger_id: Uuid,
    pub triggered: DateTime<Utc>,
    pub triggering_labels: Map<String, Value>,
    pub triggering_event: Option<Value>,
}

/// A trigger's open buckets, by bucketing key.
pub type Buckets = HashMap<Vec<String>, Bucket>;

fn seconds(s: f64) -> Duration {
    Duration::microseconds((s * 1_000_000.0) as i64)
}

fn name_of(event: &Value) -> &str {
    event.get("event").and_then(Value::as_str).unwrap_or_default()
}

pub fn occurred_of(event: &Value) -> Option<DateTime<Utc>> {
    event.get("occurred").and_then(Value::as_str).and_then(parse_ts)
}

/// Prefect's label `matches`: a glob, negated by a leading `!`; a missing
/// label matches nothing.
fn label_matches(expected: &str, value: Option<&str>) -> bool {
    let Some(value) = value else { return false };
    match expected.strip_prefix('!') {
        Some(neg) => !glob(neg, value),
        None => glob(expected, value),
    }
}

/// `ResourceSpecification.matches`.
fn spec_matches(spec: &Map<String, Value>, resource: &Value) -> bool {
    spec.iter().all(|(label, expected)| {
        let value = resource.get(label).and_then(Value::as_str);
        match expected {
            Value::String(e) => label_matches(e, value),
            Value::Array(es) => es.iter().filter_map(Value::as_str).any(|e| label_matches(e, value)),
            _ => false,
        }
    })
}

/// `ResourceSpecification.includes`: an empty one includes everything.
fn spec_includes(spec: &Map<String, Value>, candidates: &[Value]) -> bool {
    spec.is_empty() || candidates.iter().any(|c| spec_matches(spec, c))
}

impl EventTrigger {
    /// Whether the event may concern this trigger: its name matches one of
    /// `expect` or `after` (any name when `expect` is empty; as Prefect's
    /// regex, a pattern matches from the start of the name) and its
    /// resources match `match` / `match_related`.
    pub fn covers(&self, event: &Value) -> bool {
        let name = name_of(event);
        if !self.expect.is_empty() {
            // Prefect's `*` is `.+` there: one character or more.
            let prefix_of = |p: &String| glob(&format!("{}*", p.replace('*', "?*")), name);
            if !self.expect.iter().chain(&self.after).any(prefix_of) {
                return false;
            }
        }
        let resource = event.get("resource").unwrap_or(&Value::Null);
        if !spec_includes(&self.match_, std::slice::from_ref(resource)) {
            return false;
        }
        let related: &[Value] = event.get("related").and_then(Value::as_array).map_or(&[], Vec::as_slice);
        match &self.match_related {
            Value::Array(specs) => specs.iter().filter_map(Value::as_object).all(|s| spec_includes(s, related)),
            Value::Object(spec) => spec_includes(spec, related),
            _ => true,
        }
    }

    pub fn expects(&self, name: &str) -> bool {
        self.expect.is_empty() || self.expect.iter().any(|e| label_matches(e, Some(name)))
    }

    pub fn starts_after(&self, name: &str) -> bool {
        self.after.iter().any(|e| label_matches(e, Some(name)))
    }

    fn immediate(&self) -> bool {
        self.posture == Posture::Reactive && self.within == 0.0
    }

    fn meets_threshold(&self, count: i64) -> bool {
        match self.posture {
            Posture::Reactive => count >= self.threshold,
            Posture::Proactive => count < self.threshold,
        }
    }

    /// The values of the `for_each` labels (sorted by label), from the
    /// resource or, for `related:<role>:<label>`, the first related
    /// resource in that role.
    pub fn bucketing_key(&self, event: &Value) -> Vec<String> {
        let mut labels = self.for_each.clone();
        labels.sort();
        labels.iter().map(|l| find_resource_label(event, l).unwrap_or_default()).collect()
    }

    fn labels(&self, key: &[String]) -> Map<String, Value> {
        let mut labels = self.for_each.clone();
        labels.sort();
        labels.into_iter().zip(key.iter().map(|v| Value::String(v.clone()))).collect()
    }
}

/// Prefect's `find_resource_label`.
pub fn find_resource_label(event: &Value, label: &str) -> Option<String> {
    let (directive, related_label) = label.rsplit_once(':').unwrap_or(("", label));
    let (directive, role) = directive.split_once(':').unwrap_or((directive, ""));
    if directive == "related" {
        let related = event.get("related").and_then(Value::as_array)?;
        let first = related.iter().find(|r| r.get("prefect.resource.role").and_then(Value::as_str) == Some(role))?;
        return first.get(related_label).and_then(Value::as_str).map(str::to_owned);
    }
    event.get("resource")?.get(label).and_then(Value::as_str).map(str::to_owned)
}

fn firing(trigger: &EventTrigger, key: &[String], bucket: &Bucket, event: Option<&Value>, wall: DateTime<Utc>) -> Firing {
    let triggering_event = event.cloned().or_else(|| bucket.last_event.clone());
    let cause = match event.and_then(|e| e.get("id")).and_then(Value::as_str) {
        Some(id) => format!("event {id}"),
        None => format!("window {}", bucket.start.timestamp_micros()),
    };
    Firing {
        id: Uuid::new_v5(&trigger.id, format!("{cause} {key:?}").as_bytes()),
        trigger_id: trigger.id,
        triggered: wall,
        triggering_labels: trigger.labels(key),
        triggering_event,
    }
}

/// Prefect's `evaluate`: spends an event (or none, for a proactive check)
/// in `bucket` as of `now`, and returns the bucket to keep (if any) with
/// the firings it caused.
pub fn evaluate(trigger: &EventTrigger, key: &[String], mut bucket: Bucket, now: DateTime<Utc>, event: Option<&Value>, wall: DateTime<Utc>) -> (Option<Bucket>, Vec<Firing>) {
    let mut fired = vec![];
    let mut count = i64::from(event.is_some());
    if now < bucket.start {
        // A late event for a window already closed (or already fired).
        return (Some(bucket), fired);
    }
    if count > 0 && (trigger.immediate() || (bucket.start <= now && now < bucket.end)) {
        bucket.count += count;
        if event.is_some() {
            bucket.last_event = event.cloned();
        }
        count = 0;
    }
    let ready = trigger.posture == Posture::Reactive || bucket.end <= now;
    let meets = trigger.meets_threshold(bucket.count);
    if ready && meets {
        fired.push(firing(trigger, key, &bucket, event, wall));
    } else if now < bucket.end {
        // The same event both starts and satisfies a proactive window
        // (heartbeats): start the next window from it.
        if let Some(e) = event {
            let name = name_of(e);
            if trigger.posture == Posture::Proactive && !meets && trigger.starts_after(name) && trigger.expects(name) {
                let at = occurred_of(e).unwrap_or(now);
                return (Some(Bucket { start: at, end: at + seconds(trigger.within), count: 0, last_event: Some(e.clone()) }), fired);
            }
        }
        return (Some(bucket), fired);
    }
    // Fired, or the window is over: the next window, unless an `after`
    // event must open it.
    if !trigger.after.is_empty() || trigger.within == 0.0 {
        return (None, fired);
    }
    let start = bucket.end.max(now);
    let end = start + seconds(trigger.within);
    if trigger.posture == Posture::Reactive && count > 0 {
        // An event past the window: it opens the next one, where it may
        // fire at once.
        let next = Bucket { start, end, count: 0, last_event: None };
        let (kept, more) = evaluate(trigger, key, next, now, event, wall);
        fired.extend(more);
        return (kept, fired);
    }
    (Some(Bucket { start, end, count, last_event: None }), fired)
}

/// Prefect's `reactive_evaluation` for one trigger that covers `event`.
pub fn on_event(trigger: &EventTrigger, buckets: &mut Buckets, event: &Value, wall: DateTime<Utc>) -> Vec<Firing> {
    let name = name_of(event);
    let Some(occurred) = occurred_of(event) else { return vec![] };
    let key = trigger.bucketing_key(event);
    let within = seconds(trigger.within);
    let mut opened = false;
    if !trigger.after.is_empty() && trigger.starts_after(name) {
        // An event in both `after` and `expect` starts at -1, so that it
        // opens the window without counting in it.
        let initial = if trigger.expects(name) { -1 } else { 0 };
        let bucket = buckets.entry(key.clone()).or_insert_with(|| Bucket { start: occurred, end: occurred + within, count: initial, last_event: None });
        bucket.last_event = Some(event.clone());
        opened = true;
    }
    if !opened && trigger.after.is_empty() && trigger.expects(name) {
        let bucket = buckets.entry(key.clone()).or_insert_with(|| Bucket { start: occurred - PRECEDING_EVENT_LOOKBACK, end: occurred + within, count: 0, last_event: None });
        bucket.last_event = Some(event.clone());
    }
    if !trigger.expects(name) {
        return vec![];
    }
    let Some(bucket) = buckets.remove(&key) else { return vec![] };
    let (kept, fired) = evaluate(trigger, &key, bucket, occurred, Some(event), wall);
    if let Some(kept) = kept {
        buckets.insert(key, kept);
    }
    fired
}

/// Prefect's `proactive_evaluation` of one Proactive trigger as of `now`.
pub fn on_tick(trigger: &EventTrigger, buckets: &mut Buckets, now: DateTime<Utc>) -> Vec<Firing> {
    if trigger.for_each.is_empty() {
        buckets.entry(vec![]).or_insert_with(|| Bucket { start: now, end: now + seconds(trigger.within), count: 0, last_event: None });
    }
    buckets.retain(|_, b| b.count < trigger.threshold);
    let mut fired = vec![];
    for (key, bucket) in std::mem::take(buckets) {
        let (kept, more) = evaluate(trigger, &key, bucket, now, None, now);
        fired.extend(more);
        if let Some(kept) = kept {
            buckets.insert(key, kept);
        }
    }
    fired
}

impl CompositeTrigger {
    fn expected_firings(&self) -> usize {
        match &self.require {
            Some(Value::String(s)) if s == "any" => 1,
            Some(Value::Number(n)) => n.as_u64().unwrap_or(1) as usize,
            _ => self.triggers.len(),
        }
    }

    fn ready_to_fire(&self, firings: &[Firing]) -> bool {
        if self.kind == "sequence" {
            let mut sorted: Vec<&Firing> = firings.iter().collect();
            sorted.sort_by_key(|f| f.triggered);
            let order: Vec<Uuid> = sorted.iter().map(|f| f.trigger_id).collect();
            let expected: Vec<Uuid> = self.triggers.iter().map(|t| t.id()).collect();
            return order == expected;
        }
        firings.len() >= self.expected_firings()
    }

    /// Prefect's `evaluate_composite_trigger`: records a child's firing
    /// (one per child, the latest), forgets those older than `within`, and
    /// fires once enough children have (in order, for a sequence).
    pub fn on_child_firing(&self, children: &mut Vec<Firing>, child: Firing, wall: DateTime<Utc>) -> Option<Firing> {
        let parent = |triggering: &Firing, ids: &[Uuid]| Firing {
            id: Uuid::new_v5(&self.id, format!("{ids:?}").as_bytes()),
            trigger_id: self.id,
            triggered: wall,
            triggering_labels: Map::new(),
            triggering_event: triggering.triggering_event.clone(),
        };
        if self.kind == "compound" && self.expected_firings() == 1 {
            return Some(parent(&child, &[child.id]));
        }
        if let Some(within) = self.within {
            let horizon = child.triggered - seconds(within);
            children.retain(|f| f.triggered >= horizon);
        }
        children.retain(|f| f.trigger_id != child.trigger_id);
        children.push(child.clone());
        if !self.ready_to_fire(children) {
            return None;
        }
        let ids: Vec<Uuid> = children.iter().map(|f| f.id).collect();
        children.clear();
        Some(parent(&child, &ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-08T10:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn trigger(v: Value) -> EventTrigger {
        serde_json::from_value(v).unwrap()
    }

    fn event(name: &str, resource: &str, at: DateTime<Utc>) -> Value {
        json!({
            "id": Uuid::new_v4(), "event": name, "occurred": crate::time::fmt_ts(at),
            "resource": {"prefect.resource.id": resource},
            "related": [{"prefect.resource.id": "prefect.flow.f1", "prefect.resource.role": "flow", "prefect.resource.name": "etl"}],
        })
    }

    #[test]
    fn an_immediate_reactive_trigger_fires_on_every_matching_event() {
        let t = trigger(json!({"posture": "Reactive", "expect": ["prefect.flow-run.Failed"]}));
        let mut buckets = Buckets::new();
        let e = event("prefect.flow-run.Failed", "prefect.flow-run.a", t0());
        assert!(t.covers(&e));
        assert_eq!(on_event(&t, &mut buckets, &e, t0()).len(), 1);
        assert_eq!(on_event(&t, &mut buckets, &event("prefect.flow-run.Failed", "prefect.flow-run.b", t0()), t0()).len(), 1);
        assert!(buckets.is_empty());
        assert!(!t.covers(&event("prefect.flow-run.Completed", "prefect.flow-run.a", t0())));
    }

    #[test]
    fn a_threshold_within_a_window_fires_once_then_waits_out_the_window() {
        let t = trigger(json!({"posture": "Reactive", "expect": ["x"], "threshold": 3, "within": 60}));
        let mut buckets = Buckets::new();
        let at = |s: i64| t0() + Duration::seconds(s);
        assert!(on_event(&t, &mut buckets, &event("x", "r", at(0)), at(0)).is_empty());
        assert!(on_event(&t, &mut buckets, &event("x", "r", at(1)), at(1)).is_empty());
        let fired = on_event(&t, &mut buckets, &event("x", "r", at(2)), at(2));
        assert_eq!(fired.len(), 1);
        // Three more within the same window do not fire again...
        for s in 3..6 {
            assert!(on_event(&t, &mut buckets, &event("x", "r", at(s)), at(s)).is_empty());
        }
        // ...but three in the next window do.
        let next = buckets[&vec![]].end;
        let fired: usize = (0..3).map(|i| on_event(&t, &mut buckets, &event("x", "r", next + Duration::seconds(i)), next).len()).sum();
        assert_eq!(fired, 1);
    }

    #[test]
    fn for_each_keeps_a_bucket_per_label_value() {
        let t = trigger(json!({"posture": "Reactive", "expect": ["x"], "threshold": 2, "within": 60, "for_each": ["prefect.resource.id"]}));
        let mut buckets = Buckets::new();
        assert!(on_event(&t, &mut buckets, &event("x", "a", t0()), t0()).is_empty());
        assert!(on_event(&t, &mut buckets, &event("x", "b", t0()), t0()).is_empty());
        let fired = on_event(&t, &mut buckets, &event("x", "a", t0()), t0());
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].triggering_labels, Map::from_iter([("prefect.resource.id".to_owned(), json!("a"))]));
    }

    #[test]
    fn related_labels_can_be_the_bucketing_key() {
        let t = trigger(json!({"posture": "Reactive", "for_each": ["related:flow:prefect.resource.name"]}));
        assert_eq!(t.bucketing_key(&event("x", "a", t0())), vec!["etl".to_owned()]);
    }

    #[test]
    fn a_proactive_trigger_fires_when_the_window_closes_without_the_event() {
        let t = trigger(json!({"posture": "Proactive", "expect": ["done"], "within": 30}));
        let mut buckets = Buckets::new();
        assert!(on_tick(&t, &mut buckets, t0()).is_empty());
        assert!(on_tick(&t, &mut buckets, t0() + Duration::seconds(29)).is_empty());
        assert_eq!(on_tick(&t, &mut buckets, t0() + Duration::seconds(30)).len(), 1);
        // The next window opens at once; an event in it keeps it quiet.
        let later = t0() + Duration::seconds(31);
        assert!(on_event(&t, &mut buckets, &event("done", "r", later), later).is_empty());
        assert!(on_tick(&t, &mut buckets, t0() + Duration::seconds(61)).is_empty());
    }

    #[test]
    fn a_proactive_trigger_with_after_watches_each_started_resource() {
        let t = trigger(json!({
            "posture": "Proactive", "after": ["prefect.flow-run.Running"], "expect": ["prefect.flow-run.Completed"],
            "for_each": ["prefect.resource.id"], "within": 60,
        }));
        let mut buckets = Buckets::new();
        let started = event("prefect.flow-run.Running", "prefect.flow-run.a", t0());
        assert!(t.covers(&started));
        assert!(on_event(&t, &mut buckets, &started, t0()).is_empty());
        on_event(&t, &mut buckets, &event("prefect.flow-run.Running", "prefect.flow-run.b", t0()), t0());
        let done = t0() + Duration::seconds(10);
        on_event(&t, &mut buckets, &event("prefect.flow-run.Completed", "prefect.flow-run.b", done), done);
        let fired = on_tick(&t, &mut buckets, t0() + Duration::seconds(61));
        assert_eq!(fired.len(), 1, "only the run that never completed");
        assert_eq!(fired[0].triggering_labels["prefect.resource.id"], "prefect.flow-run.a");
        assert_eq!(fired[0].triggering_event.as_ref().unwrap()["event"], "prefect.flow-run.Running");
        assert!(buckets.is_empty());
    }

    #[test]
    fn match_and_match_related_filter_resources() {
        let t = trigger(json!({"posture": "Reactive", "match": {"prefect.resource.id": "prefect.flow-run.*"}, "match_related": {"prefect.resource.name": ["etl", "other"]}}));
        assert!(t.covers(&event("x", "prefect.flow-run.a", t0())));
        assert!(!t.covers(&event("x", "prefect.deployment.a", t0())));
        let negated = trigger(json!({"posture": "Reactive", "match": {"prefect.resource.id": "!prefect.flow-run.*"}}));
        assert!(negated.covers(&event("x", "prefect.deployment.a", t0())));
        let elsewhere = trigger(json!({"posture": "Reactive", "match_related": [{"prefect.resource.role": "deployment"}]}));
        assert!(!elsewhere.covers(&event("x", "prefect.flow-run.a", t0())));
    }

    #[test]
    fn firing_ids_follow_their_cause() {
        let t = trigger(json!({"posture": "Reactive"}));
        let e = event("x", "r", t0());
        let a = on_event(&t, &mut Buckets::new(), &e, t0());
        let b = on_event(&t, &mut Buckets::new(), &e, t0() + Duration::seconds(5));
        assert_eq!(a[0].id, b[0].id);
    }

    fn composite(v: Value) -> CompositeTrigger {
        serde_json::from_value(v).unwrap()
    }

    fn child_firing(trigger_id: Uuid, at: DateTime<Utc>) -> Firing {
        Firing { id: Uuid::new_v4(), trigger_id, triggered: at, triggering_labels: Map::new(), triggering_event: None }
    }

    #[test]
    fn a_compound_trigger_fires_when_all_children_fired_within_its_window() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let c = composite(json!({"type": "compound", "require": "all", "within": 60, "triggers": [
            {"posture": "Reactive", "id": a}, {"posture": "Reactive", "id": b}]}));
        let mut children = vec![];
        assert!(c.on_child_firing(&mut children, child_firing(a, t0()), t0()).is_none());
        // b fires after a's firing has left the window: not yet.
        let late = t0() + Duration::seconds(120);
        assert!(c.on_child_firing(&mut children, child_firing(b, late), late).is_none());
        let again = late + Duration::seconds(1);
        assert!(c.on_child_firing(&mut children, child_firing(a, again), again).is_some());
        assert!(children.is_empty());
    }

    #[test]
    fn a_sequence_needs_its_children_in_order() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let s = composite(json!({"type": "sequence", "within": null, "triggers": [
            {"posture": "Reactive", "id": a}, {"posture": "Reactive", "id": b}]}));
        let mut children = vec![];
        assert!(s.on_child_firing(&mut children, child_firing(b, t0()), t0()).is_none());
        let later = t0() + Duration::seconds(1);
        assert!(s.on_child_firing(&mut children, child_firing(a, later), later).is_none());
        let last = t0() + Duration::seconds(2);
        assert!(s.on_child_firing(&mut children, child_firing(b, last), last).is_some());
    }
}
