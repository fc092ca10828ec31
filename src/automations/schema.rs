//! Prefect's automation models (`events/schemas/automations.py`,
//! `events/actions.py`): what `POST /automations/` accepts, with its
//! defaults filled in and its validators, serialised back field by field as
//! Prefect answers (timedeltas as float seconds).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::api::error::AppError;

/// A duration as pydantic reads a `timedelta`: seconds as a number, or an
/// ISO 8601 duration (`PT10S`, `P1DT2H`). Kept as float seconds.
pub fn timedelta_seconds(v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| "Input should be a valid timedelta".to_owned()),
        Value::String(s) => iso_duration(s).ok_or_else(|| "Input should be a valid timedelta, invalid character in number".to_owned()),
        _ => Err("Input should be a valid timedelta".to_owned()),
    }
}

/// A duration string (seconds, or ISO 8601) as the settings read it.
fn iso_duration(s: &str) -> Option<f64> {
    crate::config::parse_duration(s).map(|d| d.as_secs_f64())
}

fn de_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Err(D::Error::custom("`within` should be a valid timedelta"));
    }
    timedelta_seconds(&v).map_err(D::Error::custom)
}

fn de_opt_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    timedelta_seconds(&v).map(Some).map_err(D::Error::custom)
}

/// A Python `set[str]`: duplicates dropped, first occurrence kept.
fn de_set<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let items = Vec::<String>::deserialize(d)?;
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    Ok(out)
}

/// A `ResourceSpecification`: label → a glob or a list of globs.
fn de_spec<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    let spec = Map::<String, Value>::deserialize(d)?;
    check_spec(&spec).map_err(D::Error::custom)?;
    Ok(spec)
}

fn check_spec(spec: &Map<String, Value>) -> Result<(), String> {
    let ok = spec.values().all(|v| v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string)));
    if ok {
        Ok(())
    } else {
        Err("resource specification values must be strings or lists of strings".into())
    }
}

/// `match_related`: one specification or a list of them.
fn de_related<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    let v = Value::deserialize(d)?;
    let specs: Vec<&Value> = match &v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    for spec in specs {
        let Some(spec) = spec.as_object() else {
            return Err(D::Error::custom("match_related must be a resource specification or a list of them"));
        };
        check_spec(spec).map_err(D::Error::custom)?;
    }
    Ok(v)
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}
fn one() -> i64 {
    1
}
fn new_id() -> Uuid {
    Uuid::new_v4()
}
fn event_type() -> String {
    "event".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Posture {
    Reactive,
    Proactive,
}

/// `EventTrigger`: fires on the presence (Reactive) or absence (Proactive)
/// of matching events within a window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventTrigger {
    #[serde(rename = "type", default = "event_type")]
    pub kind: String,
    #[serde(default = "new_id")]
    pub id: Uuid,
    #[serde(rename = "match", default, deserialize_with = "de_spec")]
    pub match_: Map<String, Value>,
    #[serde(default = "empty_object", deserialize_with = "de_related")]
    pub match_related: Value,
    #[serde(default, deserialize_with = "de_set")]
    pub after: Vec<String>,
    #[serde(default, deserialize_with = "de_set")]
    pub expect: Vec<String>,
    #[serde(default, deserialize_with = "de_set")]
    pub for_each: Vec<String>,
    pub posture: Posture,
    #[serde(default = "one")]
    pub threshold: i64,
    #[serde(default, deserialize_with = "de_seconds")]
    pub within: f64,
}

/// `CompoundTrigger` (`require`: a count, `"any"` or `"all"`) and
/// `SequenceTrigger` (children must fire in order) share this shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompositeTrigger {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default = "new_id")]
    pub id: Uuid,
    pub triggers: Vec<Trigger>,
    #[serde(deserialize_with = "de_opt_seconds")]
    pub within: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require: Option<Value>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Trigger {
    Event(EventTrigger),
    Composite(CompositeTrigger),
}

