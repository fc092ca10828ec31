//! Prefect's parameter hydration (`prefect.utilities.schema_tools.hydration`),
//! as the server runs it: `hydrate(..., raise_on_error=True,
//! render_jinja=True, render_workspace_variables=True)`.
//!
//! A value `{"__prefect_kind": kind, ...}` anywhere in the parameters is
//! replaced by what its kind makes of it:
//! - `none`: the hydrated `value` (a pass-through);
//! - `json`: `value` parsed as JSON when it is a string (hydrated first when
//!   it is an object), else `value` itself;
//! - `jinja`: `template` checked against Prefect's user-template limits and
//!   rendered with an empty context;
//! - `workspace_variable`: the value of the variable named `variable_name`;
//! - any other kind: its `value` key (not hydrated), or `null`.
//!
//! A `json` or `workspace_variable` object without its key is removed from
//! the object or list holding it (Prefect's `RemoveValue`, which helps the
//! UI). Errors carry Prefect's messages. Pure: the caller reads the
//! workspace's variables.

use super::parameters::PathPart;
use serde_json::{Map, Value};

/// Prefect's `MAX_TEMPLATE_RANGE`: the largest `range(...)` a template may build.
pub const MAX_TEMPLATE_RANGE: usize = 100;
/// Prefect's `MAX_LOOP_COUNT`: `for` loops allowed in one template.
pub const MAX_LOOP_COUNT: usize = 10;
/// Prefect's `MAX_NESTED_LOOP_DEPTH`.
pub const MAX_NESTED_LOOP_DEPTH: usize = 2;

/// Why hydration failed; `Display` is Prefect's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HydrationError {
    /// `KeyNotFound`: `value` (kind `none`) or `template` (kind `jinja`) is missing.
    #[error("Missing '{0}' key in __prefect object")]
    KeyNotFound(&'static str),
    /// `InvalidJSON`, with the parser's complaint.
    #[error("Invalid JSON{}", suffix(.0))]
    InvalidJson(Option<String>),
    /// `InvalidJinja`: a syntax error, a template over the loop limits, or a
    /// rendering failure.
    #[error("Invalid jinja{}", suffix(.0))]
    InvalidJinja(Option<String>),
    /// `WorkspaceVariableNotFound`.
    #[error("Variable '{0}' not found in workspace.")]
    WorkspaceVariableNotFound(String),
}

fn suffix(detail: &Option<String>) -> String {
    match detail {
        Some(d) if !d.is_empty() => format!(": {d}"),
        _ => String::new(),
    }
}

/// What hydration reads: the workspace's variables by name, and what Jinja
/// templates see (empty on the API; an automation's action gives them the
/// triggering event and the objects it names).
#[derive(Debug, Clone, Default)]
pub struct HydrationContext {
    pub workspace_variables: Map<String, Value>,
    pub jinja_context: Map<String, Value>,
}

/// A hydrated value, or Prefect's `RemoveValue` marker.
enum Hydrated {
    Value(Value),
    Remove,
}

/// Whether `v` holds anything hydration would change (a `__prefect_kind`
/// object somewhere); when it does not, hydration is the identity.
pub fn needs_hydration(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.contains_key("__prefect_kind") || m.values().any(needs_hydration),
        Value::Array(a) => a.iter().any(needs_hydration),
        _ => false,
    }
}

/// Prefect's `hydrate(obj, ctx)` for a parameters object: a removed
/// top-level value becomes `{}`.
pub fn hydrate(obj: &Map<String, Value>, ctx: &HydrationContext) -> Result<Value, HydrationError> {
    let obj = Value::Object(obj.clone());
    Ok(match hydrate_value(&obj, ctx)? {
        Hydrated::Value(v) => v,
        Hydrated::Remove => Value::Object(Map::new()),
    })
}

/// A spot hydration left for the UI's schema validation (Prefect's
/// placeholders): a value that failed to hydrate (`error`), or a jinja
/// template left unrendered (no error; its value is not checked).
#[derive(Debug, Clone, PartialEq)]
pub struct Placeholder {
    pub path: Vec<PathPart>,
    pub error: Option<String>,
}

