//! Secret values of block documents, as Prefect treats them: the block
//! schema lists them in `fields.secret_fields` as dotted paths (`password`,
//! `credentials.token`, `headers.*`), reads hide them unless asked with
//! `include_secrets`, and an update that posts the hidden text back keeps
//! the stored secret instead of overwriting it with stars.
//!
//! Prefect works on the "flat" form of the data (`dict_to_flatdict`), whose
//! leaves are the values that are not non-empty objects; these functions
//! walk the nested JSON with the same notion of a leaf.

use serde_json::{Map, Value};

/// What Prefect's `obfuscate(value)` returns for any value.
pub const OBFUSCATED: &str = "********";

/// The schema's `secret_fields`, each split at its dots.
pub fn secret_paths(schema_fields: &Value) -> Vec<Vec<String>> {
    schema_fields
        .get("secret_fields")
        .and_then(Value::as_array)
        .map(|paths| paths.iter().filter_map(Value::as_str).map(|p| p.split('.').map(str::to_owned).collect()).collect())
        .unwrap_or_default()
}

fn is_leaf(v: &Value) -> bool {
    !matches!(v, Value::Object(m) if !m.is_empty())
}

fn at<'a>(data: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let v = data.get(first)?;
    if rest.is_empty() {
        return Some(v);
    }
    at(v.as_object()?, rest)
}

fn at_mut<'a>(data: &'a mut Map<String, Value>, path: &[String]) -> Option<&'a mut Value> {
    let (first, rest) = path.split_first()?;
    let v = data.get_mut(first)?;
    if rest.is_empty() {
        return Some(v);
    }
    at_mut(v.as_object_mut()?, rest)
}

/// Every leaf at or below `v`, with `f` applied in place.
fn each_leaf(v: &mut Value, f: &mut dyn FnMut(&mut Value)) {
    match v {
        Value::Object(m) if !m.is_empty() => m.values_mut().for_each(|item| each_leaf(item, f)),
        leaf => f(leaf),
    }
}

/// Hides every secret of `data` (`BlockDocument.from_orm_model` without
/// `include_secrets`): a path's leaf that is not `null` becomes
/// [`OBFUSCATED`]; a path with a `*` hides every leaf under the part before
/// the `*`.
pub fn obfuscate(data: &mut Map<String, Value>, secret_paths: &[Vec<String>]) {
    for path in secret_paths {
        if let Some(v) = at_mut(data, path).filter(|v| is_leaf(v) && !v.is_null()) {
            *v = Value::String(OBFUSCATED.into());
        } else if let Some(star) = path.iter().position(|p| p == "*") {
            let prefix = &path[..star];
            if prefix.is_empty() {
                data.values_mut().for_each(|v| each_leaf(v, &mut |leaf| *leaf = Value::String(OBFUSCATED.into())));
            } else if let Some(node) = at_mut(data, prefix) {
                each_leaf(node, &mut |leaf| *leaf = Value::String(OBFUSCATED.into()));
            }
        }
    }
}

/// Puts the stored secret back wherever `update` carries the hidden text
/// for it (`update_block_document`): someone posted back what a read gave
/// them, and means to keep the secret, not to store eight stars.
pub fn restore(update: &mut Map<String, Value>, current: &Map<String, Value>, secret_paths: &[Vec<String>]) {
    let hidden = Value::String(OBFUSCATED.into());
    for path in secret_paths {
        let current_secret = at(current, path).filter(|v| is_leaf(v) && !v.is_null());
        if let Some(secret) = current_secret {
            if let Some(v) = at_mut(update, path).filter(|v| is_leaf(v) && **v == hidden) {
                *v = secret.clone();
            }
        } else if let Some(star) = path.iter().position(|p| p == "*") {
            restore_under(update, current, &path[..star], &mut Vec::new(), &hidden);
        }
    }
}

/// Restores each hidden leaf of `update` under `prefix` from the leaf at
/// the same path of `current` (left alone when `current` has none).
fn restore_under(update: &mut Map<String, Value>, current: &Map<String, Value>, prefix: &[String], path: &mut Vec<String>, hidden: &Value) {
    let keys: Vec<String> = update.keys().cloned().collect();
    for key in keys {
        path.push(key.clone());
        let in_scope = prefix.starts_with(path) || path.starts_with(prefix);
        if in_scope {
            let Some(value) = update.get_mut(&key) else { continue };
            match value {
                Value::Object(m) if !m.is_empty() => restore_under(m, current, prefix, path, hidden),
                leaf if path.starts_with(prefix) && *leaf == *hidden => {
                    if let Some(stored) = at(current, path).filter(|v| is_leaf(v)) {
                        *leaf = stored.clone();
                    }
                }
                _ => {}
            }
        }
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn paths(p: &[&str]) -> Vec<Vec<String>> {
        secret_paths(&json!({"secret_fields": p}))
    }

    #[test]
    fn reads_hide_named_and_wildcard_secrets() {
        let mut data = map(json!({
            "user": "ann", "password": "hunter2", "token": null,
            "creds": {"key": "k", "region": "eu"},
            "headers": {"a": "1", "b": {"c": 2}}, "empty": {}
        }));
        obfuscate(&mut data, &paths(&["password", "token", "creds.key", "headers.*", "empty.*", "missing"]));
        assert_eq!(
            Value::Object(data),
            json!({
                "user": "ann", "password": OBFUSCATED, "token": null,
                "creds": {"key": OBFUSCATED, "region": "eu"},
                "headers": {"a": OBFUSCATED, "b": {"c": OBFUSCATED}}, "empty": OBFUSCATED
            })
        );
    }

    #[test]
    fn a_secret_that_is_a_whole_object_is_hidden_only_through_a_wildcard() {
        let mut data = map(json!({"conf": {"x": 1}}));
        obfuscate(&mut data, &paths(&["conf"]));
        assert_eq!(data["conf"], json!({"x": 1}));
    }

    #[test]
    fn posting_back_the_hidden_text_keeps_the_stored_secret() {
        let current = map(json!({"password": "hunter2", "headers": {"a": "1", "b": "2"}}));
        let mut update = map(json!({"password": OBFUSCATED, "headers": {"a": OBFUSCATED, "b": "new"}}));
        restore(&mut update, &current, &paths(&["password", "headers.*"]));
        assert_eq!(Value::Object(update), json!({"password": "hunter2", "headers": {"a": "1", "b": "new"}}));
    }

    #[test]
    fn a_new_secret_value_replaces_the_stored_one() {
        let current = map(json!({"password": "hunter2"}));
        let mut update = map(json!({"password": "s3cret"}));
        restore(&mut update, &current, &paths(&["password"]));
        assert_eq!(update["password"], json!("s3cret"));
    }
}