impl<'de> Deserialize<'de> for Trigger {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match v.get("type").map(|t| t.as_str()) {
            None | Some(Some("event")) => serde_json::from_value(v).map(Trigger::Event).map_err(D::Error::custom),
            Some(Some("compound")) => {
                if v.get("require").is_none() {
                    return Err(D::Error::custom("missing field `require`"));
                }
                serde_json::from_value(v).map(Trigger::Composite).map_err(D::Error::custom)
            }
            Some(Some("sequence")) => {
                let mut v = v;
                if let Some(o) = v.as_object_mut() {
                    o.remove("require");
                }
                serde_json::from_value(v).map(Trigger::Composite).map_err(D::Error::custom)
            }
            _ => Err(D::Error::custom("Input tag does not match any of the expected tags: 'event', 'compound', 'sequence'")),
        }
    }
}

impl Trigger {
    pub fn id(&self) -> Uuid {
        match self {
            Trigger::Event(t) => t.id,
            Trigger::Composite(t) => t.id,
        }
    }

    pub fn kind(&self) -> &str {
        match self {
            Trigger::Event(t) => &t.kind,
            Trigger::Composite(t) => &t.kind,
        }
    }

    /// Prefect's `reset_ids`: every trigger gets a fresh id on create and
    /// replace, whatever the client sent.
    pub fn reset_ids(&mut self) {
        match self {
            Trigger::Event(t) => t.id = Uuid::new_v4(),
            Trigger::Composite(t) => {
                t.id = Uuid::new_v4();
                t.triggers.iter_mut().for_each(Trigger::reset_ids);
            }
        }
    }

    fn validate(&self, loc: &mut Vec<String>) -> Result<(), (Vec<String>, String)> {
        match self {
            Trigger::Event(t) => {
                if t.within < 0.0 {
                    loc.push("within".into());
                    return Err((loc.clone(), "Input should be greater than or equal to 0 seconds".into()));
                }
                if t.posture == Posture::Proactive && t.within > 0.0 && t.within < 10.0 {
                    return Err((loc.clone(), "Value error, `within` for Proactive triggers must be greater than or equal to 10 seconds".into()));
                }
                Ok(())
            }
            Trigger::Composite(t) => {
                if let Some(require) = &t.require {
                    match require {
                        Value::String(s) if s == "any" || s == "all" => {}
                        Value::Number(n) => {
                            let n = n.as_i64().unwrap_or(0);
                            if n < 1 {
                                return Err((loc.clone(), "Value error, require must be at least 1".into()));
                            }
                            if n as usize > t.triggers.len() {
                                return Err((loc.clone(), "Value error, require must be less than or equal to the number of triggers".into()));
                            }
                        }
                        _ => {
                            loc.push("require".into());
                            return Err((loc.clone(), "Input should be a valid integer, 'any' or 'all'".into()));
                        }
                    }
                }
                for (i, child) in t.triggers.iter().enumerate() {
                    let mut child_loc = loc.clone();
                    child_loc.extend(["triggers".to_owned(), i.to_string()]);
                    child.validate(&mut child_loc)?;
                }
                Ok(())
            }
        }
    }

    /// Prefect's defaulting: a Proactive trigger's `within` is at least 10 s.
    fn fill_defaults(&mut self) {
        match self {
            Trigger::Event(t) => {
                if t.posture == Posture::Proactive && t.within == 0.0 {
                    t.within = 10.0;
                }
            }
            Trigger::Composite(t) => t.triggers.iter_mut().for_each(Trigger::fill_defaults),
        }
    }
}

fn selected() -> String {
    "selected".into()
}
fn notification_subject() -> String {
    "Prefect automated notification".into()
}

/// A webhook payload: Prefect migrated it from a dict to a string and still
/// accepts the dict (as its JSON).
fn de_payload<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => serde_json::to_string_pretty(&other).map_err(D::Error::custom)?,
    })
}

fn de_non_negative_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = Value::deserialize(d)?;
    let s = timedelta_seconds(&v).map_err(D::Error::custom)?;
    if s < 0.0 {
        return Err(D::Error::custom("Input should be greater than or equal to 0 seconds"));
    }
    Ok(s)
}