/// Prefect's non-raising `hydrate(values, ctx)` with `render_jinja=False`,
/// as `/ui/schemas/validate` runs it: every hydratable value is hydrated
/// where it can be; each one that cannot, and each jinja template, becomes
/// `null` and a [`Placeholder`] at its path.
pub fn hydrate_for_validation(obj: &Map<String, Value>, ctx: &HydrationContext) -> (Value, Vec<Placeholder>) {
    let mut placeholders = Vec::new();
    let value = lenient(&Value::Object(obj.clone()), ctx, &mut Vec::new(), &mut placeholders).unwrap_or_else(|| Value::Object(Map::new()));
    (value, placeholders)
}

/// `None` when the value is removed.
fn lenient(v: &Value, ctx: &HydrationContext, path: &mut Vec<PathPart>, out: &mut Vec<Placeholder>) -> Option<Value> {
    match v {
        Value::Object(m) if m.contains_key("__prefect_kind") => {
            let outcome = if m.get("__prefect_kind").and_then(Value::as_str) == Some("jinja") {
                match m.get("template").and_then(Value::as_str) {
                    None => Err(HydrationError::KeyNotFound("template")),
                    Some(t) => validate_user_template(t).map(|_| None).map_err(|e| HydrationError::InvalidJinja(Some(e))),
                }
            } else {
                call_handler(m, ctx).map(Some)
            };
            match outcome {
                Ok(Some(Hydrated::Value(v))) => Some(v),
                Ok(Some(Hydrated::Remove)) => None,
                Ok(None) => {
                    out.push(Placeholder { path: path.clone(), error: None });
                    Some(Value::Null)
                }
                Err(e) => {
                    out.push(Placeholder { path: path.clone(), error: Some(e.to_string()) });
                    Some(Value::Null)
                }
            }
        }
        Value::Object(m) => {
            let mut kept = Map::with_capacity(m.len());
            for (k, v) in m {
                path.push(PathPart::Key(k.clone()));
                if let Some(h) = lenient(v, ctx, path, out) {
                    kept.insert(k.clone(), h);
                }
                path.pop();
            }
            Some(Value::Object(kept))
        }
        Value::Array(a) => {
            let mut kept = Vec::with_capacity(a.len());
            for (i, v) in a.iter().enumerate() {
                path.push(PathPart::Index(i));
                if let Some(h) = lenient(v, ctx, path, out) {
                    kept.push(h);
                }
                path.pop();
            }
            Some(Value::Array(kept))
        }
        other => Some(other.clone()),
    }
}

fn hydrate_value(obj: &Value, ctx: &HydrationContext) -> Result<Hydrated, HydrationError> {
    match obj {
        Value::Object(m) if m.contains_key("__prefect_kind") => call_handler(m, ctx),
        Value::Object(m) => {
            let mut out = Map::with_capacity(m.len());
            for (k, v) in m {
                if let Hydrated::Value(h) = hydrate_value(v, ctx)? {
                    out.insert(k.clone(), h);
                }
            }
            Ok(Hydrated::Value(Value::Object(out)))
        }
        Value::Array(a) => {
            let mut out = Vec::with_capacity(a.len());
            for v in a {
                if let Hydrated::Value(h) = hydrate_value(v, ctx)? {
                    out.push(h);
                }
            }
            Ok(Hydrated::Value(Value::Array(out)))
        }
        other => Ok(Hydrated::Value(other.clone())),
    }
}

fn call_handler(obj: &Map<String, Value>, ctx: &HydrationContext) -> Result<Hydrated, HydrationError> {
    match obj.get("__prefect_kind").and_then(Value::as_str) {
        Some("none") => match obj.get("value") {
            Some(v) => hydrate_value(v, ctx),
            None => Err(HydrationError::KeyNotFound("value")),
        },
        Some("json") => json_handler(obj, ctx),
        Some("jinja") => jinja_handler(obj, ctx),
        Some("workspace_variable") => workspace_variable_handler(obj, ctx),
        // An unknown kind passes its `value` through as it is.
        _ => Ok(Hydrated::Value(obj.get("value").cloned().unwrap_or(Value::Null))),
    }
}

/// The handler's input key: hydrated first when it is an object (a
/// `RemoveValue` from there is passed up as it is).
fn dehydrated(v: &Value, ctx: &HydrationContext) -> Result<Hydrated, HydrationError> {
    match v {
        Value::Object(_) => hydrate_value(v, ctx),
        other => Ok(Hydrated::Value(other.clone())),
    }
}

