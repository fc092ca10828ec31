//! Rendering a `run-deployment` action's parameters (Prefect's
//! `RunDeployment.render_parameters`): plain strings holding Jinja are
//! upgraded to hydration placeholders, then hydrated with a context that
//! holds the triggering event, the automation, the firing's labels, and the
//! objects the event names (its flow run, flow, deployment, work pool and
//! work queue) as the API would answer them.

use chrono::Utc;
use serde_json::{json, Map, Value};

use crate::db::{Bind, Db};
use crate::orchestration::hydration::{hydrate, HydrationContext};

/// Prefect's `maybe_template`.
fn maybe_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// Prefect's `_wrap_v1_template`: a lone `{{ expr }}` keeps its type through
/// `tojson`; anything else renders to a string.
fn wrap(template: &str) -> Value {
    let stripped = template.trim();
    if stripped.starts_with("{{") && stripped.ends_with("}}") && stripped.matches("{{").count() == 1 {
        let inner = stripped[2..stripped.len() - 2].trim();
        return json!({"__prefect_kind": "json", "value": {"__prefect_kind": "jinja", "template": format!("{{{{ {inner} | tojson }}}}")}});
    }
    json!({"__prefect_kind": "jinja", "template": template})
}

/// Prefect's `_upgrade_v1_templates`, in place.
pub fn upgrade_v1_templates(parameters: &mut Map<String, Value>) {
    for value in parameters.values_mut() {
        match value {
            Value::Object(o) if o.contains_key("__prefect_kind") => {}
            Value::Object(o) => upgrade_v1_templates(o),
            Value::Array(items) => {
                for item in items.iter_mut() {
                    match item {
                        Value::Object(o) => upgrade_v1_templates(o),
                        Value::String(s) if maybe_template(s) => *item = wrap(s),
                        _ => {}
                    }
                }
            }
            Value::String(s) if maybe_template(s) => *value = wrap(s),
            _ => {}
        }
    }
}

/// The objects of the kinds the templates mention, read for the first
/// resource of each kind in the event.
async fn native_objects(db: &Db, event: &Value, templates: &str) -> Result<Map<String, Value>, sqlx::Error> {
    let mut out = Map::new();
    let mut conn = db.reader().acquire().await?;
    let dialect = db.dialect;
    for (name, kind) in [("flow_run", "flow-run"), ("flow", "flow"), ("deployment", "deployment"), ("work_pool", "work-pool"), ("work_queue", "work-queue")] {
        if !templates.contains(name) {
            continue;
        }
        let Some(id) = super::actions::id_of_first_resource_of_kind(event, &format!("prefect.{kind}")) else { continue };
        let id = id.to_string();
        let found = match name {
            "flow_run" => crate::server_model::flow_runs::read_flow_run(&mut conn, dialect, &id, Utc::now()).await?,
            "flow" => crate::server_model::flows::read_flow(&mut conn, dialect, &id).await?,
            "deployment" => crate::server_model::deployments::read_deployment(&mut conn, dialect, "t.id = $1", &[Bind::Text(id)]).await?,
            "work_pool" => match crate::server_model::work_pools::pools(&mut conn, dialect, "t.id = $1", &[Bind::Text(id)]).await?.pop() {
                Some(p) => Some(crate::server_model::work_pools::pool_json(&mut conn, dialect, p).await?),
                None => None,
            },
            _ => match crate::server_model::work_pools::queues(&mut conn, dialect, "t.id = $1", &[Bind::Text(id)]).await?.pop() {
                Some(q) => Some(crate::server_model::work_pools::queue_json(&mut conn, dialect, q).await?),
                None => None,
            },
        };
        if let Some(found) = found {
            out.insert(name.to_owned(), found);
        }
    }
    Ok(out)
}

