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
    check(value, schema, schema, "", 0)
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

type Failure = (String, String);

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

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn check(value: &Value, schema: &Value, root: &Value, path: &str, depth: usize) -> Result<(), Failure> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let schema = resolve(root, schema);
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        if !any.is_empty() && !any.iter().any(|s| check(value, s, root, path, depth + 1).is_ok()) {
            return Err((path.to_owned(), format!("{} is not valid under any of the given schemas", py_repr(value))));
        }
    }
    for s in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        check(value, s, root, path, depth + 1)?;
    }
    match schema.get("type") {
        Some(Value::String(t)) if !type_ok(value, t) => return Err((path.to_owned(), format!("{} is not of type '{t}'", py_repr(value)))),
        Some(Value::Array(ts)) if !ts.iter().filter_map(Value::as_str).any(|t| type_ok(value, t)) => {
            let names: Vec<String> = ts.iter().map(py_repr).collect();
            return Err((path.to_owned(), format!("{} is not of type {}", py_repr(value), names.join(", "))));
        }
        _ => {}
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            return Err((path.to_owned(), format!("{} is not one of {}", py_repr(value), py_repr(&Value::Array(options.clone())))));
        }
    }
    if let (Some(obj), Some(extra)) = (value.as_object(), schema.get("additionalProperties").filter(|a| a.is_object())) {
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, v) in obj.iter().filter(|(k, _)| !props.is_some_and(|p| p.contains_key(*k))) {
            check(v, extra, root, &join(path, k), depth + 1)?;
        }
    }
    if let (Some(obj), true) = (value.as_object(), schema.get("properties").is_some() || schema.get("required").is_some()) {
        for req in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            if !obj.contains_key(req) {
                return Err((path.to_owned(), format!("'{req}' is a required property")));
            }
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, v) in obj {
                if let Some(sub) = props.get(k) {
                    check(v, sub, root, &join(path, k), depth + 1)?;
                }
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items").filter(|i| i.is_object()), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            check(v, items, root, &join(path, &i.to_string()), depth + 1)?;
        }
    }
    Ok(())
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
    fn a_cyclic_ref_terminates() {
        let cyclic = json!({"$ref": "#/definitions/A", "definitions": {"A": {"$ref": "#/definitions/A"}}});
        assert_eq!(validate(&json!({}), &cyclic), Ok(()));
    }
}
