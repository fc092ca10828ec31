//! `LogFilter` (prefect/server/schemas/filters.py) and its SQL; text search
//! queries are parsed by `crate::db::text_search`.

use serde::Deserialize;
use uuid::Uuid;

use super::common::{combine, null_check, op, uuids, Ctx, Operator, Timestamp};
use super::FilterError;
use crate::db::text_search::parse_text_search_query;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFilter {
    pub operator: Option<Operator>,
    pub level: Option<LogFilterLevel>,
    pub timestamp: Option<LogFilterTimestamp>,
    pub flow_run_id: Option<LogFilterFlowRunId>,
    pub task_run_id: Option<LogFilterTaskRunId>,
    pub text: Option<LogFilterTextSearch>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFilterLevel {
    pub ge_: Option<i64>,
    pub le_: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFilterTimestamp {
    pub before_: Option<Timestamp>,
    pub after_: Option<Timestamp>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFilterFlowRunId {
    pub any_: Option<Vec<Uuid>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFilterTaskRunId {
    pub any_: Option<Vec<Uuid>>,
    pub is_null_: Option<bool>,
}

/// `query` is required and at most 200 characters (checked by
/// [`LogFilter::validate`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFilterTextSearch {
    pub query: String,
}

/// Maximum length of a log text-search query.
pub const TEXT_QUERY_MAX_CHARS: usize = 200;

impl LogFilter {
    /// Checks constraints serde cannot express; `loc` is where this filter
    /// sits in the request (e.g. `["body", "logs"]`).
    pub fn validate(&self, loc: &[&str]) -> Result<(), FilterError> {
        if let Some(text) = &self.text {
            if text.query.chars().count() > TEXT_QUERY_MAX_CHARS {
                let mut l: Vec<String> = loc.iter().map(|s| s.to_string()).collect();
                l.extend(["text".to_owned(), "query".to_owned()]);
                return Err(FilterError::Invalid {
                    loc: l,
                    msg: format!("String should have at most {TEXT_QUERY_MAX_CHARS} characters"),
                });
            }
        }
        Ok(())
    }

    /// The filter as a condition on the `log` table (or alias) `t`.
    pub(crate) fn to_sql(&self, ctx: &mut Ctx, t: &str) -> String {
        let mut parts = Vec::new();
        if let Some(f) = &self.level {
            let mut p = Vec::new();
            if let Some(ge) = f.ge_ {
                let ph = ctx.bind(ge);
                p.push(format!("{t}.level >= {ph}"));
            }
            if let Some(le) = f.le_ {
                let ph = ctx.bind(le);
                p.push(format!("{t}.level <= {ph}"));
            }
            parts.push(combine(p, Operator::And));
        }
        if let Some(f) = &self.timestamp {
            let col = format!("{t}.timestamp");
            let p = ctx.time_range(&col, f.before_.as_ref(), f.after_.as_ref(), None);
            parts.push(combine(p, Operator::And));
        }
        if let Some(f) = &self.flow_run_id {
            let mut p = Vec::new();
            if let Some(any) = &f.any_ {
                p.push(ctx.in_list(&format!("{t}.flow_run_id"), &uuids(any)));
            }
            parts.push(combine(p, Operator::And));
        }
        if let Some(f) = &self.task_run_id {
            let col = format!("{t}.task_run_id");
            let mut p = Vec::new();
            if let Some(any) = &f.any_ {
                p.push(ctx.in_list(&col, &uuids(any)));
            }
            if let Some(is_null) = f.is_null_ {
                p.push(null_check(&col, is_null));
            }
            parts.push(combine(p, Operator::And));
        }
        if let Some(f) = &self.text {
            // Prefect splices these criteria straight into the log filter's
            // own list, so the log filter's operator applies to them.
            parts.extend(text_search_sql(ctx, t, &f.query));
        }
        combine(parts, op(self.operator))
    }
}

fn text_search_sql(ctx: &mut Ctx, t: &str, query: &str) -> Vec<String> {
    let mut out = Vec::new();
    if query.trim().is_empty() {
        return out;
    }
    let parsed = parse_text_search_query(query);
    let searchable = format!("lower({t}.message || ' ' || {t}.name)");
    let contains = |ctx: &mut Ctx, term: &str, negate: bool| {
        let p = ctx.bind(format!("%{}%", escape_like(&term.to_lowercase())));
        let not = if negate { "NOT " } else { "" };
        format!("{searchable} {not}LIKE {p} ESCAPE '/'")
    };
    if !parsed.include.is_empty() {
        let c: Vec<String> = parsed.include.iter().map(|x| contains(ctx, x, false)).collect();
        out.push(combine(c, Operator::Or));
    }
    if !parsed.exclude.is_empty() {
        let c: Vec<String> = parsed.exclude.iter().map(|x| contains(ctx, x, true)).collect();
        out.push(combine(c, Operator::And));
    }
    if !parsed.required.is_empty() {
        let c: Vec<String> = parsed.required.iter().map(|x| contains(ctx, x, false)).collect();
        out.push(combine(c, Operator::And));
    }
    out
}

/// SQLAlchemy's `contains(..., autoescape=True)` escaping with `/`.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '/' | '%' | '_') {
            out.push('/');
        }
        out.push(c);
    }
    out
}


