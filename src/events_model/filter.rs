//! Prefect 3's `EventFilter` (`prefect/server/events/filters.py`), compiled
//! to SQL over the events read model (projections/events/schema.sql), for
//! `POST /events/filter`, `GET /events/filter/next`, `/events/count-by` and
//! the `/events/out` backfill.
//!
//! Semantics follow Prefect's SQL (`build_where_clauses` and
//! `storage/database.py`), not its in-memory `includes`:
//!
//! * Every sub-filter and criterion is optional; an absent or empty list
//!   criterion (`"id": []`) constrains nothing, as in Prefect (`if self.id:`).
//! * Lists of `related` / `any_resource` filters are AND-ed; each filter is
//!   one `EXISTS` over `event_resources` (scoped by `occurred`), so all of its
//!   criteria must hold for the same resource row.
//! * Label values are Prefect globs: `*` any run, `?` one character, a
//!   leading `!` negates; several values for a label are OR-ed; a missing
//!   label matches nothing (negated or not); an empty list matches nothing.
//!   `prefect.resource.id` is matched against the unpacked id column, and
//!   `prefect.resource.role` (related / any-resource only) exactly.
//!   Matching is case-sensitive on both backends (Postgres `LIKE`, SQLite
//!   `GLOB`), like Prefect on Postgres and its live matcher.
//! * `resource.distinct` keeps the first event per resource id in the
//!   requested order (the latest for `DESC`), as Prefect's `row_number()`.
//! * `text` is Prefect's query syntax over `event || resource || related ||
//!   payload` (the JSON text), case-insensitive substring matching.
//!
//! Unlike Prefect, `null` is accepted for every field (meaning "default").
//! The builders return [`Sql`] with `$n` placeholders; callers rewrite it with
//! [`Dialect::rewrite`] and bind [`Sql::binds`] in order. No literal `$` ever
//! appears in the SQL text (JSON paths are bound).


use chrono::{DateTime, Duration, Utc};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

pub use crate::db::text_search::{parse_text_search_query, TextSearchQuery};
pub use crate::db::timestamp::{format_ts, parse_stored, pydantic_ts, python_isoformat, stored_to_pydantic, Timestamp};

use crate::db::sql::{Bind, Dialect, Sql};

/// Why a request cannot be answered. Prefect answers both with HTTP 422.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventFilterError {
    /// A malformed or out-of-range body; `loc` is pydantic-style
    /// (e.g. `["body", "limit"]`). Prefect's detail is a list of errors.
    #[error("{msg} (at {})", loc.join("."))]
    Invalid { loc: Vec<String>, msg: String },
    /// Prefect's `InvalidEventCountParameters` (too many time buckets):
    /// answered `422 {"detail": "<message>"}` with a plain string detail.
    #[error("{0}")]
    InvalidCountParameters(String),
}

impl EventFilterError {
    pub fn invalid(loc: &[&str], msg: impl Into<String>) -> Self {
        EventFilterError::Invalid { loc: loc.iter().map(|s| (*s).to_owned()).collect(), msg: msg.into() }
    }

    /// The `detail` of Prefect's 422 response for this error.
    pub fn detail(&self) -> Value {
        match self {
            EventFilterError::Invalid { loc, msg } => {
                serde_json::json!([{"type": "value_error", "loc": loc, "msg": msg, "input": null}])
            }
            EventFilterError::InvalidCountParameters(msg) => Value::String(msg.clone()),
        }
    }
}

/// Prefect's `INTERACTIVE_PAGE_SIZE`: the default and maximum `limit` of `POST /events/filter`.
pub const INTERACTIVE_PAGE_SIZE: i64 = 50;

/// How far back `occurred.since` reaches by default.
pub const DEFAULT_LOOKBACK_DAYS: i64 = 180;

// ------------------------------------------------------------- the model ---

/// Prefect's `EventFilter`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    #[serde(default, deserialize_with = "null_default")]
    pub occurred: EventOccurredFilter,
    #[serde(default)]
    pub event: Option<EventNameFilter>,
    #[serde(default)]
    pub resource: Option<EventResourceFilter>,
    #[serde(default)]
    pub related: Option<OneOrMany<EventRelatedFilter>>,
    #[serde(default)]
    pub any_resource: Option<OneOrMany<EventAnyResourceFilter>>,
    #[serde(default, deserialize_with = "null_default")]
    pub id: EventIdFilter,
    #[serde(default)]
    pub text: Option<EventTextFilter>,
    #[serde(default, deserialize_with = "null_default")]
    pub order: EventOrder,
}

