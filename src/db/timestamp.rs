//! Timestamps as Prefect's filters accept them (pydantic's lax datetime
//! parsing: text or Unix time), held in the read models' text form (UTC, six
//! fractional digits, `Z`), and the two ways Prefect writes them back out.
//! Shared by the run filters and the event filters.

use chrono::{DateTime, Timelike, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A datetime as Prefect accepts it (ISO 8601 / RFC 3339 text, a date
/// alone, zone-less text taken as UTC, or Unix seconds / milliseconds), held
/// in the read model's text form: UTC, six fractional digits, `Z`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub String);

impl Timestamp {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn from_datetime(dt: DateTime<Utc>) -> Timestamp {
        Timestamp(format_ts(dt))
    }

    /// Parses what pydantic accepts for a `datetime` field (lax mode).
    pub fn parse(s: &str) -> Option<Timestamp> {
        crate::time::parse_lax_datetime(s).map(Timestamp::from_datetime)
    }

    /// The instant (always available: the text is produced by this module).
    pub fn datetime(&self) -> DateTime<Utc> {
        parse_stored(&self.0).unwrap_or_default()
    }

    fn from_unix(v: f64) -> Option<Timestamp> {
        // pydantic: magnitudes above 2e10 are milliseconds, otherwise seconds.
        let secs = if v.abs() > 2e10 { v / 1000.0 } else { v };
        if !secs.is_finite() {
            return None;
        }
        let micros = (secs * 1_000_000.0).round() as i64;
        DateTime::<Utc>::from_timestamp_micros(micros).map(Timestamp::from_datetime)
    }
}

/// The read model's timestamp text: UTC with exactly six fractional digits.
pub fn format_ts(dt: DateTime<Utc>) -> String {
    dt.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// How pydantic writes a UTC datetime in JSON (`model_dump(mode="json")`):
/// `Z`, and fractional digits only when the microseconds are not zero.
pub fn pydantic_ts(dt: DateTime<Utc>) -> String {
    if dt.nanosecond() / 1000 == 0 {
        dt.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        dt.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }
}

/// Python's `datetime.isoformat()` of a UTC datetime (`+00:00`).
pub fn python_isoformat(dt: DateTime<Utc>) -> String {
    if dt.nanosecond() / 1000 == 0 {
        dt.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        dt.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }
}

/// Parses a stored (or any RFC 3339) timestamp.
pub fn parse_stored(s: &str) -> Option<DateTime<Utc>> {
    match DateTime::parse_from_rfc3339(s) {
        Ok(dt) => Some(dt.with_timezone(&Utc)),
        Err(_) => crate::time::parse_lax_datetime(s),
    }
}

/// A stored timestamp text rewritten the way Prefect's API returns it;
/// text that does not parse is returned as is.
pub fn stored_to_pydantic(s: &str) -> String {
    parse_stored(s).map(pydantic_ts).unwrap_or_else(|| s.to_owned())
}


impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a datetime (ISO 8601 text or Unix time)")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Timestamp, E> {
                if let Ok(v) = s.trim().parse::<f64>() {
                    return Timestamp::from_unix(v).ok_or_else(|| E::custom("Input should be a valid datetime"));
                }
                Timestamp::parse(s).ok_or_else(|| E::custom(format!("Input should be a valid datetime, got {s:?}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Timestamp::from_unix(v as f64).ok_or_else(|| E::custom("Input should be a valid datetime"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                Timestamp::from_unix(v as f64).ok_or_else(|| E::custom("Input should be a valid datetime"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Timestamp, E> {
                Timestamp::from_unix(v).ok_or_else(|| E::custom("Input should be a valid datetime"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Written as pydantic writes it (`2024-05-01T00:00:00Z`), so a filter
/// serialised into a page token looks like Prefect's.
impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&pydantic_ts(self.datetime()))
    }
}