/// Prefect's `ServerActionTypes`, by their `type`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Action {
    DoNothing {},
    RunDeployment {
        #[serde(default = "selected")]
        source: String,
        #[serde(default)]
        deployment_id: Option<Uuid>,
        #[serde(default)]
        parameters: Option<Map<String, Value>>,
        #[serde(default)]
        job_variables: Option<Map<String, Value>>,
        #[serde(default, deserialize_with = "de_non_negative_seconds")]
        schedule_after: f64,
    },
    PauseDeployment {
        #[serde(default = "selected")]
        source: String,
        #[serde(default)]
        deployment_id: Option<Uuid>,
    },
    ResumeDeployment {
        #[serde(default = "selected")]
        source: String,
        #[serde(default)]
        deployment_id: Option<Uuid>,
    },
    CancelFlowRun {},
    DeleteFlowRun {},
    ChangeFlowRunState {
        #[serde(default)]
        name: Option<String>,
        state: String,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        force: bool,
    },
    PauseWorkQueue {
        #[serde(default = "selected")]
        source: String,
        #[serde(default)]
        work_queue_id: Option<Uuid>,
    },
    ResumeWorkQueue {
        #[serde(default = "selected")]
        source: String,
        #[serde(default)]
        work_queue_id: Option<Uuid>,
    },
    SendNotification {
        block_document_id: Uuid,
        #[serde(default = "notification_subject")]
        subject: String,
        body: String,
    },
    CallWebhook {
        block_document_id: Uuid,
        #[serde(default, deserialize_with = "de_payload")]
        payload: String,
    },
    PauseAutomation {
        #[serde(default = "selected")]
        source: String,
        #[serde(default)]
        automation_id: Option<Uuid>,
    },
    ResumeAutomation {
        #[serde(default = "selected")]
        source: String,
        #[serde(default)]
        automation_id: Option<Uuid>,
    },
    SuspendFlowRun {},
    ResumeFlowRun {},
    PauseWorkPool {
        #[serde(default = "selected")]
        source: String,
        #[serde(default)]
        work_pool_id: Option<Uuid>,
    },
    ResumeWorkPool {
        #[serde(default = "selected")]
        source: String,
        #[serde(default)]
        work_pool_id: Option<Uuid>,
    },
}