/// `occurred`: inclusive bounds; absent bounds default (see [`EventOccurredFilter::bounds`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventOccurredFilter {
    #[serde(default)]
    pub since: Option<Timestamp>,
    #[serde(default)]
    pub until: Option<Timestamp>,
}

/// `event`: on the event name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventNameFilter {
    #[serde(default)]
    pub prefix: Option<Vec<String>>,
    #[serde(default)]
    pub exclude_prefix: Option<Vec<String>>,
    #[serde(default)]
    pub name: Option<Vec<String>>,
    #[serde(default)]
    pub exclude_name: Option<Vec<String>>,
}

/// `resource`: on the event's primary resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventResourceFilter {
    #[serde(default)]
    pub id: Option<Vec<String>>,
    #[serde(default)]
    pub id_prefix: Option<Vec<String>>,
    #[serde(default)]
    pub labels: Option<ResourceSpecification>,
    #[serde(default, deserialize_with = "null_default")]
    pub distinct: bool,
}

/// `related`: on the event's related resources.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRelatedFilter {
    #[serde(default)]
    pub id: Option<Vec<String>>,
    #[serde(default)]
    pub role: Option<Vec<String>>,
    #[serde(default)]
    pub resources_in_roles: Option<Vec<(String, String)>>,
    #[serde(default)]
    pub labels: Option<ResourceSpecification>,
}

/// `any_resource`: on the primary or any related resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventAnyResourceFilter {
    #[serde(default)]
    pub id: Option<Vec<String>>,
    #[serde(default)]
    pub id_prefix: Option<Vec<String>>,
    #[serde(default)]
    pub labels: Option<ResourceSpecification>,
}

/// `id`: on the event id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventIdFilter {
    #[serde(default)]
    pub id: Option<Vec<uuid::Uuid>>,
}

/// `text`: Prefect's text search (`query` is required, at most 200 characters).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventTextFilter {
    pub query: String,
}

impl<'de> Deserialize<'de> for EventTextFilter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            query: String,
        }
        let raw = Raw::deserialize(d)?;
        if raw.query.chars().count() > 200 {
            return Err(D::Error::custom("String should have at most 200 characters"));
        }
        Ok(EventTextFilter { query: raw.query })
    }
}

/// `order` of the returned events (by `occurred`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventOrder {
    #[serde(rename = "ASC")]
    Asc,
    #[default]
    #[serde(rename = "DESC")]
    Desc,
}

impl EventOrder {
    pub fn sql(self) -> &'static str {
        match self {
            EventOrder::Asc => "ASC",
            EventOrder::Desc => "DESC",
        }
    }
}

/// A filter or a list of filters (for `related` and `any_resource`).
#[derive(Debug, Clone, PartialEq)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(t) => std::slice::from_ref(t),
            OneOrMany::Many(v) => v,
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        if v.is_array() {
            serde_json::from_value(v).map(OneOrMany::Many).map_err(D::Error::custom)
        } else {
            serde_json::from_value(v).map(OneOrMany::One).map_err(D::Error::custom)
        }
    }
}

impl<T: Serialize> Serialize for OneOrMany<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            OneOrMany::One(t) => t.serialize(s),
            OneOrMany::Many(v) => v.serialize(s),
        }
    }
}

/// One label's expected value(s): a string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelValue {
    One(String),
    Many(Vec<String>),
}

/// Prefect's `ResourceSpecification`: label → glob(s), in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceSpecification(pub Vec<(String, LabelValue)>);

impl ResourceSpecification {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Prefect's `ResourceSpecification.pop`: the values of `key` (a string is
    /// a one-item list; an empty string or list is no values), removing it.
    fn pop(&mut self, key: &str) -> Vec<String> {
        let Some(at) = self.0.iter().position(|(k, _)| k == key) else { return Vec::new() };
        match self.0.remove(at).1 {
            LabelValue::One(s) if s.is_empty() => Vec::new(),
            LabelValue::One(s) => vec![s],
            LabelValue::Many(v) => v,
        }
    }

