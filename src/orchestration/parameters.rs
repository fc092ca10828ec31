//! Validating a flow run's parameters against its deployment's
//! `parameter_openapi_schema` (when `enforce_parameter_schema` is on).
//!
//! Flow parameter schemas are the JSON schemas pydantic generates for a
//! function signature: an object with `properties`, `required`, and
//! `$ref`s into `definitions` / `$defs` for model parameters, `anyOf` for
//! unions and optionals, `allOf` wrappers and `enum`s. This checks that
//! subset (types, required keys, enums, array items, refs, any/all of); other
//! keywords are not enforced. Messages follow Prefect's
//! `Validation failed for field '<path>'. Failure reason: <why>`.

use serde_json::Value;

use crate::py_repr::repr as py_repr;

/// How deep `$ref` chains may go (guards against cyclic schemas).
const MAX_DEPTH: usize = 32;

/// `Ok` when `params` satisfy `schema`, else Prefect's message.
pub fn validate(params: &Value, schema: &Value) -> Result<(), String> {
    first_failure(params, schema).map_err(|(path, why)| {
        let field = if path.is_empty() { "parameters".to_owned() } else { path };
        format!("Validation failed for field '{field}'. Failure reason: {why}")
    })
}

/// `Ok` when `value` satisfies `schema`, else the message of Prefect's
/// `schema_tools.validate(..., raise_on_error=True)`: `Validation failed for
/// field '<path>'. Failure reason: <why>`, or `Validation failed. Failure
/// reason: <why>` when the value itself fails.
pub fn validate_document(value: &Value, schema: &Value) -> Result<(), String> {
    first_failure(value, schema).map_err(|(path, why)| {
        if path.is_empty() {
            format!("Validation failed. Failure reason: {why}")
        } else {
            format!("Validation failed for field '{path}'. Failure reason: {why}")
        }
    })
}

/// [`validate`] with every `required` key removed from the schema, as
/// Prefect checks a deployment's default parameters on update
/// (`ignore_required=True`: defaults may leave parameters to each run).
pub fn validate_ignoring_required(params: &Value, schema: &Value) -> Result<(), String> {
    validate(params, &without_required(schema))
}

/// The first way `value` fails `schema`: the failing field's dotted path
/// (empty for the value itself) and jsonschema's message.
pub(crate) fn first_failure(value: &Value, schema: &Value) -> Result<(), (String, String)> {
    match all_failures(value, schema).into_iter().next() {
        None => Ok(()),
        Some(e) => Err((e.dotted_path(), e.message)),
    }
}

/// One step of a path into a value.
#[derive(Debug, Clone, PartialEq)]
pub enum PathPart {
    Key(String),
    Index(usize),
}

/// One way a value fails a schema, as jsonschema reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaFailure {
    /// Where in the value (empty: the value itself).
    pub path: Vec<PathPart>,
    /// For a `required` failure, the missing property.
    pub missing: Option<String>,
    pub message: String,
}

impl SchemaFailure {
    fn dotted_path(&self) -> String {
        let parts: Vec<String> = self
            .path
            .iter()
            .map(|p| match p {
                PathPart::Key(k) => k.clone(),
                PathPart::Index(i) => i.to_string(),
            })
            .collect();
        parts.join(".")
    }
}

/// Every way `value` fails `schema`, in the order the checks run.
pub fn all_failures(value: &Value, schema: &Value) -> Vec<SchemaFailure> {
    let mut out = Vec::new();
    check(value, schema, schema, &mut Vec::new(), 0, &mut out);
    out
}