/// Prefect's `Resource` models answer `.id`, `.name` and `.role` for their
/// `prefect.resource.*` labels; templates such as `{{ event.resource.id }}`
/// rely on it. The labels stay readable by their full names too.
fn event_for_templates(event: &Value) -> Value {
    fn with_shortcuts(resource: &Value) -> Value {
        let mut r = resource.clone();
        if let Some(o) = r.as_object_mut() {
            for short in ["id", "name", "role"] {
                if let Some(v) = resource.get(format!("prefect.resource.{short}")) {
                    o.entry(short).or_insert_with(|| v.clone());
                }
            }
        }
        r
    }
    let mut e = event.clone();
    if let Some(resource) = event.get("resource") {
        e["resource"] = with_shortcuts(resource);
    }
    if let Some(related) = event.get("related").and_then(Value::as_array) {
        e["related"] = Value::Array(related.iter().map(with_shortcuts).collect());
    }
    e
}

/// Renders `parameters` for a run the action starts. `Err` is the reason
/// the action fails.
pub async fn render_parameters(
    db: &Db,
    parameters: &Map<String, Value>,
    automation: &Value,
    event: Option<&Value>,
    labels: &Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    let mut parameters = parameters.clone();
    upgrade_v1_templates(&mut parameters);
    if !parameters.values().any(crate::orchestration::hydration::needs_hydration) {
        return Ok(parameters);
    }
    let text = serde_json::to_string(&parameters).unwrap_or_default();
    let mut context = Map::from_iter([
        ("automation".to_owned(), automation.clone()),
        ("event".to_owned(), event.map(event_for_templates).unwrap_or(Value::Null)),
        ("labels".to_owned(), Value::Object(labels.clone())),
    ]);
    if let Some(event) = event {
        context.extend(native_objects(db, event, &text).await.map_err(|e| e.to_string())?);
    }
    let workspace_variables = if text.contains("workspace_variable") || text.contains("variables") {
        let mut conn = db.reader().acquire().await.map_err(|e| e.to_string())?;
        crate::commands::variables::values_by_name(&mut conn, db.dialect).await.map_err(|e| e.reason())?
    } else {
        Map::new()
    };
    context.insert("variables".to_owned(), Value::Object(workspace_variables.clone()));
    let ctx = HydrationContext { workspace_variables, jinja_context: context };
    match hydrate(&parameters, &ctx) {
        Ok(Value::Object(rendered)) => Ok(rendered),
        Ok(_) => Ok(Map::new()),
        Err(e) => Err(format!("Template rendering failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_strings_with_jinja_become_placeholders() {
        let mut p = json!({
            "id": "{{ event.resource.id }}",
            "greeting": "Hello {{ flow_run.name }}",
            "plain": "no template",
            "nested": {"list": ["{{ labels.x }}", 3]},
            "kept": {"__prefect_kind": "jinja", "template": "{{ x }}"},
        })
        .as_object()
        .unwrap()
        .clone();
        upgrade_v1_templates(&mut p);
        assert_eq!(p["id"], json!({"__prefect_kind": "json", "value": {"__prefect_kind": "jinja", "template": "{{ event.resource.id | tojson }}"}}));
        assert_eq!(p["greeting"], json!({"__prefect_kind": "jinja", "template": "Hello {{ flow_run.name }}"}));
        assert_eq!(p["plain"], json!("no template"));
        assert_eq!(p["nested"]["list"][0]["__prefect_kind"], json!("json"));
        assert_eq!(p["kept"], json!({"__prefect_kind": "jinja", "template": "{{ x }}"}));
    }

    #[test]
    fn a_lone_expression_keeps_its_type() {
        let mut p = json!({"n": "{{ event.payload.count }}", "s": "n={{ event.payload.count }}"}).as_object().unwrap().clone();
        upgrade_v1_templates(&mut p);
        let ctx = HydrationContext { jinja_context: Map::from_iter([("event".to_owned(), json!({"payload": {"count": 3}}))]), ..Default::default() };
        assert_eq!(hydrate(&p, &ctx).unwrap(), json!({"n": 3, "s": "n=3"}));
    }
}
