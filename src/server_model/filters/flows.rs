//! `FlowFilter` (prefect/server/schemas/filters.py) and its SQL.

use serde::Deserialize;
use uuid::Uuid;

use super::common::{combine, op, uuids, Ctx, Operator};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowFilter {
    pub operator: Option<Operator>,
    pub id: Option<FlowFilterId>,
    pub deployment: Option<FlowFilterDeployment>,
    pub name: Option<FlowFilterName>,
    pub tags: Option<FlowFilterTags>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowFilterId {
    pub any_: Option<Vec<Uuid>>,
    pub not_any_: Option<Vec<Uuid>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowFilterDeployment {
    pub operator: Option<Operator>,
    pub is_null_: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowFilterName {
    pub any_: Option<Vec<String>>,
    pub like_: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowFilterTags {
    pub operator: Option<Operator>,
    pub all_: Option<Vec<String>>,
    pub is_null_: Option<bool>,
}

impl FlowFilter {
    /// The filter as a condition on the `flow` table (or alias) `t`.
    pub(crate) fn to_sql(&self, ctx: &mut Ctx, t: &str) -> String {
        let mut parts = Vec::new();
        if let Some(f) = &self.id {
            let mut p = Vec::new();
            if let Some(any) = &f.any_ {
                p.push(ctx.in_list(&format!("{t}.id"), &uuids(any)));
            }
            if let Some(not_any) = f.not_any_.as_ref().filter(|v| !v.is_empty()) {
                p.push(ctx.not_in_list(&format!("{t}.id"), &uuids(not_any)));
            }
            parts.push(combine(p, Operator::And));
        }
        if let Some(f) = &self.deployment {
            let mut p = Vec::new();
            if let Some(is_null) = f.is_null_ {
                let exists = format!("EXISTS (SELECT 1 FROM deployment WHERE deployment.flow_id = {t}.id)");
                p.push(if is_null { format!("NOT {exists}") } else { exists });
            }
            parts.push(combine(p, op(f.operator)));
        }
        if let Some(f) = &self.name {
            let mut p = Vec::new();
            if let Some(any) = &f.any_ {
                p.push(ctx.in_list(&format!("{t}.name"), any));
            }
            if let Some(like) = f.like_.as_deref().filter(|s| !s.is_empty()) {
                p.push(ctx.ilike_contains(&format!("{t}.name"), like));
            }
            parts.push(combine(p, Operator::And));
        }
        if let Some(f) = &self.tags {
            let p = ctx.tags(&format!("{t}.tags"), f.all_.as_deref(), None, f.is_null_);
            parts.push(combine(p, op(f.operator)));
        }
        combine(parts, op(self.operator))
    }
}