/// `schema` without any `required` list, at any depth (Prefect's
/// `ignore_required`).
pub(crate) fn without_required(schema: &Value) -> Value {
    match schema {
        Value::Object(m) => Value::Object(m.iter().filter(|(k, _)| k.as_str() != "required").map(|(k, v)| (k.clone(), without_required(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(without_required).collect()),
        other => other.clone(),
    }
}

fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    let Some(r) = schema.get("$ref").and_then(Value::as_str) else { return schema };
    let mut node = root;
    for part in r.trim_start_matches("#/").split('/') {
        match node.get(part) {
            Some(n) => node = n,
            None => return schema,
        }
    }
    node
}

fn type_ok(value: &Value, ty: &str) -> bool {
    match ty {
        "string" => value.is_string(),
        "integer" => value.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => true,
    }
}

/// Prefect's `build_error_obj` for `/ui/schemas/validate`: the failures
/// as a tree (`{"property"|"index", "errors": [...]}` down to each failing
/// value; a missing property one level below its object), then `valid`.
/// Where a placeholder sits, its error replaces the schema's failures
/// there, and a placeholder without error (an unrendered template) drops
/// them.
pub fn error_tree(failures: &[SchemaFailure], placeholders: &[super::hydration::Placeholder]) -> Value {
    let mut paths: Vec<(Vec<PathPart>, String)> = Vec::new();
    for f in failures {
        if placeholders.iter().any(|p| p.path == f.path) {
            continue;
        }
        let mut path = f.path.clone();
        if let Some(missing) = &f.missing {
            path.push(PathPart::Key(missing.clone()));
        }
        paths.push((path, f.message.clone()));
    }
    for p in placeholders {
        if let Some(error) = &p.error {
            paths.push((p.path.clone(), error.clone()));
        }
    }
    let mut root: Vec<Value> = Vec::new();
    for (path, message) in paths {
        insert_error(&mut root, &path, message);
    }
    let valid = root.is_empty();
    serde_json::json!({"errors": root, "valid": valid})
}

fn insert_error(level: &mut Vec<Value>, path: &[PathPart], message: String) {
    let Some((first, rest)) = path.split_first() else {
        level.push(Value::String(message));
        return;
    };
    let (key, id) = match first {
        PathPart::Key(k) => ("property", Value::String(k.clone())),
        PathPart::Index(i) => ("index", Value::from(*i)),
    };
    if rest.is_empty() {
        level.push(serde_json::json!({key: id, "errors": [message]}));
        return;
    }
    let position = level.iter().position(|e| e.get(key) == Some(&id));
    let idx = match position {
        Some(i) => i,
        None => {
            level.push(serde_json::json!({key: id, "errors": []}));
            level.len() - 1
        }
    };
    if let Some(Value::Array(children)) = level[idx].get_mut("errors") {
        insert_error(children, rest, message);
    }
}

fn fail(out: &mut Vec<SchemaFailure>, path: &[PathPart], message: String) {
    out.push(SchemaFailure { path: path.to_vec(), missing: None, message });
}

/// Checks `value` at `path` against `schema`, adding each failure to `out`.
/// Keywords run in the schema's own order, as jsonschema runs them, so
/// failures come out in the order Prefect reports them.
fn check(value: &Value, schema: &Value, root: &Value, path: &mut Vec<PathPart>, depth: usize, out: &mut Vec<SchemaFailure>) {
    if depth > MAX_DEPTH {
        return;
    }
    let schema = resolve(root, schema);
    let Some(keywords) = schema.as_object() else { return };
    for (keyword, arg) in keywords {
        match keyword.as_str() {
            "anyOf" => any_of(value, arg, root, path, depth, out),
            "allOf" => {
                for s in arg.as_array().into_iter().flatten() {
                    check(value, s, root, path, depth + 1, out);
                }
            }
            "type" => type_of(value, arg, path, out),
            "enum" => {
                if let Some(options) = arg.as_array().filter(|o| !o.contains(value)) {
                    fail(out, path, format!("{} is not one of {}", py_repr(value), py_repr(&Value::Array(options.clone()))));
                }
            }
            "additionalProperties" if arg.is_object() => {
                let props = schema.get("properties").and_then(Value::as_object);
                for (k, v) in value.as_object().into_iter().flatten().filter(|(k, _)| !props.is_some_and(|p| p.contains_key(*k))) {
                    path.push(PathPart::Key(k.clone()));
                    check(v, arg, root, path, depth + 1, out);
                    path.pop();
                }
            }
            "required" => {
                let Some(obj) = value.as_object() else { continue };
                for req in arg.as_array().into_iter().flatten().filter_map(Value::as_str).filter(|r| !obj.contains_key(*r)) {
                    out.push(SchemaFailure { path: path.clone(), missing: Some(req.to_owned()), message: format!("'{req}' is a required property") });
                }
            }
            "properties" => {
                let Some(obj) = value.as_object() else { continue };
                for (k, sub) in arg.as_object().into_iter().flatten() {
                    if let Some(v) = obj.get(k) {
                        path.push(PathPart::Key(k.clone()));
                        check(v, sub, root, path, depth + 1, out);
                        path.pop();
                    }
                }
            }
            "items" if arg.is_object() => {
                for (i, v) in value.as_array().into_iter().flatten().enumerate() {
                    path.push(PathPart::Index(i));
                    check(v, arg, root, path, depth + 1, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
}

fn any_of(value: &Value, options: &Value, root: &Value, path: &[PathPart], depth: usize, out: &mut Vec<SchemaFailure>) {
    let Some(options) = options.as_array().filter(|o| !o.is_empty()) else { return };
    let fits = |s: &Value| {
        let mut scratch = Vec::new();
        check(value, s, root, &mut path.to_vec(), depth + 1, &mut scratch);
        scratch.is_empty()
    };
    if !options.iter().any(fits) {
        fail(out, path, format!("{} is not valid under any of the given schemas", py_repr(value)));
    }
}

fn type_of(value: &Value, arg: &Value, path: &[PathPart], out: &mut Vec<SchemaFailure>) {
    match arg {
        Value::String(t) if !type_ok(value, t) => fail(out, path, format!("{} is not of type '{t}'", py_repr(value))),
        Value::Array(ts) if !ts.iter().filter_map(Value::as_str).any(|t| type_ok(value, t)) => {
            let names: Vec<String> = ts.iter().map(py_repr).collect();
            fail(out, path, format!("{} is not of type {}", py_repr(value), names.join(", ")));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "title": "Parameters", "type": "object",
            "properties": {
                "x": {"title": "x", "position": 0, "type": "integer"},
                "name": {"title": "name", "position": 1, "default": "a", "type": "string"},
                "maybe": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null},
                "color": {"allOf": [{"$ref": "#/definitions/Color"}]},
                "items": {"type": "array", "items": {"type": "number"}},
                "model": {"$ref": "#/definitions/Model"}
            },
            "required": ["x"],
            "definitions": {
                "Color": {"enum": ["red", "blue"], "type": "string"},
                "Model": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
            }
        })
    }

    #[test]
    fn accepts_valid_parameters() {
        let params = json!({"x": 1, "name": "n", "maybe": null, "color": "red", "items": [1, 2.5], "model": {"a": 3}});
        assert_eq!(validate(&params, &schema()), Ok(()));
    }

    #[test]
    fn rejects_a_missing_required_parameter() {
        let err = validate(&json!({"name": "n"}), &schema()).unwrap_err();
        assert_eq!(err, "Validation failed for field 'parameters'. Failure reason: 'x' is a required property");
    }

    #[test]
    fn defaults_checked_on_update_may_leave_required_parameters_out() {
        assert_eq!(validate_ignoring_required(&json!({"name": "n", "model": {}}), &schema()), Ok(()));
        assert!(validate_ignoring_required(&json!({"x": "one"}), &schema()).unwrap_err().contains("'x'"));
    }

    #[test]
    fn rejects_wrong_types_with_the_field_path() {
        let err = validate(&json!({"x": "one"}), &schema()).unwrap_err();
        assert_eq!(err, "Validation failed for field 'x'. Failure reason: 'one' is not of type 'integer'");
        assert!(validate(&json!({"x": 1, "model": {"a": "no"}}), &schema()).unwrap_err().contains("'model.a'"));
        assert!(validate(&json!({"x": 1, "items": [1, "b"]}), &schema()).unwrap_err().contains("'items.1'"));
    }

    #[test]
    fn checks_enums_through_refs_and_unions() {
        assert!(validate(&json!({"x": 1, "color": "green"}), &schema()).unwrap_err().contains("is not one of"));
        assert!(validate(&json!({"x": 1, "maybe": 3}), &schema()).unwrap_err().contains("not valid under any"));
    }

    #[test]
    fn given_several_failures_then_the_ui_gets_them_as_a_tree() {
        let values = json!({"name": 3, "model": {}, "items": [1, "b", "c"]});
        let tree = error_tree(&all_failures(&values, &schema()), &[]);
        assert_eq!(
            tree,
            // In the schema's keyword order: `properties` before `required`.
            json!({"errors": [
                {"property": "name", "errors": ["3 is not of type 'string'"]},
                {"property": "items", "errors": [
                    {"index": 1, "errors": ["'b' is not of type 'number'"]},
                    {"index": 2, "errors": ["'c' is not of type 'number'"]}
                ]},
                {"property": "model", "errors": [{"property": "a", "errors": ["'a' is a required property"]}]},
                {"property": "x", "errors": ["'x' is a required property"]}
            ], "valid": false})
        );
        assert_eq!(error_tree(&all_failures(&json!({"x": 1}), &schema()), &[]), json!({"errors": [], "valid": true}));
    }

    #[test]
    fn given_placeholders_then_their_errors_replace_the_schemas_and_templates_pass() {
        use crate::orchestration::hydration::Placeholder;
        let failures = all_failures(&json!({"x": null, "name": null}), &schema());
        let placeholders = [
            Placeholder { path: vec![PathPart::Key("x".into())], error: Some("Invalid JSON: oops".into()) },
            Placeholder { path: vec![PathPart::Key("name".into())], error: None },
        ];
        assert_eq!(error_tree(&failures, &placeholders), json!({"errors": [{"property": "x", "errors": ["Invalid JSON: oops"]}], "valid": false}));
    }

    #[test]
    fn a_cyclic_ref_terminates() {
        let cyclic = json!({"$ref": "#/definitions/A", "definitions": {"A": {"$ref": "#/definitions/A"}}});
        assert_eq!(validate(&json!({}), &cyclic), Ok(()));
    }
}
