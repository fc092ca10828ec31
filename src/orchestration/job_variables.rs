//! Validating job variables against a work pool's base job template, as
//! Prefect's `api/validation.py` does.
//!
//! Job variables are layered: the pool's defaults (the `default` of each
//! property of the template's `variables` schema), then the deployment's,
//! then the flow run's. Where each layer is checked:
//! - a pool's defaults, when its template is set ([`pool_defaults`]): every
//!   default must fit the schema; a default that references a block must
//!   name one that exists (this server has no blocks, so it never does);
//! - a deployment's variables ([`deployment`]): required keys are not
//!   enforced, since a run may still supply them;
//! - a flow run's, on top of its deployment's ([`flow_run`]): the only
//!   place required keys are enforced. A pool default that does not fit
//!   its own schema is dropped there, and then required keys cannot be
//!   checked either (Prefect tolerates old pools with bad defaults).
//!
//! The schemas are pydantic-generated, so they are preprocessed as Prefect
//! does: an optional property with a `type` also accepts `null`, and a
//! tuple's list of `items` becomes `prefixItems`.

use serde_json::{Map, Value};

use super::parameters::{first_failure, validate_document, without_required};

/// Why job variables were refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// jsonschema's first failure, as Prefect words it
    /// (`Validation failed for field 'image'. Failure reason: ...`).
    Invalid(String),
    /// A default references a block document that does not exist (Prefect
    /// answers 404 `Block not found.`).
    BlockNotFound,
}

/// The `variables` schema of a base job template, when it has one worth
/// checking against.
fn variables_schema(template: &Map<String, Value>) -> Option<&Value> {
    template.get("variables").filter(|v| v.as_object().is_some_and(|m| !m.is_empty()))
}

/// The pool's default job variables, resolving block references.
/// `Err` when a reference names a block (none exist here).
fn defaults(schema: &Value) -> Result<Map<String, Value>, Refusal> {
    let mut out = Map::new();
    for (name, attrs) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
        let Some(default) = attrs.get("default") else { continue };
        if let Some(reference) = default.as_object().and_then(|d| d.get("$ref")) {
            // Prefect skips a reference without a block document id and
            // answers 404 for any other (an unknown or malformed id).
            if reference.get("block_document_id").is_some_and(|id| !id.is_null()) {
                return Err(Refusal::BlockNotFound);
            }
            continue;
        }
        out.insert(name.clone(), default.clone());
    }
    Ok(out)
}

/// Prefect's `validate(..., raise_on_error=True)` message for `vars`.
fn check(vars: &Map<String, Value>, schema: &Value, preprocess: bool, ignore_required: bool, allow_none_with_default: bool) -> Result<(), String> {
    let mut schema = if preprocess { preprocessed(schema, allow_none_with_default) } else { schema.clone() };
    if ignore_required {
        schema = without_required(&schema);
    }
    validate_document(&Value::Object(vars.clone()), &schema)
}

/// `validate_job_variable_defaults_for_work_pool`: the defaults of a pool's
/// template, required keys not enforced.
pub fn pool_defaults(template: &Map<String, Value>) -> Result<(), Refusal> {
    let Some(schema) = variables_schema(template) else { return Ok(()) };
    let defaults = defaults(schema)?;
    check(&defaults, schema, true, true, true).map_err(Refusal::Invalid)
}

/// `validate_job_variables_for_deployment`: a deployment's own variables
/// over the pool's defaults, required keys not enforced.
pub fn deployment(template: &Map<String, Value>, job_variables: &Map<String, Value>) -> Result<(), Refusal> {
    if job_variables.is_empty() {
        return Ok(());
    }
    layered(template, &[job_variables], true)
}

/// `validate_job_variables_for_deployment_flow_run`: the run's variables
/// over its deployment's and the pool's defaults, required keys enforced.
pub fn flow_run(template: &Map<String, Value>, deployment: &Map<String, Value>, run: &Map<String, Value>) -> Result<(), Refusal> {
    layered(template, &[deployment, run], false)
}

