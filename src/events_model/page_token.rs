//! Prefect's stateless page token for `GET /events/filter/next`
//! (`prefect/server/events/storage/__init__.py` and `api/events.py`).
//!
//! The token is `base64(json.dumps({"filter", "count", "page_size",
//! "offset"}))`, where `filter` is the validated filter (its `occurred`
//! window resolved, so later pages see the same window) and `count` the
//! total from the first page (not recounted). The next-page URL carries it
//! base64-encoded once more: `{base_url}api/events/filter/next?page-token=
//! base64(token)`. Both encodings and the JSON layout are byte-for-byte what
//! Python writes; decoding is as lenient as Python's `b64decode`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::filter::EventFilter;

/// Why a page token cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageTokenError {
    /// Undecodable (not base64, not UTF-8, empty, or not JSON): Prefect answers 403.
    #[error("Unable to parse page token")]
    Invalid,
    /// Decodes to JSON that is not a page (a missing key, a filter that does
    /// not validate): Prefect fails with an unhandled error (500).
    #[error("malformed page token: {0}")]
    Malformed(String),
}

/// A decoded page token: the next page is `page_size` events from `offset`.
#[derive(Debug, Clone, PartialEq)]
pub struct PageToken {
    pub filter: EventFilter,
    pub count: i64,
    pub page_size: i64,
    pub offset: i64,
}

impl PageToken {
    /// The token for the page after this one (`None` on the last page).
    pub fn next_token(&self, now: DateTime<Utc>) -> Option<String> {
        to_page_token(&self.filter, self.count, self.page_size, self.offset, now)
    }
}

/// Prefect's `to_page_token`: the token for the page after the one at
/// `current_offset`, or `None` when that was the last. The filter is stored
/// with its `occurred` defaults resolved against `now`.
pub fn to_page_token(filter: &EventFilter, count: i64, page_size: i64, current_offset: i64, now: DateTime<Utc>) -> Option<String> {
    if current_offset + page_size >= count {
        return None;
    }
    let filter = serde_json::to_value(filter.resolved(now)).unwrap_or(Value::Null);
    let mut m = serde_json::Map::new();
    m.insert("filter".into(), filter);
    m.insert("count".into(), count.into());
    m.insert("page_size".into(), page_size.into());
    m.insert("offset".into(), (current_offset + page_size).into());
    Some(b64encode(crate::py_json::dumps(&Value::Object(m)).as_bytes()))
}

/// Prefect's `generate_next_page_link`: `base_url` is the server's root URL
/// with a trailing slash (Starlette's `request.base_url`).
pub fn next_page_url(base_url: &str, token: &str) -> String {
    format!("{base_url}api/events/filter/next?page-token={}", b64encode(token.as_bytes()))
}

/// Decodes the `page-token` query value (Prefect's `verified_page_token`
/// then `from_page_token`).
pub fn decode_page_token(param: &str) -> Result<PageToken, PageTokenError> {
    // A `+` arrives as a space once the query string is form-decoded (the
    // URL is not percent-encoded); Python would drop it, we restore it.
    let param = param.replace(' ', "+");
    let outer = py_b64decode(param.as_bytes()).ok_or(PageTokenError::Invalid)?;
    let token = String::from_utf8(outer).map_err(|_| PageTokenError::Invalid)?;
    if token.is_empty() || !token.is_ascii() {
        return Err(PageTokenError::Invalid);
    }
    let raw = py_b64decode(token.as_bytes()).ok_or(PageTokenError::Invalid)?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| PageTokenError::Invalid)?;
    let field = |k: &str| v.get(k).ok_or_else(|| PageTokenError::Malformed(format!("missing {k:?}")));
    let int = |k: &str| field(k).and_then(|x| x.as_i64().ok_or_else(|| PageTokenError::Malformed(format!("{k:?} is not an integer"))));
    let filter: EventFilter = serde_json::from_value(field("filter")?.clone()).map_err(|e| PageTokenError::Malformed(e.to_string()))?;
    Ok(PageToken { filter, count: int("count")?, page_size: int("page_size")?, offset: int("offset")? })
}