    /// Prefect's `ResourceSpecification.items`: a string is a one-item list
    /// (even when empty).
    fn items(&self) -> impl Iterator<Item = (&str, Vec<&str>)> {
        self.0.iter().map(|(k, v)| {
            let vals = match v {
                LabelValue::One(s) => vec![s.as_str()],
                LabelValue::Many(v) => v.iter().map(String::as_str).collect(),
            };
            (k.as_str(), vals)
        })
    }
}

impl<'de> Deserialize<'de> for ResourceSpecification {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let Value::Object(map) = v else {
            return Err(D::Error::custom("Input should be a valid dictionary"));
        };
        let mut out: Vec<(String, LabelValue)> = Vec::with_capacity(map.len());
        for (k, v) in map {
            let value = match v {
                Value::String(s) => LabelValue::One(s),
                Value::Array(items) => {
                    let mut vals = Vec::with_capacity(items.len());
                    for item in items {
                        match item {
                            Value::String(s) => vals.push(s),
                            _ => return Err(D::Error::custom(format!("labels.{k}: Input should be a valid string"))),
                        }
                    }
                    LabelValue::Many(vals)
                }
                _ => return Err(D::Error::custom(format!("labels.{k}: Input should be a valid string or a list of strings"))),
            };
            match out.iter_mut().find(|(existing, _)| *existing == k) {
                Some(slot) => slot.1 = value,
                None => out.push((k, value)),
            }
        }
        Ok(ResourceSpecification(out))
    }
}

impl Serialize for ResourceSpecification {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            match v {
                LabelValue::One(one) => m.serialize_entry(k, one)?,
                LabelValue::Many(many) => m.serialize_entry(k, many)?,
            }
        }
        m.end()
    }
}

/// `null` means the default (Prefect would reject it; we are lenient).
fn null_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Start of `now`'s UTC day, minus 180 days: Prefect's default `occurred.since`.
pub fn default_since(now: DateTime<Utc>) -> DateTime<Utc> {
    let start_of_day = now.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    start_of_day - Duration::days(DEFAULT_LOOKBACK_DAYS)
}

impl EventOccurredFilter {
    /// The inclusive bounds, with Prefect's defaults (since: start of today
    /// UTC minus 180 days; until: `now`).
    pub fn bounds(&self, now: DateTime<Utc>) -> (Timestamp, Timestamp) {
        let since = self.since.clone().unwrap_or_else(|| Timestamp::from_datetime(default_since(now)));
        let until = self.until.clone().unwrap_or_else(|| Timestamp::from_datetime(now));
        (since, until)
    }
}

impl EventFilter {
    /// Parses a filter (a JSON object; `null` is the default filter).
    pub fn from_value(v: Value) -> Result<EventFilter, EventFilterError> {
        if v.is_null() {
            return Ok(EventFilter::default());
        }
        serde_json::from_value(v).map_err(|e| EventFilterError::invalid(&["body", "filter"], e.to_string()))
    }

    /// This filter with its `occurred` defaults filled in from `now`, as
    /// Prefect's model holds them once validated (and embeds them in the
    /// page token, so later pages see the same window).
    pub fn resolved(&self, now: DateTime<Utc>) -> EventFilter {
        let (since, until) = self.occurred.bounds(now);
        let mut f = self.clone();
        f.occurred = EventOccurredFilter { since: Some(since), until: Some(until) };
        f
    }

    /// Whether `resource.distinct` is set.
    pub fn is_distinct(&self) -> bool {
        self.resource.as_ref().is_some_and(|r| r.distinct)
    }

    /// Prefect's `logical_limit`: asking for N ids returns at most N rows.
    pub fn logical_limit(&self) -> Option<i64> {
        match self.id.id.as_deref() {
            Some(ids) if !ids.is_empty() => Some(ids.len() as i64),
            _ => None,
        }
    }
}

/// The body of `POST /events/filter`: `{"filter": EventFilter?, "limit": int}`
/// (limit 0..=50, default 50; other keys are ignored, as FastAPI does).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadEventsBody {
    pub filter: EventFilter,
    pub limit: i64,
}