const STATE_TYPES: &[&str] = &["SCHEDULED", "PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "CRASHED", "PAUSED", "CANCELLING"];

impl Action {
    /// Reads one action; an object without `type` is `do-nothing`, the
    /// first member of Prefect's union that accepts it.
    fn parse(mut v: Value) -> Result<Action, String> {
        if let Some(o) = v.as_object_mut() {
            o.entry("type").or_insert_with(|| Value::String("do-nothing".into()));
        }
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    pub fn kind(&self) -> String {
        match serde_json::to_value(self) {
            Ok(Value::Object(o)) => o.get("type").and_then(Value::as_str).unwrap_or_default().to_owned(),
            _ => String::new(),
        }
    }

    /// The `(field, source, id)` of an action that targets one object
    /// selected by id or inferred from the event.
    fn target(&self) -> Option<(&'static str, &str, Option<Uuid>)> {
        Some(match self {
            Action::RunDeployment { source, deployment_id, .. } | Action::PauseDeployment { source, deployment_id } | Action::ResumeDeployment { source, deployment_id } => {
                ("deployment_id", source.as_str(), *deployment_id)
            }
            Action::PauseWorkQueue { source, work_queue_id } | Action::ResumeWorkQueue { source, work_queue_id } => ("work_queue_id", source.as_str(), *work_queue_id),
            Action::PauseWorkPool { source, work_pool_id } | Action::ResumeWorkPool { source, work_pool_id } => ("work_pool_id", source.as_str(), *work_pool_id),
            Action::PauseAutomation { source, automation_id } | Action::ResumeAutomation { source, automation_id } => ("automation_id", source.as_str(), *automation_id),
            _ => return None,
        })
    }

    fn validate(&self) -> Result<(), String> {
        if let Some((field, source, id)) = self.target() {
            if source != "selected" && source != "inferred" {
                return Err("Input should be 'selected' or 'inferred'".into());
            }
            let wants_selected = source == "selected";
            if wants_selected != id.is_some() {
                return Err(format!("Value error, {field} is {}", if id.is_some() { "not allowed" } else { "required" }));
            }
        }
        if let Action::ChangeFlowRunState { state, .. } = self {
            if !STATE_TYPES.contains(&state.as_str()) {
                return Err(format!("Input should be {}", STATE_TYPES.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ")));
            }
        }
        Ok(())
    }
}

/// The `enabled` field of a create, replace or partial update: true unless
/// sent, and a boolean when sent.
pub fn enabled_field(body: &Map<String, Value>) -> Result<bool, AppError> {
    match body.get("enabled") {
        None => Ok(true),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(AppError::invalid(&["body", "enabled"], "Input should be a valid boolean", other.clone())),
    }
}

/// `AutomationCore` as a client sends it (`AutomationCreate` also has
/// `owner_resource`; `AutomationUpdate` has not).
#[derive(Debug, Clone)]
pub struct AutomationSpec {
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub tags: Vec<String>,
    pub trigger: Trigger,
    pub actions: Vec<Action>,
    pub actions_on_trigger: Vec<Action>,
    pub actions_on_resolve: Vec<Action>,
    pub owner_resource: Option<String>,
}

fn invalid(loc: &[String], msg: impl Into<String>, input: &Value) -> AppError {
    let loc: Vec<&str> = loc.iter().map(String::as_str).collect();
    AppError::invalid(&loc, msg, input.clone())
}

fn loc(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| (*p).to_owned()).collect()
}

impl AutomationSpec {
    /// Parses and validates a body. `allow_owner` is true for create;
    /// unknown top-level fields are refused (`extra="forbid"`).
    pub fn parse(body: &Value, allow_owner: bool) -> Result<AutomationSpec, AppError> {
        let Some(o) = body.as_object() else {
            return Err(invalid(&loc(&["body"]), "Input should be a valid dictionary or object to extract fields from", body));
        };
        const KNOWN: &[&str] = &["name", "description", "enabled", "tags", "trigger", "actions", "actions_on_trigger", "actions_on_resolve"];
        for key in o.keys() {
            if !KNOWN.contains(&key.as_str()) && !(allow_owner && key == "owner_resource") {
                return Err(AppError::invalid(&["body", key], "Extra inputs are not permitted", o[key].clone()));
            }
        }
        let string = |key: &str, default: Option<&str>| -> Result<String, AppError> {
            match (o.get(key), default) {
                (Some(Value::String(s)), _) => Ok(s.clone()),
                (None, Some(d)) => Ok(d.to_owned()),
                (None, None) => Err(AppError::invalid(&["body", key], "Field required", body.clone())),
                (Some(other), _) => Err(AppError::invalid(&["body", key], "Input should be a valid string", other.clone())),
            }
        };
        let name = string("name", None)?;
        let description = string("description", Some(""))?;
        let enabled = enabled_field(o)?;
        let tags = match o.get("tags") {
            None => vec![],
            Some(v) => serde_json::from_value::<Vec<String>>(v.clone()).map_err(|_| AppError::invalid(&["body", "tags"], "Input should be a valid list", v.clone()))?,
        };
        let raw_trigger = o.get("trigger").ok_or_else(|| AppError::invalid(&["body", "trigger"], "Field required", body.clone()))?;
        let mut trigger: Trigger = serde_json::from_value(raw_trigger.clone()).map_err(|e| invalid(&loc(&["body", "trigger"]), e.to_string(), raw_trigger))?;
        trigger.validate(&mut loc(&["body", "trigger"])).map_err(|(l, m)| invalid(&l, m, raw_trigger))?;
        trigger.fill_defaults();
        let actions_of = |key: &str, required: bool| -> Result<Vec<Action>, AppError> {
            let raw = match o.get(key) {
                None if required => return Err(AppError::invalid(&["body", key], "Field required", body.clone())),
                None => return Ok(vec![]),
                Some(v) => v,
            };
            let Some(items) = raw.as_array() else {
                return Err(AppError::invalid(&["body", key], "Input should be a valid list", raw.clone()));
            };
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let at = loc(&["body", key, &i.to_string()]);
                    let action = Action::parse(item.clone()).map_err(|m| invalid(&at, m, item))?;
                    action.validate().map_err(|m| invalid(&at, m, item))?;
                    Ok(action)
                })
                .collect()
        };
        let spec = AutomationSpec {
            name,
            description,
            enabled,
            tags,
            trigger,
            actions: actions_of("actions", true)?,
            actions_on_trigger: actions_of("actions_on_trigger", false)?,
            actions_on_resolve: actions_of("actions_on_resolve", false)?,
            owner_resource: match o.get("owner_resource") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => return Err(AppError::invalid(&["body", "owner_resource"], "Input should be a valid string", other.clone())),
            },
        };
        spec.prevent_run_deployment_loops().map_err(|m| invalid(&loc(&["body"]), m, body))?;
        Ok(spec)
    }

    /// Prefect's `prevent_run_deployment_loops`: a reactive trigger on the
    /// states every deployment run passes through, running a deployment,
    /// would feed itself forever.
    pub fn prevent_run_deployment_loops(&self) -> Result<(), String> {
        let Trigger::Event(t) = &self.trigger else { return Ok(()) };
        if !self.enabled || t.posture != Posture::Reactive || !t.expect.iter().any(|e| e.starts_with("prefect.flow-run.")) {
            return Ok(());
        }
        const PROBLEMATIC: &[&str] = &["prefect.flow-run.Scheduled", "prefect.flow-run.Pending", "prefect.flow-run.Running", "prefect.flow-run.*"];
        if !t.expect.iter().any(|e| PROBLEMATIC.contains(&e.as_str())) {
            return Ok(());
        }
        for action in &self.actions {
            let Action::RunDeployment { source, .. } = action else { continue };
            if source == "inferred" {
                return Err("Value error, Running an inferred deployment from a flow run state change event will lead to an infinite loop of flow runs.  Please choose a specific deployment and add additional filtering labels to the match or match_related for this automation's trigger.".into());
            }
            let related: Vec<&Value> = match &t.match_related {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            let every_run = |spec: &Map<String, Value>| matches_every_resource_of_kind(spec, "prefect.flow-run");
            if every_run(&t.match_) && related.iter().any(|r| r.as_object().is_some_and(every_run)) {
                return Err("Value error, Running a selected deployment from a flow run state change event may lead to an infinite loop of flow runs.  Please include additional filtering labels on either match or match_related to narrow down which flow runs will trigger this automation to exclude flow runs from the deployment you've selected.".into());
            }
        }
        Ok(())
    }

    /// The stored record: Prefect's `Automation` fields by name.
    pub fn record(&self) -> Map<String, Value> {
        Map::from_iter([
            ("name".to_owned(), Value::String(self.name.clone())),
            ("description".to_owned(), Value::String(self.description.clone())),
            ("enabled".to_owned(), Value::Bool(self.enabled)),
            ("tags".to_owned(), to(&self.tags)),
            ("trigger".to_owned(), to(&self.trigger)),
            ("actions".to_owned(), to(&self.actions)),
            ("actions_on_trigger".to_owned(), to(&self.actions_on_trigger)),
            ("actions_on_resolve".to_owned(), to(&self.actions_on_resolve)),
        ])
    }

    /// Reads a stored automation back (a record written by [`record`]).
    pub fn from_record(doc: &Map<String, Value>) -> Option<AutomationSpec> {
        let list = |k: &str| doc.get(k).cloned().and_then(|v| serde_json::from_value::<Vec<Action>>(v).ok());
        Some(AutomationSpec {
            name: doc.get("name")?.as_str()?.to_owned(),
            description: doc.get("description").and_then(Value::as_str).unwrap_or_default().to_owned(),
            enabled: doc.get("enabled").and_then(Value::as_bool).unwrap_or(true),
            tags: doc.get("tags").cloned().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default(),
            trigger: serde_json::from_value(doc.get("trigger")?.clone()).ok()?,
            actions: list("actions")?,
            actions_on_trigger: list("actions_on_trigger").unwrap_or_default(),
            actions_on_resolve: list("actions_on_resolve").unwrap_or_default(),
            owner_resource: doc.get("owner_resource").and_then(Value::as_str).map(str::to_owned),
        })
    }

    /// The deployments its `run-deployment` actions select (Prefect relates
    /// the automation to them for `/automations/related-to/...`).
    pub fn selected_deployments(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::RunDeployment { source, deployment_id: Some(id), .. } if source == "selected" => Some(*id),
                _ => None,
            })
            .collect();
        ids.dedup();
        ids
    }
}

