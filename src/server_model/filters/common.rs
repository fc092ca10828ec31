//! Pieces shared by every filter: the operator, state types, timestamps as
//! Prefect accepts them, and the condition-building context.

use serde::Deserialize;

use crate::db::sql::{Bind, Dialect, Sql};

/// SQL that is always true / always false (portable to both backends).
pub const TRUE: &str = "1 = 1";
pub const FALSE: &str = "1 = 0";

/// How a filter combines its criteria (`and_` unless told otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Operator {
    #[default]
    #[serde(rename = "and_")]
    And,
    #[serde(rename = "or_")]
    Or,
}

/// Prefect's `StateType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StateType {
    Scheduled,
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
    Crashed,
    Paused,
    Cancelling,
}

impl StateType {
    pub fn as_str(self) -> &'static str {
        match self {
            StateType::Scheduled => "SCHEDULED",
            StateType::Pending => "PENDING",
            StateType::Running => "RUNNING",
            StateType::Completed => "COMPLETED",
            StateType::Failed => "FAILED",
            StateType::Cancelled => "CANCELLED",
            StateType::Crashed => "CRASHED",
            StateType::Paused => "PAUSED",
            StateType::Cancelling => "CANCELLING",
        }
    }
}

pub use crate::db::timestamp::{format_ts, Timestamp};

/// Condition building: the statement's binds plus the dialect and a counter
/// for fresh subquery aliases.
pub(crate) struct Ctx<'a> {
    pub sql: &'a mut Sql,
    pub dialect: Dialect,
    aliases: usize,
}

impl<'a> Ctx<'a> {
    pub fn new(sql: &'a mut Sql, dialect: Dialect) -> Self {
        Ctx { sql, dialect, aliases: 0 }
    }

    /// Adds a bind, returning its placeholder.
    pub fn bind(&mut self, b: impl Into<Bind>) -> String {
        self.sql.placeholder(b.into())
    }

    /// A fresh table alias for a subquery (`base_1`, `base_2`, ...).
    pub fn alias(&mut self, base: &str) -> String {
        self.aliases += 1;
        format!("{base}_{}", self.aliases)
    }

    /// `col IN (...)`; an empty list matches nothing, as SQL's empty IN does
    /// in Prefect (SQLAlchemy renders it as an always-false expression).
    pub fn in_list<S: AsRef<str>>(&mut self, col: &str, items: &[S]) -> String {
        if items.is_empty() {
            return FALSE.to_owned();
        }
        format!("{col} IN {}", self.list(items))
    }

    /// `col NOT IN (...)` for a non-empty list (callers skip empty ones, as Prefect does).
    pub fn not_in_list<S: AsRef<str>>(&mut self, col: &str, items: &[S]) -> String {
        format!("{col} NOT IN {}", self.list(items))
    }

    fn list<S: AsRef<str>>(&mut self, items: &[S]) -> String {
        let phs: Vec<String> = items.iter().map(|s| self.bind(s.as_ref())).collect();
        format!("({})", phs.join(", "))
    }

    /// `name ILIKE '%x%'` (Prefect's `like_`; `%` and `_` in x stay wildcards).
    pub fn ilike_contains(&mut self, col: &str, needle: &str) -> String {
        let p = self.bind(format!("%{needle}%"));
        match self.dialect {
            Dialect::Postgres => format!("{col} ILIKE {p}"),
            // What SQLAlchemy renders for ILIKE on SQLite.
            Dialect::Sqlite => format!("lower({col}) LIKE lower({p})"),
        }
    }

    /// JSON-array tag criteria shared by flows, flow runs and task runs.
    pub fn tags(&mut self, col: &str, all: Option<&[String]>, any: Option<&[String]>, is_null: Option<bool>) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(all) = all.filter(|a| !a.is_empty()) {
            let parts: Vec<String> = dedup(all)
                .iter()
                .map(|t| {
                    let p = self.bind(t.as_str());
                    self.dialect.json_array_contains(col, &p)
                })
                .collect();
            out.push(parts.join(" AND "));
        }
        if let Some(any) = any {
            if any.is_empty() {
                out.push(FALSE.to_owned());
            } else {
                let parts: Vec<String> = dedup(any)
                    .iter()
                    .map(|t| {
                        let p = self.bind(t.as_str());
                        self.dialect.json_array_contains(col, &p)
                    })
                    .collect();
                out.push(format!("({})", parts.join(" OR ")));
            }
        }
        if let Some(is_null) = is_null {
            let empty = self.dialect.json_array_is_empty(col);
            out.push(if is_null { empty } else { format!("NOT ({empty})") });
        }
        out
    }

    /// `before_` / `after_` (inclusive) and `is_null_` on a timestamp column.
    pub fn time_range(
        &mut self,
        expr: &str,
        before: Option<&Timestamp>,
        after: Option<&Timestamp>,
        is_null_col: Option<(&str, Option<bool>)>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(b) = before {
            let p = self.bind(b.as_str());
            out.push(format!("{expr} <= {p}"));
        }
        if let Some(a) = after {
            let p = self.bind(a.as_str());
            out.push(format!("{expr} >= {p}"));
        }
        if let Some((col, Some(is_null))) = is_null_col {
            out.push(null_check(col, is_null));
        }
        out
    }
}

fn dedup(items: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for i in items {
        if !out.contains(i) {
            out.push(i.clone());
        }
    }
    out
}

pub(crate) fn null_check(col: &str, is_null: bool) -> String {
    if is_null {
        format!("{col} IS NULL")
    } else {
        format!("{col} IS NOT NULL")
    }
}

/// Combines criteria the way Prefect's filter base classes do: no criteria is
/// TRUE, one is itself, several are joined by the operator.
pub(crate) fn combine(parts: Vec<String>, op: Operator) -> String {
    match parts.len() {
        0 => TRUE.to_owned(),
        1 => parts.into_iter().next().unwrap_or_default(),
        _ => {
            let joiner = match op {
                Operator::And => " AND ",
                Operator::Or => " OR ",
            };
            let wrapped: Vec<String> = parts.into_iter().map(|p| format!("({p})")).collect();
            wrapped.join(joiner)
        }
    }
}

pub(crate) fn op(o: Option<Operator>) -> Operator {
    o.unwrap_or_default()
}

pub(crate) fn uuids(v: &[uuid::Uuid]) -> Vec<String> {
    v.iter().map(|u| u.hyphenated().to_string()).collect()
}

pub(crate) fn state_types(v: &[StateType]) -> Vec<&'static str> {
    v.iter().map(|s| s.as_str()).collect()
}