impl ReadEventsBody {
    /// Parses a request body; an empty body is all defaults.
    pub fn from_json(bytes: &[u8]) -> Result<ReadEventsBody, EventFilterError> {
        let body = parse_body_object(bytes)?;
        let filter = EventFilter::from_value(body.get("filter").cloned().unwrap_or(Value::Null))?;
        let limit = match body.get("limit") {
            None => INTERACTIVE_PAGE_SIZE,
            Some(v) => lax_int(v).ok_or_else(|| EventFilterError::invalid(&["body", "limit"], "Input should be a valid integer"))?,
        };
        if limit < 0 {
            return Err(EventFilterError::invalid(&["body", "limit"], "Input should be greater than or equal to 0"));
        }
        if limit > INTERACTIVE_PAGE_SIZE {
            return Err(EventFilterError::invalid(
                &["body", "limit"],
                format!("Input should be less than or equal to {INTERACTIVE_PAGE_SIZE}"),
            ));
        }
        Ok(ReadEventsBody { filter, limit })
    }
}

/// A JSON object body (empty body: an empty object).
pub(crate) fn parse_body_object(bytes: &[u8]) -> Result<serde_json::Map<String, Value>, EventFilterError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(EventFilterError::invalid(&["body"], "Input should be a valid dictionary")),
        Err(e) => Err(EventFilterError::invalid(&["body"], format!("JSON decode error: {e}"))),
    }
}

/// Integers as pydantic's lax mode takes them: integers, integral floats,
/// numeric strings.
fn lax_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Some(i),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
            _ => None,
        },
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

// ------------------------------------------------------- SQL generation ---

/// SQL that is always true / always false (portable to both backends).
const TRUE: &str = "1 = 1";
const FALSE: &str = "1 = 0";

/// Every column of `events`, in table order.
pub const EVENT_COLUMNS: [&str; 13] = [
    "id",
    "workspace_id",
    "occurred",
    "event",
    "resource_id",
    "resource",
    "related_resource_ids",
    "related",
    "payload",
    "received",
    "recorded",
    "follows",
    "log_position",
];

struct Ctx<'a> {
    sql: &'a mut Sql,
    dialect: Dialect,
    aliases: usize,
    since: String,
    until: String,
}

