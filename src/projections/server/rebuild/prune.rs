//! Parses only the parts of a JSON document that a reader looks at.
//!
//! Most of a busy log is client task-run events, and the recorder reads a
//! dozen of their hundred-odd keys. Building the whole `serde_json::Value`
//! tree (an allocation per string, map and array) was the largest cost of
//! decoding the log for a replay. [`parse`] builds a tree holding only the
//! keys a [`Keep`] names, skipping the rest without allocating; any code
//! that reads only those keys sees exactly what it would see in the full
//! tree, so the pruned tree can go through the same functions.

use serde::de::{DeserializeSeed, Deserializer, Error, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Number, Value};

/// Which parts of a JSON value to keep.
#[derive(Debug)]
pub enum Keep {
    /// The whole value.
    All,
    /// Of an object, only these keys, each pruned by its own `Keep`. A
    /// value that is not an object is kept whole.
    Keys(&'static [(&'static str, Keep)]),
    /// Of an array, every element, pruned by the `Keep`. A value that is not
    /// an array is kept whole.
    Each(&'static Keep),
}

/// Parses `json`, keeping only what `keep` names.
pub fn parse(json: &str, keep: &Keep) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let value = Pruned(keep).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

struct Pruned<'k>(&'k Keep);

impl<'de> DeserializeSeed<'de> for Pruned<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self.0 {
            Keep::All => Value::deserialize(deserializer),
            _ => deserializer.deserialize_any(self),
        }
    }
}

/// Builds values as `serde_json::Value`'s own visitor does, so that what
/// is kept is identical to the same part of a fully parsed tree.
impl<'de> Visitor<'de> for Pruned<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E: Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E: Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let element = match self.0 {
            Keep::Each(keep) => keep,
            _ => &Keep::All,
        };
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Pruned(element))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        match self.0 {
            Keep::Keys(keys) => {
                while let Some(found) = map.next_key_seed(KeyOf(keys))? {
                    match found {
                        Some((name, keep)) => {
                            let value = map.next_value_seed(Pruned(keep))?;
                            object.insert((*name).to_owned(), value);
                        }
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
            }
            _ => {
                while let Some(key) = map.next_key::<String>()? {
                    let value = map.next_value_seed(Pruned(&Keep::All))?;
                    object.insert(key, value);
                }
            }
        }
        Ok(Value::Object(object))
    }
}

/// Reads an object key and finds it among the kept ones, without
/// allocating for the keys that are skipped.
struct KeyOf(&'static [(&'static str, Keep)]);

impl<'de> DeserializeSeed<'de> for KeyOf {
    type Value = Option<&'static (&'static str, Keep)>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyOf {
    type Value = Option<&'static (&'static str, Keep)>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().find(|(name, _)| *name == v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEEP: Keep = Keep::Keys(&[
        ("a", Keep::All),
        ("b", Keep::Keys(&[("x", Keep::All)])),
        ("list", Keep::Each(&Keep::Keys(&[("id", Keep::All)]))),
    ]);

    #[test]
    fn keeps_only_the_named_keys_at_every_level() {
        let text = r#"{"a": {"deep": [1, 2.5, "s", null, true]}, "b": {"x": 1, "y": {"big": [1, 2, 3]}},
            "list": [{"id": 1, "other": 2}, {"other": 3}], "skipped": {"k": ["v"]}}"#;
        let pruned = parse(text, &KEEP).unwrap();
        assert_eq!(
            pruned,
            json!({"a": {"deep": [1, 2.5, "s", null, true]}, "b": {"x": 1}, "list": [{"id": 1}, {}]})
        );
    }

    #[test]
    fn a_value_of_another_shape_than_expected_is_kept_whole() {
        let text = r#"{"b": [1, {"y": 2}], "list": {"id": 1, "other": 2}, "a": null}"#;
        let pruned = parse(text, &KEEP).unwrap();
        assert_eq!(pruned, json!({"b": [1, {"y": 2}], "list": {"id": 1, "other": 2}, "a": null}));
    }

    #[test]
    fn escaped_keys_and_duplicates_behave_as_in_a_full_parse() {
        // "\u0061" is "a"; a repeated key keeps its last value, as Value does.
        let text = r#"{"\u0061": 1, "b": {"x": 1, "x": 2}, "a": 3}"#;
        let full: Value = serde_json::from_str(text).unwrap();
        let pruned = parse(text, &KEEP).unwrap();
        assert_eq!(pruned["a"], full["a"]);
        assert_eq!(pruned["b"], full["b"]);
        assert_eq!(pruned["a"], json!(3));
    }

    #[test]
    fn invalid_json_is_an_error_as_in_a_full_parse() {
        assert!(parse(r#"{"a": 1"#, &KEEP).is_err());
        assert!(parse(r#"{"skipped": [1,, 2]}"#, &KEEP).is_err());
        assert!(parse(r#"{"a": 1} trailing"#, &KEEP).is_err());
    }
}
