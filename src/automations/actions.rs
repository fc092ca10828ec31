//! What a firing does (Prefect's `events/actions.py`). Prefect's actions
//! call its own REST API in-process; here they call the same commands the
//! routes call, so every change they make is in the log like any other.
//!
//! Each action, executed or failed, is reported with Prefect's pair of
//! feed events, `prefect.automation.action.triggered` then `.executed` or
//! `.failed`. Their ids derive from the invocation, so an action repeated
//! after a crash reports once, and a deployment run it starts carries the
//! invocation in its idempotency key, so it is not started twice.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::schema::{Action, Trigger};
use crate::api::error::AppError;
use crate::commands::client_events::ClientEvent;
use crate::db::Db;

/// The API version actions speak when they change a run's state.
const API_VERSION: (u32, u32, u32) = (0, 8, 4);

/// One action to take for one firing (Prefect's `TriggeredAction`).
pub struct TriggeredAction<'a> {
    pub automation_id: Uuid,
    pub automation_name: &'a str,
    /// The automation as its Prefect JSON (what templates see as `automation`).
    pub automation: &'a Value,
    pub trigger: &'a Trigger,
    pub action: &'a Action,
    pub action_index: usize,
    /// Unique per firing and action.
    pub invocation: Uuid,
    pub triggered: DateTime<Utc>,
    pub triggering_labels: &'a Map<String, Value>,
    pub triggering_event: Option<&'a Value>,
    /// The `prefect.automation.triggered` event this action follows.
    pub automation_triggered_event_id: Option<Uuid>,
}

/// Why an action failed, with details for the `failed` event's payload.
struct Failed(String);

impl From<AppError> for Failed {
    fn from(e: AppError) -> Self {
        Failed(e.reason())
    }
}

/// What an executed action leaves behind: the resources it touched (as
/// related resources of its events) and details for the payload.
#[derive(Default)]
struct Done {
    related: Vec<Value>,
    details: Map<String, Value>,
}

fn id_from_resource_id(resource_id: &str, kind: &str) -> Option<Uuid> {
    resource_id.strip_prefix(kind)?.strip_prefix('.').and_then(|id| Uuid::parse_str(id).ok())
}

/// Prefect's `_id_of_first_resource_of_kind`: the event's resource, then
/// its related resources.
pub(super) fn id_of_first_resource_of_kind(event: &Value, kind: &str) -> Option<Uuid> {
    let resources = std::iter::once(event.get("resource")).chain(event.get("related").and_then(Value::as_array).into_iter().flatten().map(Some));
    resources
        .flatten()
        .filter_map(|r| r.get("prefect.resource.id").and_then(Value::as_str))
        .find(|id| id.starts_with(&format!("{kind}.")))
        .and_then(|id| id_from_resource_id(id, kind))
}

fn target(kind: &str, id: Uuid) -> Value {
    json!({"prefect.resource.id": format!("prefect.{kind}.{id}"), "prefect.resource.role": "target"})
}