impl Ctx<'_> {
    fn bind(&mut self, b: impl Into<Bind>) -> String {
        self.sql.placeholder(b.into())
    }

    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("er_{}", self.aliases)
    }

    /// `col IN (...)` for a non-empty list.
    fn in_list<S: AsRef<str>>(&mut self, col: &str, items: &[S]) -> String {
        let phs: Vec<String> = items.iter().map(|s| self.bind(s.as_ref())).collect();
        format!("{col} IN ({})", phs.join(", "))
    }

    /// `col` starts with `prefix` (literally: no wildcards in the prefix).
    fn starts_with(&mut self, col: &str, prefix: &str) -> String {
        match self.dialect {
            Dialect::Postgres => {
                let p = self.bind(format!("{}%", like_escape(prefix)));
                format!("{col} LIKE {p} ESCAPE '\\'")
            }
            Dialect::Sqlite => {
                let p = self.bind(format!("{}*", glob_escape(prefix)));
                format!("{col} GLOB {p}")
            }
        }
    }

    /// Prefect's `_is_like_match_expression`: a glob (`*`, `?`), negated by a leading `!`.
    fn glob_match(&mut self, expr: &str, pattern: &str) -> String {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        let cond = match self.dialect {
            Dialect::Postgres => {
                let p = self.bind(glob_to_like(pattern));
                format!("{expr} LIKE {p} ESCAPE '\\'")
            }
            Dialect::Sqlite => {
                let p = self.bind(glob_to_sqlite_glob(pattern));
                format!("{expr} GLOB {p}")
            }
        };
        if negated {
            format!("NOT ({cond})")
        } else {
            cond
        }
    }

    /// OR of glob matches of `expr` against `patterns` (non-empty).
    fn any_glob(&mut self, expr: &str, patterns: &[&str]) -> String {
        let parts: Vec<String> = patterns.iter().map(|p| self.glob_match(expr, p)).collect();
        any_of(&parts)
    }

    /// The text value of label `label` in the JSON-object column `col`.
    fn label_expr(&mut self, col: &str, label: &str) -> String {
        match self.dialect {
            Dialect::Postgres => {
                let p = self.bind(label);
                format!("(({col})::jsonb ->> {p})")
            }
            Dialect::Sqlite if label.contains('"') => {
                // A quoted JSON path cannot hold a double quote.
                let p = self.bind(label);
                format!("(SELECT lbl.value FROM json_each({col}) AS lbl WHERE lbl.key = {p})")
            }
            Dialect::Sqlite => {
                let p = self.bind(format!("$.\"{label}\""));
                format!("json_extract({col}, {p})")
            }
        }
    }

    /// `EXISTS` an `event_resources` row of this event (in the filter's time
    /// window, as Prefect scopes it) satisfying `conds` (on alias `a`).
    fn exists_resource(&mut self, a: &str, conds: Vec<String>) -> String {
        let mut all =
            vec![format!("{a}.event_id = events.id"), format!("{a}.occurred >= {}", self.since), format!("{a}.occurred <= {}", self.until)];
        all.extend(conds);
        format!("EXISTS (SELECT 1 FROM event_resources {a} WHERE {})", all_of(&all))
    }

    /// The label criteria of a `labels` specification on `event_resources`
    /// alias `a`; `role_column` says whether `prefect.resource.role` is
    /// matched against the role column (related / any-resource) or looked up
    /// as an ordinary label (primary resource, where it never exists).
    fn label_conds(&mut self, a: &str, spec: &ResourceSpecification, role_column: bool) -> Vec<String> {
        let mut spec = spec.clone();
        let mut conds = Vec::new();
        let ids = spec.pop("prefect.resource.id");
        if !ids.is_empty() {
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            conds.push(self.any_glob(&format!("{a}.resource_id"), &refs));
        }
        if role_column {
            let roles = spec.pop("prefect.resource.role");
            if !roles.is_empty() {
                conds.push(self.in_list(&format!("{a}.resource_role"), &roles));
            }
        }
        let items: Vec<(String, Vec<String>)> =
            spec.items().map(|(l, v)| (l.to_owned(), v.into_iter().map(str::to_owned).collect())).collect();
        for (label, values) in items {
            if values.is_empty() {
                conds.push(FALSE.to_owned());
                continue;
            }
            let expr = self.label_expr(&format!("{a}.resource"), &label);
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            conds.push(self.any_glob(&expr, &refs));
        }
        conds
    }
}

/// Escapes LIKE's wildcards and its escape character (`\`).
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escapes GLOB's wildcards (`*`, `?`, `[`) by bracketing them.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '*' | '?' | '[' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            _ => out.push(c),
        }
    }
    out
}