/// Prefect's `matches_every_resource_of_kind`.
fn matches_every_resource_of_kind(spec: &Map<String, Value>, prefix: &str) -> bool {
    if spec.is_empty() {
        return true;
    }
    if spec.len() == 1 {
        let wildcard = format!("{prefix}.*");
        return match spec.get("prefect.resource.id") {
            Some(Value::String(s)) => *s == wildcard,
            Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(wildcard.as_str())),
            _ => false,
        };
    }
    false
}

/// Serialises one of the types above (maps with string keys and finite
/// floats, so it cannot fail).
fn to<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<AutomationSpec, AppError> {
        AutomationSpec::parse(&v, true)
    }

    #[test]
    fn an_event_trigger_gets_prefects_defaults() {
        let spec = parse(json!({"name": "a", "trigger": {"posture": "Reactive", "expect": ["x", "x", "y"]}, "actions": [{"type": "do-nothing"}]})).unwrap();
        let record = spec.record();
        let t = &record["trigger"];
        assert_eq!(t["type"], "event");
        assert_eq!(t["threshold"], 1);
        assert_eq!(t["within"], 0.0);
        assert_eq!(t["match"], json!({}));
        assert_eq!(t["match_related"], json!({}));
        assert_eq!(t["expect"], json!(["x", "y"]));
        assert_eq!(record["actions"], json!([{"type": "do-nothing"}]));
        assert_eq!(record["enabled"], true);
    }

    #[test]
    fn a_proactive_trigger_waits_at_least_ten_seconds() {
        let spec = parse(json!({"name": "a", "trigger": {"posture": "Proactive"}, "actions": []})).unwrap();
        assert_eq!(spec.record()["trigger"]["within"], 10.0);
        assert!(parse(json!({"name": "a", "trigger": {"posture": "Proactive", "within": 5}, "actions": []})).is_err());
        let iso = parse(json!({"name": "a", "trigger": {"posture": "Proactive", "within": "PT1M"}, "actions": []})).unwrap();
        assert_eq!(iso.record()["trigger"]["within"], 60.0);
    }

    #[test]
    fn the_metric_posture_is_refused_as_in_the_oss_server() {
        assert!(parse(json!({"name": "a", "trigger": {"posture": "Metric"}, "actions": []})).is_err());
    }

    #[test]
    fn a_selected_target_needs_its_id_and_an_inferred_one_must_not_have_it() {
        let id = Uuid::new_v4();
        let with = |a: Value| parse(json!({"name": "a", "trigger": {"posture": "Reactive"}, "actions": [a]}));
        assert!(with(json!({"type": "pause-deployment"})).is_err());
        assert!(with(json!({"type": "pause-deployment", "source": "inferred", "deployment_id": id})).is_err());
        assert!(with(json!({"type": "pause-deployment", "deployment_id": id})).is_ok());
        assert!(with(json!({"type": "pause-work-pool", "source": "inferred"})).is_ok());
        assert!(with(json!({"type": "change-flow-run-state", "state": "DONE"})).is_err());
        let run = with(json!({"type": "run-deployment", "deployment_id": id})).unwrap();
        assert_eq!(run.record()["actions"][0], json!({"type": "run-deployment", "source": "selected", "deployment_id": id, "parameters": null, "job_variables": null, "schedule_after": 0.0}));
    }

    #[test]
    fn an_action_without_a_type_does_nothing() {
        let spec = parse(json!({"name": "a", "trigger": {"posture": "Reactive"}, "actions": [{}]})).unwrap();
        assert_eq!(spec.record()["actions"], json!([{"type": "do-nothing"}]));
    }

    #[test]
    fn unknown_fields_are_refused_at_the_top_only() {
        assert!(parse(json!({"name": "a", "trigger": {"posture": "Reactive"}, "actions": [], "colour": 1})).is_err());
        assert!(AutomationSpec::parse(&json!({"name": "a", "trigger": {"posture": "Reactive"}, "actions": [], "owner_resource": "x"}), false).is_err());
        assert!(parse(json!({"name": "a", "trigger": {"posture": "Reactive", "colour": 1}, "actions": []})).is_ok());
    }

    #[test]
    fn compound_triggers_check_require() {
        let child = json!({"posture": "Reactive", "expect": ["a"]});
        let with = |require: Value| parse(json!({"name": "a", "trigger": {"type": "compound", "require": require, "within": 60, "triggers": [child, child]}, "actions": []}));
        assert!(with(json!("all")).is_ok());
        assert!(with(json!(2)).is_ok());
        assert!(with(json!(3)).is_err());
        assert!(with(json!(0)).is_err());
        let seq = parse(json!({"name": "a", "trigger": {"type": "sequence", "within": null, "triggers": [child]}, "actions": []})).unwrap();
        let t = &seq.record()["trigger"];
        assert_eq!(t["within"], Value::Null);
        assert!(t.get("require").is_none());
        assert_eq!(t["triggers"][0]["type"], "event");
    }

    #[test]
    fn running_an_inferred_deployment_on_every_run_state_is_a_loop() {
        let body = json!({"name": "a", "trigger": {"posture": "Reactive", "expect": ["prefect.flow-run.Running"]}, "actions": [{"type": "run-deployment", "source": "inferred"}]});
        assert!(parse(body.clone()).is_err());
        let mut disabled = body;
        disabled["enabled"] = json!(false);
        assert!(parse(disabled).is_ok());
        let selected = json!({"name": "a", "trigger": {"posture": "Reactive", "expect": ["prefect.flow-run.*"]}, "actions": [{"type": "run-deployment", "deployment_id": Uuid::new_v4()}]});
        assert!(parse(selected).is_err());
        let narrowed = json!({"name": "a", "trigger": {"posture": "Reactive", "expect": ["prefect.flow-run.*"], "match_related": {"prefect.resource.id": "prefect.flow.x"}}, "actions": [{"type": "run-deployment", "deployment_id": Uuid::new_v4()}]});
        assert!(parse(narrowed).is_ok());
    }

    #[test]
    fn reset_ids_renews_every_trigger_id() {
        let mut spec = parse(json!({"name": "a", "trigger": {"type": "compound", "require": "any", "within": 5, "id": Uuid::nil(), "triggers": [{"posture": "Reactive", "id": Uuid::nil()}]}, "actions": []})).unwrap();
        spec.trigger.reset_ids();
        let Trigger::Composite(c) = &spec.trigger else { panic!() };
        assert_ne!(c.id, Uuid::nil());
        assert_ne!(c.triggers[0].id(), Uuid::nil());
    }

    #[test]
    fn iso_durations() {
        assert_eq!(iso_duration("PT10S"), Some(10.0));
        assert_eq!(iso_duration("P1DT1H"), Some(90_000.0));
        assert_eq!(iso_duration("PT1.5M"), Some(90.0));
        assert_eq!(iso_duration("10x"), None);
    }
}