// ------------------------------------------------- Python compatibility ---

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (Python's `b64encode`).
pub fn b64encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| ALPHABET[((n >> shift) & 63) as usize] as char;
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

/// Python's `base64.b64decode(s)` (non-strict `binascii.a2b_base64`):
/// characters outside the alphabet are skipped, decoding stops at a
/// complete pad, and a dangling quad is an error (`None`).
pub fn py_b64decode(data: &[u8]) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let mut quad_pos = 0u8;
    let mut left: u8 = 0;
    let mut pads = 0u8;
    for &c in data {
        if c == b'=' {
            if quad_pos >= 2 {
                pads += 1;
                if quad_pos + pads >= 4 {
                    return Some(out);
                }
            }
            continue;
        }
        let Some(v) = value(c) else { continue };
        pads = 0;
        match quad_pos {
            0 => {
                left = v;
                quad_pos = 1;
            }
            1 => {
                out.push((left << 2) | (v >> 4));
                left = v & 0x0f;
                quad_pos = 2;
            }
            2 => {
                out.push((left << 4) | (v >> 2));
                left = v & 0x03;
                quad_pos = 3;
            }
            _ => {
                out.push((left << 6) | v);
                left = 0;
                quad_pos = 0;
            }
        }
    }
    if quad_pos == 0 {
        Some(out)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-05-03T10:30:15.123456Z").unwrap().with_timezone(&Utc)
    }

    /// The token Prefect 3.8.8 produces for this filter (see the module docs).
    const PREFECT_TOKEN: &str = "eyJmaWx0ZXIiOiB7Im9jY3VycmVkIjogeyJzaW5jZSI6ICIyMDI0LTA1LTAxVDA1OjAwOjAwWiIsICJ1bnRpbCI6ICIyMDI0LTA1LTA0VDAwOjAwOjAwWiJ9LCAiZXZlbnQiOiBudWxsLCAicmVzb3VyY2UiOiBudWxsLCAicmVsYXRlZCI6IG51bGwsICJhbnlfcmVzb3VyY2UiOiBudWxsLCAiaWQiOiB7ImlkIjogbnVsbH0sICJ0ZXh0IjogeyJxdWVyeSI6ICJoXHUwMGU5bGxvIn0sICJvcmRlciI6ICJERVNDIn0sICJjb3VudCI6IDEwMCwgInBhZ2Vfc2l6ZSI6IDUwLCAib2Zmc2V0IjogNTB9";

    fn filter() -> EventFilter {
        serde_json::from_value(
            json!({"occurred": {"since": "2024-05-01T05:00:00Z", "until": "2024-05-04T00:00:00Z"}, "text": {"query": "héllo"}}),
        )
        .unwrap()
    }

    #[test]
    fn tokens_are_byte_identical_to_prefects() {
        assert_eq!(to_page_token(&filter(), 100, 50, 0, now()).as_deref(), Some(PREFECT_TOKEN));
        assert_eq!(to_page_token(&filter(), 100, 50, 50, now()), None);
        assert_eq!(to_page_token(&filter(), 0, 50, 0, now()), None);
    }

    #[test]
    fn round_trips_through_the_url() {
        let url = next_page_url("http://127.0.0.1:4200/", PREFECT_TOKEN);
        let param = url.split_once("?page-token=").unwrap().1;
        assert!(url.starts_with("http://127.0.0.1:4200/api/events/filter/next?page-token="));
        let page = decode_page_token(param).unwrap();
        assert_eq!(page.filter, filter());
        assert_eq!((page.count, page.page_size, page.offset), (100, 50, 50));
        assert_eq!(page.next_token(now()), None);
        // A '+' form-decoded into a space still decodes.
        let spaced = b64encode(b"\xfb\xef\xbe{}");
        assert!(spaced.contains('+'));
        assert_eq!(py_b64decode(spaced.replace('+', " ").replace(' ', "+").as_bytes()).unwrap(), b"\xfb\xef\xbe{}");
    }

    #[test]
    fn defaults_are_resolved_into_the_token() {
        let token = to_page_token(&EventFilter::default(), 10, 5, 0, now()).unwrap();
        let json = String::from_utf8(py_b64decode(token.as_bytes()).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"filter": {"occurred": {"since": "2023-11-05T00:00:00Z", "until": "2024-05-03T10:30:15.123456Z"}, "event": null, "resource": null, "related": null, "any_resource": null, "id": {"id": null}, "text": null, "order": "DESC"}, "count": 10, "page_size": 5, "offset": 5}"#
        );
    }

    #[test]
    fn bad_tokens() {
        assert_eq!(decode_page_token(""), Err(PageTokenError::Invalid));
        assert_eq!(decode_page_token("!!!"), Err(PageTokenError::Invalid));
        assert_eq!(decode_page_token("abcde"), Err(PageTokenError::Invalid));
        assert_eq!(decode_page_token(&b64encode(b"not base64 ~")), Err(PageTokenError::Invalid));
        assert_eq!(decode_page_token(&b64encode(b64encode(b"{nope").as_bytes())), Err(PageTokenError::Invalid));
        assert!(matches!(decode_page_token(&b64encode(b64encode(b"{}").as_bytes())), Err(PageTokenError::Malformed(_))));
        let bad_filter = b64encode(br#"{"filter": {"x": 1}, "count": 1, "page_size": 1, "offset": 1}"#);
        assert!(matches!(decode_page_token(&b64encode(bad_filter.as_bytes())), Err(PageTokenError::Malformed(_))));
    }

    #[test]
    fn base64_is_as_lenient_as_pythons() {
        assert_eq!(b64encode(b""), "");
        assert_eq!(b64encode(b"f"), "Zg==");
        assert_eq!(b64encode(b"fo"), "Zm8=");
        assert_eq!(b64encode(b"foo"), "Zm9v");
        assert_eq!(py_b64decode(b"Zg==").unwrap(), b"f");
        assert_eq!(py_b64decode(b"Zm8=trailing").unwrap(), b"fo");
        assert_eq!(py_b64decode(b"Z m\n9v").unwrap(), b"foo");
        assert_eq!(py_b64decode(b"Zm9").map(|_| ()), None); // Incorrect padding
        assert_eq!(py_b64decode(b"Z").map(|_| ()), None);
        assert_eq!(py_b64decode(b"Zg=x=").unwrap(), b"f\x0c");
        assert_eq!(py_b64decode(b"Zg=").map(|_| ()), None);
        assert_eq!(py_b64decode(b"=Zg==").unwrap(), b"f");
    }
}
