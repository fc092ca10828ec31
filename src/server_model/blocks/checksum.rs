//! Block schema checksums, computed exactly as Prefect's
//! `Block._calculate_schema_checksum`: the client looks a schema up by the
//! checksum it computes locally (`GET /block_schemas/checksum/{checksum}`),
//! so ours must agree byte for byte.
//!
//! The checksum is `sha256:` + the hex SHA-256 of
//! `json.dumps(((fields,), {}), sort_keys=True)`, where `fields` has every
//! `secret_fields` key removed (at any depth) and its `definitions` cut down
//! to the ones that do not describe a block (those are schemas of their own).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// `Block._calculate_schema_checksum(fields)`.
pub fn schema_checksum(fields: &Map<String, Value>) -> String {
    let mut for_checksum = match remove_nested_keys(&Value::Object(fields.clone()), "secret_fields") {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    if let Some(Value::Object(definitions)) = for_checksum.get("definitions").cloned() {
        if !definitions.is_empty() {
            let non_block = non_block_reference_definitions(&Value::Object(for_checksum.clone()), &definitions);
            if non_block.is_empty() {
                for_checksum.remove("definitions");
            } else {
                for_checksum.insert("definitions".into(), Value::Object(non_block));
            }
        }
    }
    // `hash_objects(fields)` dumps `(args, kwargs)`: `[[fields], {}]`.
    let hashed = Value::Array(vec![Value::Array(vec![Value::Object(for_checksum)]), Value::Object(Map::new())]);
    let digest = Sha256::digest(crate::py_json::dumps_sorted(&hashed).as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The `definitions` Prefect keeps with a stored schema: the non-block ones
/// the schema references, and the nested blocks' own (which Prefect puts
/// back on read from the nested schemas). `None` when none are left.
pub fn stored_definitions(fields: &Map<String, Value>, definitions: &Map<String, Value>) -> Option<Map<String, Value>> {
    let non_block = non_block_reference_definitions(&Value::Object(fields.clone()), definitions);
    let kept: Map<String, Value> = definitions
        .iter()
        .filter(|(k, d)| non_block.contains_key(*k) || d.get("block_type_slug").is_some_and(|s| !s.is_null()))
        .map(|(k, d)| (k.clone(), d.clone()))
        .collect();
    (!kept.is_empty()).then_some(kept)
}

/// `remove_nested_keys([key], obj)`: a copy without `key` in any object
/// (lists are left as they are, as Prefect does).
fn remove_nested_keys(v: &Value, key: &str) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().filter(|(k, _)| k.as_str() != key).map(|(k, v)| (k.clone(), remove_nested_keys(v, key))).collect()),
        other => other.clone(),
    }
}

/// `_collect_nested_reference_strings`: every `$ref` value, depth first.
pub fn reference_strings(v: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    collect_refs(v, &mut out);
    out
}

fn collect_refs<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").filter(|r| truthy(r)) {
                out.push(r);
            }
            for item in m.values() {
                collect_refs(item, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_refs(i, out)),
        _ => {}
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Number(n) => n.as_f64() != Some(0.0),
    }
}

/// The definition key a `$ref` string names (`#/definitions/Key`).
pub fn definition_key(reference: &str) -> &str {
    reference.strip_prefix("#/definitions/").unwrap_or(reference)
}

/// `_get_non_block_reference_definitions`: the definitions `object`
/// references (directly or through them) that have no `block_type_slug`.
pub fn non_block_reference_definitions(object: &Value, definitions: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for reference in reference_strings(object) {
        let Some(reference) = reference.as_str() else { continue };
        let key = definition_key(reference);
        // An empty definition (`"JsonValue": {}`) is falsy to Python: skipped.
        let Some(definition) = definitions.get(key).filter(|d| truthy(d)) else { continue };
        if definition.get("block_type_slug").is_none_or(Value::is_null) {
            out.insert(key.to_owned(), definition.clone());
            for (k, v) in non_block_reference_definitions(definition, definitions) {
                out.insert(k, v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    // The expected checksums were computed with Prefect 3.8.8's
    // `Block._calculate_schema_checksum` on the same dictionaries.
    #[test]
    fn checksum_matches_prefects_for_a_flat_schema() {
        let fields = obj(json!({
            "title": "Secret",
            "type": "object",
            "properties": {"value": {"title": "Value", "type": "string", "format": "password", "writeOnly": true}},
            "required": ["value"],
            "block_type_slug": "secret",
            "secret_fields": ["value"],
            "block_schema_references": {},
        }));
        assert_eq!(schema_checksum(&fields), "sha256:5d778750fa4fc7d94560ec7aba0189b719e117fa6da909b3374a6fe3f66e1458");
    }

    #[test]
    fn checksum_keeps_only_non_block_definitions() {
        let fields = obj(json!({
            "title": "Outer",
            "type": "object",
            "properties": {
                "inner": {"$ref": "#/definitions/Inner"},
                "mode": {"$ref": "#/definitions/Mode"},
                "ratio": {"default": 0.5, "type": "number"}
            },
            "definitions": {
                "Inner": {"title": "Inner", "block_type_slug": "inner", "properties": {"x": {"$ref": "#/definitions/Unit"}}},
                "Mode": {"enum": ["a", "b"], "title": "Mode"},
                "Unit": {"enum": ["s"], "title": "Unit"},
                "Unused": {"title": "Unused"}
            },
            "block_schema_references": {"inner": {"block_type_slug": "inner", "block_schema_checksum": "sha256:x"}},
            "secret_fields": ["inner.token"]
        }));
        let kept = non_block_reference_definitions(&Value::Object(fields.clone()), fields["definitions"].as_object().unwrap());
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["Mode", "Unit"]);
        assert_eq!(schema_checksum(&fields), "sha256:5a03a7ca999aba2ae5d5f860a931afb7fa69bd5d26e4dc50b1e362d8208158af");
        let stored = stored_definitions(&fields, fields["definitions"].as_object().unwrap()).unwrap();
        assert_eq!(stored.keys().collect::<Vec<_>>(), ["Inner", "Mode", "Unit"]);
    }

    #[test]
    fn empty_definitions_count_for_nothing() {
        // Prefect 3.8.8's `Secret` schema carries `"JsonValue": {}`, which
        // neither its checksum nor its stored fields keep.
        let fields = obj(json!({
            "properties": {"value": {"anyOf": [{"type": "string"}, {"$ref": "#/definitions/JsonValue"}]}},
            "definitions": {"JsonValue": {}},
            "block_schema_references": {}
        }));
        let mut without = fields.clone();
        without.remove("definitions");
        assert_eq!(schema_checksum(&fields), schema_checksum(&without));
        assert!(stored_definitions(&fields, fields["definitions"].as_object().unwrap()).is_none());
    }
}