/// Prefect's glob → LIKE translation: `*`→`%`, `?`→`_`, and `\`, `%`, `_` escaped.
fn glob_to_like(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    for c in pattern.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '\\' | '%' | '_' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// The same pattern as an SQLite GLOB: `*` and `?` stay wildcards, `[` is literal.
fn glob_to_sqlite_glob(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    for c in pattern.chars() {
        match c {
            '[' => out.push_str("[[]"),
            _ => out.push(c),
        }
    }
    out
}

/// Joins conditions with AND, each parenthesised (no conditions: TRUE).
fn all_of(parts: &[String]) -> String {
    if parts.is_empty() {
        return TRUE.to_owned();
    }
    parts.iter().map(|p| format!("({p})")).collect::<Vec<_>>().join(" AND ")
}

/// Joins conditions with OR, each parenthesised, the whole parenthesised.
fn any_of(parts: &[String]) -> String {
    match parts.len() {
        0 => FALSE.to_owned(),
        1 => parts[0].clone(),
        _ => format!("({})", parts.iter().map(|p| format!("({p})")).collect::<Vec<_>>().join(" OR ")),
    }
}

fn non_empty(v: &Option<Vec<String>>) -> Option<&[String]> {
    v.as_deref().filter(|v| !v.is_empty())
}

/// The WHERE condition on table `events` (unaliased) for `filter`, binding
/// into `sql`. `now` supplies the `occurred` defaults.
pub fn events_where(
    filter: &EventFilter,
    dialect: Dialect,
    sql: &mut Sql,
    workspace_id: &str,
    now: DateTime<Utc>,
) -> Result<String, EventFilterError> {
    let (since, until) = filter.occurred.bounds(now);
    let ws = sql.placeholder(Bind::Text(workspace_id.to_owned()));
    let since = sql.placeholder(Bind::Text(since.0));
    let until = sql.placeholder(Bind::Text(until.0));
    let mut ctx = Ctx { sql, dialect, aliases: 0, since, until };
    let mut parts = vec![
        format!("events.workspace_id = {ws}"),
        format!("events.occurred >= {}", ctx.since),
        format!("events.occurred <= {}", ctx.until),
    ];

    if let Some(f) = &filter.event {
        if let Some(prefixes) = non_empty(&f.prefix) {
            let ors: Vec<String> = prefixes.iter().map(|p| ctx.starts_with("events.event", p)).collect();
            parts.push(any_of(&ors));
        }
        if let Some(prefixes) = non_empty(&f.exclude_prefix) {
            for p in prefixes {
                let c = ctx.starts_with("events.event", p);
                parts.push(format!("NOT ({c})"));
            }
        }
        if let Some(names) = non_empty(&f.name) {
            parts.push(ctx.in_list("events.event", names));
        }
        if let Some(names) = non_empty(&f.exclude_name) {
            let c = ctx.in_list("events.event", names);
            parts.push(format!("NOT ({c})"));
        }
    }

    if let Some(f) = &filter.resource {
        if let Some(ids) = non_empty(&f.id) {
            parts.push(ctx.in_list("events.resource_id", ids));
        }
        if let Some(prefixes) = non_empty(&f.id_prefix) {
            let ors: Vec<String> = prefixes.iter().map(|p| ctx.starts_with("events.resource_id", p)).collect();
            parts.push(any_of(&ors));
        }
        if let Some(labels) = f.labels.as_ref().filter(|l| !l.is_empty()) {
            let a = ctx.alias();
            let mut conds = vec![format!("{a}.resource_role = ''")];
            conds.extend(ctx.label_conds(&a, labels, false));
            parts.push(ctx.exists_resource(&a, conds));
        }
    }

    for f in filter.related.as_ref().map(OneOrMany::as_slice).unwrap_or_default() {
        let a = ctx.alias();
        let mut conds = Vec::new();
        if let Some(ids) = non_empty(&f.id) {
            conds.push(ctx.in_list(&format!("{a}.resource_id"), ids));
        }
        let roles = non_empty(&f.role);
        if let Some(roles) = roles {
            conds.push(ctx.in_list(&format!("{a}.resource_role"), roles));
        }
        if let Some(pairs) = f.resources_in_roles.as_deref().filter(|p| !p.is_empty()) {
            let ors: Vec<String> = pairs
                .iter()
                .map(|(id, role)| {
                    let i = ctx.bind(id.as_str());
                    let r = ctx.bind(role.as_str());
                    format!("{a}.resource_id = {i} AND {a}.resource_role = {r}")
                })
                .collect();
            conds.push(any_of(&ors));
        }
        if let Some(labels) = f.labels.as_ref().filter(|l| !l.is_empty()) {
            let lc = ctx.label_conds(&a, labels, true);
            conds.push(all_of(&lc));
        }
        if !conds.is_empty() {
            // Explicitly about related resources: unless a role is given,
            // the primary resource (role '') never counts.
            if roles.is_none() {
                conds.push(format!("{a}.resource_role <> ''"));
            }
            parts.push(ctx.exists_resource(&a, conds));
        }
    }

    for f in filter.any_resource.as_ref().map(OneOrMany::as_slice).unwrap_or_default() {
        let a = ctx.alias();
        let mut conds = Vec::new();
        if let Some(ids) = non_empty(&f.id) {
            conds.push(ctx.in_list(&format!("{a}.resource_id"), ids));
        }
        if let Some(prefixes) = non_empty(&f.id_prefix) {
            let col = format!("{a}.resource_id");
            let ors: Vec<String> = prefixes.iter().map(|p| ctx.starts_with(&col, p)).collect();
            conds.push(any_of(&ors));
        }
        if let Some(labels) = f.labels.as_ref().filter(|l| !l.is_empty()) {
            let lc = ctx.label_conds(&a, labels, true);
            conds.push(all_of(&lc));
        }
        if !conds.is_empty() {
            parts.push(ctx.exists_resource(&a, conds));
        }
    }

    if let Some(ids) = filter.id.id.as_deref().filter(|i| !i.is_empty()) {
        let ids: Vec<String> = ids.iter().map(|u| u.hyphenated().to_string()).collect();
        parts.push(ctx.in_list("events.id", &ids));
    }

    if let Some(t) = &filter.text {
        parts.extend(text_conds(&mut ctx, &t.query));
    }

    Ok(all_of(&parts))
}

/// Prefect's `EventTextFilter` in SQL: case-insensitive substring search of
/// the terms in `event resource related payload` (the stored JSON text).
fn text_conds(ctx: &mut Ctx, query: &str) -> Vec<String> {
    if query.trim().is_empty() {
        return Vec::new();
    }
    let parsed = parse_text_search_query(query);
    let haystack = "lower(events.event || ' ' || events.resource || ' ' || events.related || ' ' || events.payload)";
    let contains = |ctx: &mut Ctx, term: &str| {
        let p = ctx.bind(term.to_lowercase());
        match ctx.dialect {
            Dialect::Postgres => format!("strpos({haystack}, {p}) > 0"),
            Dialect::Sqlite => format!("instr({haystack}, {p}) > 0"),
        }
    };
    let mut out = Vec::new();
    if !parsed.include.is_empty() {
        let ors: Vec<String> = parsed.include.iter().map(|t| contains(ctx, t)).collect();
        out.push(any_of(&ors));
    }
    if !parsed.exclude.is_empty() {
        let ands: Vec<String> = parsed.exclude.iter().map(|t| format!("NOT ({})", contains(ctx, t))).collect();
        out.push(all_of(&ands));
    }
    if !parsed.required.is_empty() {
        let ands: Vec<String> = parsed.required.iter().map(|t| contains(ctx, t)).collect();
        out.push(all_of(&ands));
    }
    out
}

fn columns(alias: &str) -> String {
    EVENT_COLUMNS.iter().map(|c| format!("{alias}.{c}")).collect::<Vec<_>>().join(", ")
}

/// The events matching `filter` (every column of `events`, in table order),
/// ordered by `occurred` in the filter's order with the id as tie-break,
/// one page (`limit` is capped by the number of ids asked for, as Prefect's
/// `logical_limit`). With `resource.distinct`, only the first event per
/// resource id in that order.
pub fn select_events(
    filter: &EventFilter,
    dialect: Dialect,
    workspace_id: &str,
    now: DateTime<Utc>,
    limit: i64,
    offset: i64,
) -> Result<Sql, EventFilterError> {
    let mut sql = Sql::default();
    let cond = events_where(filter, dialect, &mut sql, workspace_id, now)?;
    let dir = filter.order.sql();
    let limit = filter.logical_limit().map_or(limit, |l| l.min(limit)).max(0);
    let l = sql.placeholder(Bind::Int(limit));
    let o = sql.placeholder(Bind::Int(offset.max(0)));
    sql.text = if filter.is_distinct() {
        format!(
            "SELECT {outer} FROM (SELECT {inner}, ROW_NUMBER() OVER (PARTITION BY events.resource_id ORDER BY events.occurred {dir}, events.id {dir}) AS rn \
             FROM events WHERE {cond}) AS e WHERE e.rn = 1 ORDER BY e.occurred {dir}, e.id {dir} LIMIT {l} OFFSET {o}",
            outer = columns("e"),
            inner = columns("events"),
        )
    } else {
        format!(
            "SELECT {cols} FROM events WHERE {cond} ORDER BY events.occurred {dir}, events.id {dir} LIMIT {l} OFFSET {o}",
            cols = columns("events"),
        )
    };
    Ok(sql)
}

/// The number of events matching `filter` (one row, one BIGINT): with
/// `resource.distinct`, the number of distinct resource ids.
pub fn count_events(filter: &EventFilter, dialect: Dialect, workspace_id: &str, now: DateTime<Utc>) -> Result<Sql, EventFilterError> {
    let mut sql = Sql::default();
    let cond = events_where(filter, dialect, &mut sql, workspace_id, now)?;
    let what = if filter.is_distinct() { "COUNT(DISTINCT events.resource_id)" } else { "COUNT(*)" };
    sql.text = format!("SELECT {what} FROM events WHERE {cond}");
    Ok(sql)
}

#[cfg(test)]
mod tests;