/// The log fields a live filter looks at (`/logs/out`).
#[derive(Debug, Clone, Copy)]
pub struct LiveLog<'a> {
    pub name: &'a str,
    pub level: i64,
    pub message: &'a str,
    pub timestamp: chrono::DateTime<chrono::Utc>,
    pub flow_run_id: Option<Uuid>,
    pub task_run_id: Option<Uuid>,
}

impl LogFilter {
    /// Whether a log matches, with the same rules as [`LogFilter::to_sql`].
    pub fn matches(&self, log: &LiveLog<'_>) -> bool {
        let mut parts: Vec<bool> = Vec::new();
        if let Some(f) = &self.level {
            parts.push(f.ge_.is_none_or(|ge| log.level >= ge) && f.le_.is_none_or(|le| log.level <= le));
        }
        if let Some(f) = &self.timestamp {
            let before = f.before_.as_ref().is_none_or(|b| log.timestamp <= b.datetime());
            let after = f.after_.as_ref().is_none_or(|a| log.timestamp >= a.datetime());
            parts.push(before && after);
        }
        if let Some(f) = &self.flow_run_id {
            parts.push(f.any_.as_ref().is_none_or(|any| log.flow_run_id.is_some_and(|id| any.contains(&id))));
        }
        if let Some(f) = &self.task_run_id {
            let any = f.any_.as_ref().is_none_or(|any| log.task_run_id.is_some_and(|id| any.contains(&id)));
            let null = f.is_null_.is_none_or(|is_null| log.task_run_id.is_none() == is_null);
            parts.push(any && null);
        }
        if let Some(f) = &self.text {
            parts.extend(text_search_matches(&f.query, log));
        }
        match op(self.operator) {
            Operator::And => parts.iter().all(|p| *p),
            Operator::Or => parts.is_empty() || parts.iter().any(|p| *p),
        }
    }
}

/// [`text_search_sql`]'s criteria, evaluated on one log.
fn text_search_matches(query: &str, log: &LiveLog<'_>) -> Vec<bool> {
    if query.trim().is_empty() {
        return Vec::new();
    }
    let parsed = parse_text_search_query(query);
    let searchable = format!("{} {}", log.message, log.name).to_lowercase();
    let has = |term: &String| searchable.contains(&term.to_lowercase());
    let mut out = Vec::new();
    if !parsed.include.is_empty() {
        out.push(parsed.include.iter().any(has));
    }
    if !parsed.exclude.is_empty() {
        out.push(!parsed.exclude.iter().any(has));
    }
    if !parsed.required.is_empty() {
        out.push(parsed.required.iter().all(has));
    }
    out
}
