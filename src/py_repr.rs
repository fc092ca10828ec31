//! Python's `repr` of decoded JSON, for the messages Prefect builds with
//! `{value!r}` (jsonschema's `'a' is not of type 'integer'`, `A variable
//! with the name 'x' already exists.`).

use serde_json::Value;

/// `repr(value)` of the value `json.loads` gives.
pub fn repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => str_repr(s),
        Value::Array(items) => format!("[{}]", items.iter().map(repr).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => {
            let items: Vec<String> = map.iter().map(|(k, v)| format!("{}: {}", str_repr(k), repr(v))).collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// `repr` of a `str`: single quotes unless the text holds a single quote
/// and no double quote.
pub fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn strings_are_quoted_as_python_quotes_them() {
        assert_eq!(str_repr("abc"), "'abc'");
        assert_eq!(str_repr("it's"), "\"it's\"");
        assert_eq!(str_repr("a\\b'\""), "'a\\\\b\\'\"'");
    }

    #[test]
    fn containers_and_constants_print_as_python_prints_them() {
        assert_eq!(repr(&json!({"a": [1, null, true, "it's"], "b": "x"})), "{'a': [1, None, True, \"it's\"], 'b': 'x'}");
    }
}