fn json_handler(obj: &Map<String, Value>, ctx: &HydrationContext) -> Result<Hydrated, HydrationError> {
    let Some(value) = obj.get("value") else {
        return Ok(Hydrated::Remove);
    };
    let Hydrated::Value(v) = dehydrated(value, ctx)? else {
        return Ok(Hydrated::Remove);
    };
    match v {
        Value::String(s) => serde_json::from_str::<Value>(&s)
            .map(Hydrated::Value)
            .map_err(|e| HydrationError::InvalidJson(Some(python_json_error(&s, &e)))),
        other => Ok(Hydrated::Value(other)),
    }
}

fn jinja_handler(obj: &Map<String, Value>, ctx: &HydrationContext) -> Result<Hydrated, HydrationError> {
    let Some(template) = obj.get("template") else {
        return Err(HydrationError::KeyNotFound("template"));
    };
    let Hydrated::Value(t) = dehydrated(template, ctx)? else {
        return Ok(Hydrated::Remove);
    };
    let text = match t {
        Value::String(s) => s,
        other => other.to_string(),
    };
    validate_user_template(&text).map_err(|d| HydrationError::InvalidJinja(Some(d)))?;
    render_user_template_with(&text, &ctx.jinja_context).map(|s| Hydrated::Value(Value::String(s))).map_err(|d| HydrationError::InvalidJinja(Some(d)))
}

fn workspace_variable_handler(obj: &Map<String, Value>, ctx: &HydrationContext) -> Result<Hydrated, HydrationError> {
    let Some(name) = obj.get("variable_name") else {
        return Ok(Hydrated::Remove);
    };
    let Hydrated::Value(name) = dehydrated(name, ctx)? else {
        return Ok(Hydrated::Remove);
    };
    match name.as_str().and_then(|n| ctx.workspace_variables.get(n)) {
        Some(v) => Ok(Hydrated::Value(v.clone())),
        None => Err(HydrationError::WorkspaceVariableNotFound(python_str(&name))),
    }
}

/// Python's `str()` of a JSON value, as Prefect formats it into messages.
fn python_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        other => other.to_string(),
    }
}

// ------------------------------------------------------------ jinja ---

fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    env.add_function("range", checked_range);
    env
}

/// Prefect's sandboxed `range`: at most [`MAX_TEMPLATE_RANGE`] items.
fn checked_range(lower: isize, upper: Option<isize>, step: Option<isize>) -> Result<minijinja::Value, minijinja::Error> {
    let (start, stop) = match upper {
        Some(u) => (lower, u),
        None => (0, lower),
    };
    let step = step.unwrap_or(1);
    let len = match step {
        0 => 0,
        s if s > 0 && stop > start => ((stop - start) as usize).div_ceil(s as usize),
        s if s < 0 && start > stop => ((start - stop) as usize).div_ceil(s.unsigned_abs()),
        _ => 0,
    };
    if len > MAX_TEMPLATE_RANGE {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("OverflowError('Range too big. The sandbox blocks ranges larger than MAX_TEMPLATE_RANGE={MAX_TEMPLATE_RANGE}.')"),
        ));
    }
    minijinja::functions::range(lower, upper, step.into())
}

fn error_detail(e: &minijinja::Error) -> String {
    e.detail().map(str::to_owned).unwrap_or_else(|| e.kind().to_string())
}

/// Prefect's `validate_user_template`: the template parses, has at most
/// [`MAX_LOOP_COUNT`] `for` loops, nested at most [`MAX_NESTED_LOOP_DEPTH`]
/// deep. The error is the detail Prefect puts after "Invalid jinja: ".
pub fn validate_user_template(template: &str) -> Result<(), String> {
    let env = environment();
    env.template_from_str(template).map_err(|e| error_detail(&e))?;
    let (count, depth) = for_loops(template).map_err(|e| error_detail(&e))?;
    if count > MAX_LOOP_COUNT {
        return Err(format!("Contains {count} for loops. Templates can contain no more than {MAX_LOOP_COUNT} for loops."));
    }
    if depth > MAX_NESTED_LOOP_DEPTH {
        return Err(format!(
            "Contains nested for loops at a depth of {depth}. Templates can nest for loops no more than {MAX_NESTED_LOOP_DEPTH} loops deep."
        ));
    }
    Ok(())
}

/// What `/templates/validate` reports of a template that Prefect's
/// `validate_user_template` refuses: the line (for a syntax error) and the
/// message. `None` when it is valid.
pub fn template_error(template: &str) -> Option<(Option<usize>, String)> {
    let env = environment();
    if let Err(e) = env.template_from_str(template) {
        return Some((e.line(), error_detail(&e)));
    }
    validate_user_template(template).err().map(|m| (None, m))
}