impl TriggeredAction<'_> {
    fn selected_or_inferred(&self, source: &str, selected: Option<Uuid>, kind: &str, what: &str) -> Result<Uuid, Failed> {
        if source == "selected" {
            return selected.ok_or_else(|| Failed(format!("No {what} was selected")));
        }
        let event = self.triggering_event.ok_or_else(|| Failed(format!("No event to infer the {what}")))?;
        id_of_first_resource_of_kind(event, &format!("prefect.{kind}")).ok_or_else(|| Failed(format!("No {what} could be inferred")))
    }

    /// Prefect's `FlowRunAction.flow_run`: the bucketing labels first (a
    /// proactive trigger has no event), then the event.
    fn flow_run(&self) -> Result<Uuid, Failed> {
        if let Some(id) = self.triggering_labels.get("prefect.resource.id").and_then(Value::as_str).and_then(|r| id_from_resource_id(r, "prefect.flow-run")) {
            return Ok(id);
        }
        self.triggering_event
            .and_then(|e| id_of_first_resource_of_kind(e, "prefect.flow-run"))
            .ok_or_else(|| Failed("No flow run could be inferred".into()))
    }

    /// Prefect's idempotency key for a run an action starts.
    fn idempotency_key(&self) -> String {
        format!("automation {}, action {}, invocation {}", self.automation_id, self.action_index, self.invocation)
    }

    async fn set_state(&self, db: &Db, state: Value, force: bool) -> Result<Done, Failed> {
        let id = self.flow_run()?;
        let body = serde_json::from_value(json!({"state": state, "force": force})).map_err(|e| Failed(e.to_string()))?;
        let result = crate::commands::flow_runs::set_flow_run_state(db, id, body, API_VERSION).await?;
        let details = serde_json::to_value(&result.outcome.details).unwrap_or(Value::Null);
        if details.get("type").and_then(Value::as_str) != Some("accept_details") {
            let reason = details.get("reason").and_then(Value::as_str).unwrap_or("the transition was not accepted");
            return Err(Failed(format!("Failed to set state: {reason}")));
        }
        Ok(Done { related: vec![target("flow-run", id)], details: Map::from_iter([("status_code".into(), json!(201))]) })
    }

    async fn perform(&self, db: &Db) -> Result<Done, Failed> {
        let ok = |related: Value, status: u16| Done { related: vec![related], details: Map::from_iter([("status_code".into(), json!(status))]) };
        match self.action {
            Action::DoNothing {} => Ok(Done::default()),
            Action::RunDeployment { source, deployment_id, parameters, job_variables, schedule_after } => {
                let id = self.selected_or_inferred(source, *deployment_id, "deployment", "deployment")?;
                let scheduled = Utc::now() + Duration::microseconds((schedule_after * 1_000_000.0) as i64);
                let parameters = super::templates::render_parameters(db, &parameters.clone().unwrap_or_default(), self.automation, self.triggering_event, self.triggering_labels)
                    .await
                    .map_err(Failed)?;
                let body = json!({
                    "state": {"type": "SCHEDULED", "name": "Scheduled", "state_details": {"scheduled_time": crate::time::fmt_ts(scheduled)}},
                    "parameters": parameters,
                    "idempotency_key": self.idempotency_key(),
                    "job_variables": job_variables.clone().unwrap_or_default(),
                });
                let mut body: crate::commands::deployments::DeploymentFlowRunCreate =
                    serde_json::from_value(body).map_err(|e| Failed(format!("Unable to create flow run from deployment: {e}")))?;
                body.created_by = json!({"id": self.automation_id, "type": "AUTOMATION", "display_value": self.automation_name});
                let seed = self.invocation.as_u128();
                let (run_id, _) = crate::commands::deployments::create_flow_run(db, id, body, seed).await?;
                let mut done = ok(target("deployment", id), 201);
                let sql = db.q("SELECT name FROM flow_run WHERE id = $1");
                let name: Option<String> = sqlx::query_scalar(&sql).bind(run_id.to_string()).fetch_optional(db.reader()).await.ok().flatten();
                done.related.push(json!({"prefect.resource.id": format!("prefect.flow-run.{run_id}"), "prefect.resource.role": "flow-run", "prefect.resource.name": name}));
                Ok(done)
            }
            Action::PauseDeployment { source, deployment_id } | Action::ResumeDeployment { source, deployment_id } => {
                let id = self.selected_or_inferred(source, *deployment_id, "deployment", "deployment")?;
                let paused = matches!(self.action, Action::PauseDeployment { .. });
                crate::commands::deployments::update_deployment(db, id, Map::from_iter([("paused".into(), json!(paused))])).await?;
                Ok(ok(target("deployment", id), 204))
            }
            Action::CancelFlowRun {} => self.set_state(db, json!({"type": "CANCELLING", "message": format!("Cancelled by Automation {}", self.automation_id)}), false).await,
            Action::SuspendFlowRun {} => {
                let timeout = crate::time::fmt_ts(Utc::now() + Duration::seconds(3600));
                let state = json!({
                    "type": "PAUSED", "name": "Suspended", "message": format!("Suspended by Automation {}", self.automation_id),
                    "state_details": {"pause_timeout": timeout, "pause_reschedule": true},
                });
                self.set_state(db, state, false).await
            }
            Action::ChangeFlowRunState { name, state, message, force } => {
                let message = message.clone().unwrap_or_else(|| format!("State changed by Automation {}", self.automation_id));
                self.set_state(db, json!({"type": state, "name": name, "message": message}), *force).await
            }
            Action::ResumeFlowRun {} => {
                let id = self.flow_run()?;
                match crate::commands::flow_runs::resume_flow_run(db, id, None, API_VERSION).await? {
                    crate::commands::flow_runs::Resumed::Transition(_) => Ok(ok(target("flow-run", id), 201)),
                    crate::commands::flow_runs::Resumed::NotPaused => Err(Failed("Cannot resume a flow run that is not paused.".into())),
                    crate::commands::flow_runs::Resumed::Refused(_, reason) => Err(Failed(reason)),
                }
            }
            Action::DeleteFlowRun {} => {
                let id = self.flow_run()?;
                crate::commands::flow_runs::delete_flow_run(db, id).await?;
                Ok(ok(target("flow-run", id), 204))
            }
            Action::PauseWorkPool { source, work_pool_id } | Action::ResumeWorkPool { source, work_pool_id } => {
                let id = self.selected_or_inferred(source, *work_pool_id, "work-pool", "work pool")?;
                let paused = matches!(self.action, Action::PauseWorkPool { .. });
                let name = crate::commands::work_pools::pool_name_by_id(db, id).await?.ok_or_else(|| Failed(format!("Work pool {id} not found")))?;
                let body = serde_json::from_value(json!({"is_paused": paused})).map_err(|e| Failed(e.to_string()))?;
                crate::commands::work_pools::update_pool(db, name, body).await?;
                Ok(ok(target("work-pool", id), 204))
            }
            Action::PauseWorkQueue { source, work_queue_id } | Action::ResumeWorkQueue { source, work_queue_id } => {
                let id = self.selected_or_inferred(source, *work_queue_id, "work-queue", "work queue")?;
                let paused = matches!(self.action, Action::PauseWorkQueue { .. });
                let body = crate::commands::work_pools::WorkQueueUpdate { is_paused: Some(paused), ..Default::default() };
                crate::commands::work_pools::update_queue(db, id, body).await?;
                Ok(ok(target("work-queue", id), 204))
            }
            Action::PauseAutomation { source, automation_id } | Action::ResumeAutomation { source, automation_id } => {
                let id = self.selected_or_inferred(source, *automation_id, "automation", "automation")?;
                let enabled = matches!(self.action, Action::ResumeAutomation { .. });
                crate::commands::automations::set_enabled(db, id, enabled).await?;
                Ok(ok(target("automation", id), 204))
            }
            Action::SendNotification { .. } | Action::CallWebhook { .. } => {
                Err(Failed("This server does not send notifications or call webhooks yet (notification blocks run Python code)".into()))
            }
        }
    }

    /// Prefect's action resource: the automation, its trigger type and,
    /// for an event trigger, its posture.
    fn resource(&self) -> Map<String, Value> {
        let mut resource = Map::new();
        resource.insert("prefect.resource.id".into(), json!(format!("prefect.automation.{}", self.automation_id)));
        resource.insert("prefect.resource.name".into(), json!(self.automation_name));
        resource.insert("prefect.trigger-type".into(), json!(self.trigger.kind()));
        if let Trigger::Event(t) = self.trigger {
            resource.insert("prefect.posture".into(), serde_json::to_value(t.posture).unwrap_or(Value::Null));
        }
        resource
    }

    /// Takes the action and returns the two events that report it.
    pub async fn run(&self, db: &Db) -> Vec<ClientEvent> {
        let outcome = self.perform(db).await;
        // Both events carry these; the second adds the outcome's details.
        let base = Map::from_iter([
            ("action_index".to_owned(), json!(self.action_index)),
            ("action_type".to_owned(), json!(self.action.kind())),
            ("invocation".to_owned(), json!(self.invocation.to_string())),
        ]);
        let mut payload = base.clone();
        let (mut related, name) = match outcome {
            Ok(done) => {
                payload.extend(done.details);
                (done.related, "prefect.automation.action.executed")
            }
            Err(Failed(reason)) => {
                tracing::warn!(automation = %self.automation_id, action = self.action_index, %reason, "automation action failed");
                payload.insert("reason".into(), json!(reason));
                (vec![], "prefect.automation.action.failed")
            }
        };
        if let Some(id) = self.automation_triggered_event_id {
            related.push(json!({"prefect.resource.id": format!("prefect.event.{id}"), "prefect.resource.role": "automation-triggered-event"}));
        }
        let triggering = self.triggering_event.and_then(|e| e.get("id")).and_then(Value::as_str).and_then(|id| Uuid::parse_str(id).ok());
        if let Some(id) = triggering {
            related.push(json!({"prefect.resource.id": format!("prefect.event.{id}"), "prefect.resource.role": "triggering-event"}));
        }
        // Follows the triggering event only when it is recent, as Prefect.
        let recent = self.triggering_event.and_then(super::triggers::occurred_of).is_some_and(|at| (self.triggered - at).num_seconds().abs() < 300);
        let related: Vec<Map<String, Value>> = related
            .into_iter()
            .filter_map(|r| match r {
                Value::Object(m) => Some(without_nulls(m)),
                _ => None,
            })
            .collect();
        let triggered_id = Uuid::new_v5(&self.invocation, b"triggered");
        vec![
            ClientEvent {
                occurred: self.triggered,
                event: "prefect.automation.action.triggered".into(),
                resource: self.resource(),
                related: related.clone(),
                payload: base,
                id: triggered_id,
                follows: if recent { triggering } else { None },
            },
            ClientEvent {
                occurred: Utc::now(),
                event: name.into(),
                resource: self.resource(),
                related,
                payload,
                id: Uuid::new_v5(&self.invocation, b"done"),
                follows: Some(triggered_id),
            },
        ]
    }
}

/// Labels are strings: a name Prefect would leave out is dropped, not sent
/// as `null`.
fn without_nulls(mut labels: Map<String, Value>) -> Map<String, Value> {
    labels.retain(|_, v| !v.is_null());
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_resource_of_a_kind_is_the_resource_then_the_related_ones() {
        let run = Uuid::new_v4();
        let dep = Uuid::new_v4();
        let event = json!({
            "resource": {"prefect.resource.id": format!("prefect.flow-run.{run}")},
            "related": [{"prefect.resource.id": "prefect.flow.x"}, {"prefect.resource.id": format!("prefect.deployment.{dep}")}],
        });
        assert_eq!(id_of_first_resource_of_kind(&event, "prefect.flow-run"), Some(run));
        assert_eq!(id_of_first_resource_of_kind(&event, "prefect.deployment"), Some(dep));
        assert_eq!(id_of_first_resource_of_kind(&event, "prefect.work-pool"), None);
        assert_eq!(id_from_resource_id("prefect.flow-run-x.1", "prefect.flow-run"), None);
    }
}