/// `_validate_work_pool_job_variables` with invalid defaults ignored.
fn layered(template: &Map<String, Value>, layers: &[&Map<String, Value>], ignore_required: bool) -> Result<(), Refusal> {
    let Some(schema) = variables_schema(template) else { return Ok(()) };
    let mut all = Map::new();
    let mut invalid_defaults = false;
    for (name, value) in defaults(schema)? {
        let one = Map::from_iter([(name.clone(), value.clone())]);
        if check(&one, schema, false, true, false).is_err() {
            invalid_defaults = true;
        } else {
            all.insert(name, value);
        }
    }
    for layer in layers {
        all.extend(layer.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    check(&all, schema, true, ignore_required || invalid_defaults, true).map_err(Refusal::Invalid)
}

/// `DeploymentUpdate.check_valid_configuration`, which `PATCH
/// /deployments/{id}` runs when the body names a work pool: the first
/// error, as Python's `repr` of jsonschema's error prints it
/// (`<ValidationError: "'a' is not of type 'integer'">`).
pub fn update_configuration(template: &Map<String, Value>, job_variables: &Map<String, Value>) -> Result<(), String> {
    let Some(schema) = template.get("variables").filter(|v| !v.is_null()) else { return Ok(()) };
    let schema = without_required(&preprocessed(schema, false));
    first_failure(&Value::Object(job_variables.clone()), &schema)
        .map_err(|(_, why)| format!("<ValidationError: {}>", crate::py_repr::str_repr(&why)))
}

/// Prefect's `preprocess_schema`: fixes what pydantic v1 generated for
/// optional fields and tuples, in the properties and the definitions.
pub fn preprocessed(schema: &Value, allow_none_with_default: bool) -> Value {
    let mut schema = schema.clone();
    let required = required_of(&schema);
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        fix_properties(props, &required, allow_none_with_default);
    }
    if let Some(defs) = schema.get_mut("definitions").and_then(Value::as_object_mut) {
        for def in defs.values_mut() {
            let required = required_of(def);
            if let Some(props) = def.get_mut("properties").and_then(Value::as_object_mut) {
                fix_properties(props, &required, allow_none_with_default);
            }
        }
    }
    schema
}

fn required_of(schema: &Value) -> Vec<String> {
    schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect()
}

fn fix_properties(props: &mut Map<String, Value>, required: &[String], allow_none_with_default: bool) {
    for (key, prop) in props.iter_mut() {
        let Some(prop) = prop.as_object_mut() else { continue };
        // `_fix_null_typing`: an optional typed property also takes null.
        let nullable = !required.contains(key)
            && prop.get("type").is_some_and(|t| t != "null")
            && (!prop.contains_key("default") || allow_none_with_default);
        if nullable {
            let ty = prop.remove("type").unwrap_or(Value::Null);
            prop.insert("anyOf".into(), serde_json::json!([{"type": ty}, {"type": "null"}]));
        }
        // `_fix_tuple_items`: a list of items is a tuple.
        if prop.get("items").is_some_and(Value::is_array) && !prop.contains_key("prefixItems") {
            if let Some(items) = prop.remove("items") {
                prop.insert("prefixItems".into(), items);
            }
        }
        let nested_required = required_of(&Value::Object(prop.clone()));
        if let Some(nested) = prop.get_mut("properties").and_then(Value::as_object_mut) {
            fix_properties(nested, &nested_required, allow_none_with_default);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    /// A process-worker-like template: `command` optional, `image`
    /// required, `env` a map of strings, `stream_output` a boolean with a
    /// default.
    fn template() -> Map<String, Value> {
        obj(json!({
            "job_configuration": {"command": "{{ command }}", "image": "{{ image }}"},
            "variables": {
                "type": "object",
                "properties": {
                    "command": {"type": "string", "title": "Command"},
                    "image": {"type": "string", "title": "Image"},
                    "env": {"type": "object", "additionalProperties": {"type": "string"}},
                    "stream_output": {"type": "boolean", "default": true},
                    "retries": {"type": "integer", "default": 3}
                },
                "required": ["image"]
            }
        }))
    }

    #[test]
    fn given_valid_defaults_when_a_pool_is_saved_then_it_passes() {
        assert_eq!(pool_defaults(&template()), Ok(()));
    }

    #[test]
    fn given_a_default_of_the_wrong_type_when_a_pool_is_saved_then_it_is_refused() {
        let mut t = template();
        t["variables"]["properties"]["retries"]["default"] = json!("three");
        assert_eq!(
            pool_defaults(&t),
            Err(Refusal::Invalid("Validation failed for field 'retries'. Failure reason: 'three' is not valid under any of the given schemas".into()))
        );
    }

    #[test]
    fn given_a_default_referencing_a_block_when_a_pool_is_saved_then_the_block_is_not_found() {
        let mut t = template();
        t["variables"]["properties"]["image"]["default"] = json!({"$ref": {"block_document_id": "6b2f6bd8-c8e6-4d16-a4f4-4b1ba27b43e8"}});
        assert_eq!(pool_defaults(&t), Err(Refusal::BlockNotFound));
    }

    #[test]
    fn given_a_template_without_variables_then_anything_goes() {
        let t = obj(json!({"job_configuration": {}, "variables": {}}));
        assert_eq!(pool_defaults(&t), Ok(()));
        assert_eq!(flow_run(&t, &Map::new(), &obj(json!({"anything": 1}))), Ok(()));
    }

    #[test]
    fn given_deployment_variables_without_a_required_key_then_they_pass() {
        assert_eq!(deployment(&template(), &obj(json!({"command": "echo"}))), Ok(()));
    }

    #[test]
    fn given_deployment_variables_of_the_wrong_type_then_they_are_refused_with_the_field() {
        let err = deployment(&template(), &obj(json!({"env": {"A": 1}}))).unwrap_err();
        // (the null fix moves only `type` into an anyOf; `additionalProperties`
        // still applies to each value, as in jsonschema)
        assert_eq!(err, Refusal::Invalid("Validation failed for field 'env.A'. Failure reason: 1 is not of type 'string'".into()));
    }

    #[test]
    fn given_a_run_missing_a_required_key_then_it_is_refused_at_the_root() {
        assert_eq!(
            flow_run(&template(), &obj(json!({"command": "echo"})), &Map::new()),
            Err(Refusal::Invalid("Validation failed. Failure reason: 'image' is a required property".into()))
        );
    }

    #[test]
    fn given_the_run_supplies_the_required_key_then_the_layers_pass() {
        assert_eq!(flow_run(&template(), &obj(json!({"command": "echo"})), &obj(json!({"image": "python:3.12"}))), Ok(()));
    }

    #[test]
    fn given_an_optional_key_set_to_null_then_it_passes() {
        assert_eq!(flow_run(&template(), &Map::new(), &obj(json!({"image": "i", "command": null, "retries": null}))), Ok(()));
    }

    #[test]
    fn given_a_pool_with_an_invalid_default_then_runs_skip_required_keys() {
        // The bad default is dropped, and with it the check of required keys
        let mut t = template();
        t["variables"]["properties"]["retries"]["default"] = json!("three");
        assert_eq!(flow_run(&t, &Map::new(), &Map::new()), Ok(()));
        // but the run's own values are still checked
        assert!(flow_run(&t, &Map::new(), &obj(json!({"stream_output": "yes"}))).is_err());
    }

    #[test]
    fn given_an_update_with_a_bad_variable_then_the_message_is_the_errors_repr() {
        assert_eq!(
            update_configuration(&template(), &obj(json!({"stream_output": "yes"}))),
            Err("<ValidationError: \"'yes' is not of type 'boolean'\">".into())
        );
        assert_eq!(update_configuration(&template(), &obj(json!({"command": "echo"}))), Ok(()));
    }

    #[test]
    fn tuples_become_prefix_items() {
        let s = preprocessed(&json!({"properties": {"t": {"type": "array", "items": [{"type": "string"}]}}, "required": ["t"]}), false);
        assert_eq!(s["properties"]["t"]["prefixItems"], json!([{"type": "string"}]));
        assert!(s["properties"]["t"].get("items").is_none());
    }
}