/// How many `for` loops a template has and how deep they nest, from its
/// tokens (so loops in comments, raw blocks or strings do not count).
fn for_loops(template: &str) -> Result<(usize, usize), minijinja::Error> {
    use minijinja::machinery::{tokenize, Token, WhitespaceConfig};
    let (mut count, mut depth, mut max_depth) = (0usize, 0usize, 0usize);
    let mut after_block_start = false;
    for token in tokenize(template, false, Default::default(), WhitespaceConfig::default()) {
        let (token, _) = token?;
        match token {
            Token::Ident("for") if after_block_start => {
                count += 1;
                depth += 1;
                max_depth = max_depth.max(depth);
            }
            Token::Ident("endfor") if after_block_start => depth = depth.saturating_sub(1),
            _ => {}
        }
        after_block_start = matches!(token, Token::BlockStart);
    }
    Ok((count, max_depth))
}

/// Prefect's `render_user_template_sync` with an empty context: text with
/// no `{{` or `{%` is returned as it is. The error is Prefect's
/// "Failed to render template due to the following error: ...".
pub fn render_user_template(template: &str) -> Result<String, String> {
    render_user_template_with(template, &Map::new())
}

/// [`render_user_template`] with `context` as the template's variables.
pub fn render_user_template_with(template: &str, context: &Map<String, Value>) -> Result<String, String> {
    if !(template.contains("{{") || template.contains("{%")) {
        return Ok(template.to_owned());
    }
    let env = environment();
    env.render_str(template, minijinja::Value::from_serialize(context))
        .map_err(|e| format!("Failed to render template due to the following error: {}", error_detail(&e)))
}

// ------------------------------------------------------------- json ---

