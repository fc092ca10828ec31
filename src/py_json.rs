//! Python's `json.dumps` output, byte for byte, for the values Prefect
//! hashes or encodes with it (page tokens, block schema checksums): `", "`
//! and `": "` separators, non-ASCII escaped (`ensure_ascii`), floats as
//! Python's `repr` writes them, and optionally `sort_keys=True`.

use serde_json::{Number, Value};

/// `json.dumps(v)`: keys in their stored order.
pub fn dumps(v: &Value) -> String {
    let mut out = String::new();
    write(v, false, &mut out);
    out
}

/// `json.dumps(v, sort_keys=True)`. Python sorts keys by code point, which
/// is the byte order of their UTF-8.
pub fn dumps_sorted(v: &Value) -> String {
    let mut out = String::new();
    write(v, true, &mut out);
    out
}

fn write(v: &Value, sort_keys: bool, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write(item, sort_keys, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            if sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_str(k, out);
                out.push_str(": ");
                write(item, sort_keys, out);
            }
            out.push('}');
        }
    }
}

fn write_number(n: &Number, out: &mut String) {
    match n.as_f64() {
        Some(f) if n.is_f64() => out.push_str(&float_repr(f)),
        _ => out.push_str(&n.to_string()),
    }
}

/// `repr(float)`: the shortest digits that round-trip, in positional form
/// when the decimal exponent is in `-4 <= e < 16` (with `.0` added to whole
/// numbers), otherwise as `d.ddde±XX`.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    // Rust's `{:e}` gives the same shortest round-trip digits: `1.5e16`.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if !(-4..16).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    let body = if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{int}.{frac}")
    };
    format!("{sign}{body}")
}

fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dumps_matches_python() {
        let v = json!({"a": [1, "é\u{1F600}\"\\\n\u{1}\u{7f}"], "b": {}, "c": [], "d": null, "e": true});
        assert_eq!(dumps(&v), r#"{"a": [1, "\u00e9\ud83d\ude00\"\\\n\u0001\u007f"], "b": {}, "c": [], "d": null, "e": true}"#);
    }

    #[test]
    fn sort_keys_orders_nested_objects_by_code_point() {
        let v = json!({"b": {"z": 1, "a": 2}, "a": [{"y": 1, "x": 2}], "B": 0, "é": 1});
        assert_eq!(dumps_sorted(&v), r#"{"B": 0, "a": [{"x": 2, "y": 1}], "b": {"a": 2, "z": 1}, "\u00e9": 1}"#);
    }

    #[test]
    fn floats_print_as_pythons_repr() {
        // Each pair was printed by CPython 3.11's `repr`.
        let cases = [
            (10.0, "10.0"),
            (0.5, "0.5"),
            (-2.25, "-2.25"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345e16, "1.2345e+16"),
            (123456789.125, "123456789.125"),
            (-0.0, "-0.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e300, "1e+300"),
        ];
        for (f, want) in cases {
            assert_eq!(float_repr(f), want, "{f:e}");
        }
        assert_eq!(dumps(&json!([1, 1.0, -3])), "[1, 1.0, -3]");
    }
}
