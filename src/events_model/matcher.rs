//! Whether a live event matches an `EventFilter`, for `/events/out`
//! subscribers (stored events are filtered in SQL by `filter`). Works on
//! the filter's JSON so it accepts exactly what the client sent.

use serde_json::Value;

use crate::time::parse_ts;

/// `fnmatchcase` for `*` (any run) and `?` (any one character); everything
/// else is literal.
pub fn glob(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => Some(a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()),
        _ => None,
    }
}

/// Prefect's label matching: for every label, at least one expected value
/// must match the resource's value, where `!pattern` matches a value that
/// does not match `pattern`; a missing label matches nothing.
pub fn labels_match(labels: &Value, resource: &Value) -> bool {
    let Some(spec) = labels.as_object() else { return true };
    spec.iter().all(|(label, expected)| {
        let Some(expected) = strings(Some(expected)) else { return true };
        let Some(value) = resource.get(label).and_then(Value::as_str) else { return false };
        expected.iter().any(|e| match e.strip_prefix('!') {
            Some(neg) => !glob(neg, value),
            None => glob(e, value),
        })
    })
}

fn resource_filter_matches(f: &Value, resource: &Value) -> bool {
    let id = resource.get("prefect.resource.id").and_then(Value::as_str).unwrap_or_default();
    if let Some(ids) = strings(f.get("id")) {
        if !ids.iter().any(|i| i == id) {
            return false;
        }
    }
    if let Some(prefixes) = strings(f.get("id_prefix")) {
        if !prefixes.iter().any(|p| id.starts_with(p.as_str())) {
            return false;
        }
    }
    f.get("labels").is_none_or(|l| labels_match(l, resource))
}

fn related_filter_matches(f: &Value, related: &[Value]) -> bool {
    let role_of = |r: &Value| r.get("prefect.resource.role").and_then(Value::as_str).unwrap_or_default().to_owned();
    let id_of = |r: &Value| r.get("prefect.resource.id").and_then(Value::as_str).unwrap_or_default().to_owned();
    if let Some(ids) = strings(f.get("id")) {
        if !related.iter().any(|r| ids.contains(&id_of(r))) {
            return false;
        }
    }
    if let Some(roles) = strings(f.get("role")) {
        if !related.iter().any(|r| roles.contains(&role_of(r))) {
            return false;
        }
    }
    if let Some(pairs) = f.get("resources_in_roles").and_then(Value::as_array) {
        for pair in pairs {
            let (Some(id), Some(role)) = (pair.get(0).and_then(Value::as_str), pair.get(1).and_then(Value::as_str)) else { continue };
            if !related.iter().any(|r| id_of(r) == id && role_of(r) == role) {
                return false;
            }
        }
    }
    match f.get("labels") {
        Some(l) if !l.is_null() => related.iter().any(|r| labels_match(l, r)),
        _ => true,
    }
}

/// A filter that is either one object or a list of objects (all must match).
fn each(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(Value::Null) | None => vec![],
        Some(other) => vec![other],
    }
}

fn text_matches(query: &str, event: &Value) -> bool {
    let haystack = event.to_string().to_lowercase();
    query.split_whitespace().all(|term| match term.strip_prefix('-') {
        Some(neg) if !neg.is_empty() => !haystack.contains(&neg.to_lowercase()),
        _ => haystack.contains(&term.trim_matches('"').to_lowercase()),
    })
}