/// `serde_json`'s complaint in the words of Python's `json.loads`
/// (`Expecting value: line 1 column 1 (char 0)`), for the common cases.
fn python_json_error(s: &str, e: &serde_json::Error) -> String {
    let text = e.to_string();
    let (line, mut column) = (e.line(), e.column());
    let what = if text.starts_with("EOF while parsing") {
        // Python points one past the last character.
        column += 1;
        if text.contains("a string") {
            "Unterminated string starting at"
        } else if text.contains("an object") {
            "Expecting property name enclosed in double quotes"
        } else {
            "Expecting value"
        }
    } else if text.starts_with("expected value") || text.starts_with("expected ident") || text.starts_with("invalid number") {
        "Expecting value"
    } else if text.starts_with("trailing characters") {
        "Extra data"
    } else if text.starts_with("expected `:`") {
        "Expecting ':' delimiter"
    } else if text.starts_with("expected `,` or") {
        "Expecting ',' delimiter"
    } else if text.starts_with("key must be a string") || text.starts_with("trailing comma") {
        "Expecting property name enclosed in double quotes"
    } else {
        return text;
    };
    // Python's `char` is the 0-based character offset of (line, column).
    let line_start: usize = s.split('\n').take(line.saturating_sub(1)).map(|l| l.chars().count() + 1).sum();
    let mut column = column.max(1);
    let chars: Vec<char> = s.chars().collect();
    if what == "Expecting value" {
        // serde stops inside a bad literal (`nope`, `-x`); Python points at its start.
        while column > 1 && chars.get(line_start + column - 2).is_some_and(|c| c.is_ascii_alphabetic() || *c == '-') {
            column -= 1;
        }
    } else if what.starts_with("Unterminated string") {
        // Python points at the opening quote: the last unescaped `"`.
        let opening = (0..chars.len()).rev().find(|&i| chars[i] == '"' && chars[..i].iter().rev().take_while(|c| **c == '\\').count() % 2 == 0);
        if let Some(i) = opening {
            let line_no = chars[..i].iter().filter(|c| **c == '\n').count() + 1;
            let start = chars[..i].iter().rposition(|c| *c == '\n').map_or(0, |p| p + 1);
            return format!("{what}: line {line_no} column {} (char {i})", i - start + 1);
        }
    }
    format!("{what}: line {} column {column} (char {})", line.max(1), line_start + column - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> HydrationContext {
        HydrationContext { workspace_variables: Map::from_iter([("my_var".to_owned(), json!({"a": [1, 2]})), ("greeting".to_owned(), json!("hi"))]), ..Default::default() }
    }

    fn run(params: Value) -> Result<Value, HydrationError> {
        hydrate(params.as_object().expect("an object"), &ctx())
    }

    #[test]
    fn given_plain_parameters_when_hydrated_then_they_are_unchanged() {
        let p = json!({"x": 1, "y": [1, "two", {"z": null}]});
        assert!(!needs_hydration(&p));
        assert_eq!(run(p.clone()).unwrap(), p);
    }

    #[test]
    fn given_kind_none_when_hydrated_then_its_value_is_hydrated_through() {
        let p = json!({"x": {"__prefect_kind": "none", "value": {"__prefect_kind": "json", "value": "[1, 2]"}}});
        assert!(needs_hydration(&p));
        assert_eq!(run(p).unwrap(), json!({"x": [1, 2]}));
    }

    #[test]
    fn given_kind_none_without_value_when_hydrated_then_missing_value_key() {
        let err = run(json!({"x": {"__prefect_kind": "none"}})).unwrap_err();
        assert_eq!(err.to_string(), "Missing 'value' key in __prefect object");
    }

    #[test]
    fn given_kind_json_when_hydrated_then_a_string_is_parsed_and_anything_else_kept() {
        let p = json!({
            "s": {"__prefect_kind": "json", "value": "{\"a\": 1, \"b\": [true, null]}"},
            "n": {"__prefect_kind": "json", "value": 5},
            "o": {"__prefect_kind": "json", "value": {"k": {"__prefect_kind": "workspace_variable", "variable_name": "greeting"}}},
        });
        assert_eq!(run(p).unwrap(), json!({"s": {"a": 1, "b": [true, null]}, "n": 5, "o": {"k": "hi"}}));
    }

    #[test]
    fn given_invalid_json_when_hydrated_then_pythons_decode_message() {
        let err = run(json!({"x": {"__prefect_kind": "json", "value": "not json"}})).unwrap_err();
        assert_eq!(err.to_string(), "Invalid JSON: Expecting value: line 1 column 1 (char 0)");
        let err = run(json!({"x": {"__prefect_kind": "json", "value": "[1] 2"}})).unwrap_err();
        assert_eq!(err.to_string(), "Invalid JSON: Extra data: line 1 column 5 (char 4)");
        let err = run(json!({"x": {"__prefect_kind": "json", "value": ""}})).unwrap_err();
        assert_eq!(err.to_string(), "Invalid JSON: Expecting value: line 1 column 1 (char 0)");
        let err = run(json!({"x": {"__prefect_kind": "json", "value": "{\"a\" 1}"}})).unwrap_err();
        assert_eq!(err.to_string(), "Invalid JSON: Expecting ':' delimiter: line 1 column 6 (char 5)");
        // Each as Python's json.loads words it.
        for (text, msg) in [
            ("[1, nope]", "Expecting value: line 1 column 5 (char 4)"),
            ("{\"a\": 1,}", "Expecting property name enclosed in double quotes: line 1 column 9 (char 8)"),
            ("{\"a\": ", "Expecting value: line 1 column 7 (char 6)"),
            ("\"abc", "Unterminated string starting at: line 1 column 1 (char 0)"),
            ("-x", "Expecting value: line 1 column 1 (char 0)"),
            ("nul", "Expecting value: line 1 column 1 (char 0)"),
            ("{bad", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        ] {
            let err = run(json!({"x": {"__prefect_kind": "json", "value": text}})).unwrap_err();
            assert_eq!(err.to_string(), format!("Invalid JSON: {msg}"), "{text}");
        }
    }

    #[test]
    fn given_json_or_variable_without_their_key_when_hydrated_then_the_value_is_removed() {
        let p = json!({
            "a": {"__prefect_kind": "json"},
            "b": [1, {"__prefect_kind": "workspace_variable"}, 2],
            "c": {"d": {"__prefect_kind": "json"}},
            "e": {"__prefect_kind": "none", "value": {"__prefect_kind": "json"}},
        });
        assert_eq!(run(p).unwrap(), json!({"b": [1, 2], "c": {}}));
    }

    #[test]
    fn given_a_jinja_template_when_hydrated_then_it_is_rendered_with_an_empty_context() {
        let p = json!({
            "t": {"__prefect_kind": "jinja", "template": "{{ 1 + 2 }}-{% for i in range(3) %}{{ i }}{% endfor %}"},
            "u": {"__prefect_kind": "jinja", "template": "hello {{ missing.attr }}!"},
            "plain": {"__prefect_kind": "jinja", "template": "no template here"},
        });
        assert_eq!(run(p).unwrap(), json!({"t": "3-012", "u": "hello !", "plain": "no template here"}));
    }

    #[test]
    fn given_jinja_without_template_when_hydrated_then_missing_template_key() {
        let err = run(json!({"x": {"__prefect_kind": "jinja"}})).unwrap_err();
        assert_eq!(err, HydrationError::KeyNotFound("template"));
        assert_eq!(err.to_string(), "Missing 'template' key in __prefect object");
    }

    #[test]
    fn given_invalid_jinja_when_hydrated_then_invalid_jinja() {
        let err = run(json!({"x": {"__prefect_kind": "jinja", "template": "{{ 1 + }}"}})).unwrap_err();
        assert!(err.to_string().starts_with("Invalid jinja: "), "{err}");
    }

    #[test]
    fn given_too_many_or_too_deep_loops_when_hydrated_then_prefects_limits_apply() {
        let eleven = "{% for i in [1] %}{% endfor %}".repeat(11);
        let err = run(json!({"x": {"__prefect_kind": "jinja", "template": eleven}})).unwrap_err();
        assert_eq!(err.to_string(), "Invalid jinja: Contains 11 for loops. Templates can contain no more than 10 for loops.");
        let ten = "{% for i in [1] %}{% endfor %}".repeat(10);
        assert!(run(json!({"x": {"__prefect_kind": "jinja", "template": ten}})).is_ok());
        let deep = "{% for a in [1] %}{% for b in [1] %}{% for c in [1] %}x{% endfor %}{% endfor %}{% endfor %}";
        let err = run(json!({"x": {"__prefect_kind": "jinja", "template": deep}})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid jinja: Contains nested for loops at a depth of 3. Templates can nest for loops no more than 2 loops deep."
        );
        let commented = "{# {% for a in x %} #}{% raw %}{% for b in y %}{% endraw %}";
        assert_eq!(run(json!({"x": {"__prefect_kind": "jinja", "template": commented}})).unwrap(), json!({"x": "{% for b in y %}"}));
    }

    #[test]
    fn given_a_large_range_when_rendered_then_the_sandbox_refuses_it() {
        let err = run(json!({"x": {"__prefect_kind": "jinja", "template": "{% for i in range(101) %}{% endfor %}"}})).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("Invalid jinja: Failed to render template due to the following error: "), "{msg}");
        assert_eq!(
            msg,
            "Invalid jinja: Failed to render template due to the following error: OverflowError('Range too big. The sandbox blocks ranges larger than MAX_TEMPLATE_RANGE=100.')"
        );
        assert!(run(json!({"x": {"__prefect_kind": "jinja", "template": "{{ range(100) | length }}"}})).is_ok());
    }

    #[test]
    fn given_a_workspace_variable_when_hydrated_then_its_value_is_used() {
        let p = json!({"v": {"__prefect_kind": "workspace_variable", "variable_name": "my_var"}, "w": ["x", {"__prefect_kind": "workspace_variable", "variable_name": "greeting"}]});
        assert_eq!(run(p).unwrap(), json!({"v": {"a": [1, 2]}, "w": ["x", "hi"]}));
    }

    #[test]
    fn given_an_unknown_variable_when_hydrated_then_not_found_in_workspace() {
        let err = run(json!({"v": {"__prefect_kind": "workspace_variable", "variable_name": "nope"}})).unwrap_err();
        assert_eq!(err.to_string(), "Variable 'nope' not found in workspace.");
    }

    #[test]
    fn given_an_unknown_kind_when_hydrated_then_its_value_key_unhydrated_or_null() {
        let p = json!({
            "a": {"__prefect_kind": "mystery", "value": {"__prefect_kind": "json", "value": "1"}},
            "b": {"__prefect_kind": "mystery"},
            "c": {"__prefect_kind": null, "value": 3},
        });
        assert_eq!(run(p).unwrap(), json!({"a": {"__prefect_kind": "json", "value": "1"}, "b": null, "c": 3}));
    }

    #[test]
    fn given_a_removed_top_level_when_hydrated_then_an_empty_object() {
        assert_eq!(run(json!({"__prefect_kind": "json"})).unwrap(), json!({}));
    }
}