/// Does `event` (a `ReceivedEvent` JSON) match `filter` (an `EventFilter` JSON)?
pub fn matches(filter: &Value, event: &Value) -> bool {
    let occurred = event.get("occurred").and_then(Value::as_str).and_then(parse_ts);
    if let Some(o) = filter.get("occurred") {
        let bound = |k: &str| o.get(k).and_then(Value::as_str).and_then(parse_ts);
        if let (Some(since), Some(at)) = (bound("since"), occurred) {
            if at < since {
                return false;
            }
        }
        if let (Some(until), Some(at)) = (bound("until"), occurred) {
            if at > until {
                return false;
            }
        }
    }
    let name = event.get("event").and_then(Value::as_str).unwrap_or_default();
    if let Some(f) = filter.get("event") {
        if strings(f.get("prefix")).is_some_and(|p| !p.iter().any(|p| name.starts_with(p.as_str()))) {
            return false;
        }
        if strings(f.get("exclude_prefix")).is_some_and(|p| p.iter().any(|p| name.starts_with(p.as_str()))) {
            return false;
        }
        if strings(f.get("name")).is_some_and(|n| !n.iter().any(|n| n == name)) {
            return false;
        }
        if strings(f.get("exclude_name")).is_some_and(|n| n.iter().any(|n| n == name)) {
            return false;
        }
    }
    let resource = event.get("resource").cloned().unwrap_or(Value::Null);
    let related: Vec<Value> = event.get("related").and_then(Value::as_array).cloned().unwrap_or_default();
    if let Some(f) = filter.get("resource").filter(|f| !f.is_null()) {
        if !resource_filter_matches(f, &resource) {
            return false;
        }
    }
    if !each(filter.get("related")).into_iter().all(|f| related_filter_matches(f, &related)) {
        return false;
    }
    let mut all = vec![resource];
    all.extend(related.iter().cloned());
    if !each(filter.get("any_resource")).into_iter().all(|f| all.iter().any(|r| resource_filter_matches(f, r))) {
        return false;
    }
    if let Some(ids) = filter.get("id").and_then(|f| strings(f.get("id"))).filter(|ids| !ids.is_empty()) {
        let id = event.get("id").and_then(Value::as_str).unwrap_or_default();
        if !ids.iter().any(|i| i == id) {
            return false;
        }
    }
    if let Some(q) = filter.get("text").and_then(|t| t.get("query")).and_then(Value::as_str) {
        if !text_matches(q, event) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({
            "occurred": "2026-11-23T07:58:33.000000Z",
            "event": "prefect.flow-run.Completed",
            "resource": {"prefect.resource.id": "prefect.flow-run.abc", "prefect.resource.name": "spirited-oriole"},
            "related": [{"prefect.resource.id": "prefect.flow.f1", "prefect.resource.role": "flow", "prefect.resource.name": "etl"}],
            "payload": {}, "id": "e1", "follows": null, "received": "2026-11-23T07:58:33.100000Z"
        })
    }

    #[test]
    fn globs() {
        assert!(glob("prefect.flow-run.*", "prefect.flow-run.abc"));
        assert!(glob("*oriole", "spirited-oriole"));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("a*c*e", "abcd"));
        assert!(glob("exact", "exact"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
    }

    #[test]
    fn event_name_filters() {
        let e = event();
        assert!(matches(&json!({"event": {"prefix": ["prefect.flow-run."]}}), &e));
        assert!(!matches(&json!({"event": {"prefix": ["prefect.task-run."]}}), &e));
        assert!(matches(&json!({"event": {"name": ["prefect.flow-run.Completed"]}}), &e));
        assert!(!matches(&json!({"event": {"exclude_name": ["prefect.flow-run.Completed"]}}), &e));
        assert!(matches(&json!({"event": {"prefix": null, "name": null}, "id": {"id": []}}), &e));
    }

    #[test]
    fn resource_and_related_filters() {
        let e = event();
        assert!(matches(&json!({"resource": {"id_prefix": ["prefect.flow-run."]}}), &e));
        assert!(matches(&json!({"resource": {"labels": {"prefect.resource.name": "spirited-*"}}}), &e));
        assert!(!matches(&json!({"resource": {"labels": {"prefect.resource.name": "!spirited-*"}}}), &e));
        assert!(matches(&json!({"related": {"role": ["flow"], "labels": {"prefect.resource.name": ["etl", "other"]}}}), &e));
        assert!(!matches(&json!({"related": [{"role": ["flow"]}, {"role": ["deployment"]}]}), &e));
        assert!(matches(&json!({"any_resource": {"id": ["prefect.flow.f1"]}}), &e));
        assert!(matches(&json!({"related": {"resources_in_roles": [["prefect.flow.f1", "flow"]]}}), &e));
    }

    #[test]
    fn time_id_and_text_filters() {
        let e = event();
        assert!(matches(&json!({"occurred": {"since": "2026-11-23T07:00:00Z", "until": "2026-11-23T08:00:00Z"}}), &e));
        assert!(!matches(&json!({"occurred": {"since": "2026-11-23T08:00:00Z"}}), &e));
        assert!(!matches(&json!({"id": {"id": ["other"]}}), &e));
        assert!(matches(&json!({"text": {"query": "oriole -failed"}}), &e));
        assert!(!matches(&json!({"text": {"query": "-oriole"}}), &e));
    }
}
