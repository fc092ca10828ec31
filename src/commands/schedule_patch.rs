//! How `PATCH /deployments/{id}` applies its `schedules` (Prefect 3.8.8's
//! `update_deployment` route), decided without a database:
//!
//! * When every existing schedule and every sent schedule has a slug, the
//!   change is targeted: a sent schedule whose slug (or `replaces`, for a
//!   rename) names an existing schedule updates it in place, keeping its id;
//!   any other sent schedule is created. Existing schedules not mentioned
//!   stay.
//! * When the existing schedules all have slugs but a sent one has none, the
//!   request is refused (422) rather than silently replacing them.
//! * Otherwise (some existing schedule has no slug, or there are none), the
//!   sent schedules replace all existing ones.

use uuid::Uuid;

use super::deployments::ScheduleUpdate;

/// What to do with the sent schedules (indexes into the request's list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchedulePatch {
    /// Delete every existing schedule, then create the sent ones that carry a schedule.
    ReplaceAll,
    /// Update these existing schedules in place and create these new ones.
    Targeted { update: Vec<(Uuid, usize)>, create: Vec<usize> },
}

/// Decides how to apply `sent` to a deployment whose schedules are
/// `existing` (id, slug). An error is the 422 `detail` Prefect answers.
pub fn plan(existing: &[(Uuid, Option<String>)], sent: &[ScheduleUpdate]) -> Result<SchedulePatch, String> {
    let all_sent_have_slugs = sent.iter().all(|s| s.slug.is_some());
    let all_existing_have_slugs = !existing.is_empty() && existing.iter().all(|(_, slug)| slug.is_some());
    if !all_existing_have_slugs {
        return Ok(SchedulePatch::ReplaceAll);
    }
    if !all_sent_have_slugs {
        return Err("Please provide a slug for each schedule in your request to ensure schedules are updated correctly.".into());
    }
    let slug_id = |slug: &str| existing.iter().find(|(_, s)| s.as_deref() == Some(slug)).map(|(id, _)| *id);
    let mut replaced: Vec<&str> = Vec::new();
    for s in sent {
        if let Some(r) = s.replaces.as_deref() {
            if replaced.contains(&r) {
                return Err(format!("Multiple schedules have 'replaces' targeting the same slug: {r}"));
            }
            replaced.push(r);
        }
    }
    for s in sent {
        let (Some(slug), Some(from)) = (s.slug.as_deref(), s.replaces.as_deref()) else { continue };
        if slug_id(slug).is_some() && !replaced.contains(&slug) {
            return Err(format!("Cannot rename schedule from '{from}' to '{slug}': a schedule with slug '{slug}' already exists."));
        }
    }
    let mut update = Vec::new();
    let mut create = Vec::new();
    for (i, s) in sent.iter().enumerate() {
        let target = s.replaces.as_deref().or(s.slug.as_deref()).unwrap_or_default();
        if let Some(id) = slug_id(target) {
            update.push((id, i));
        } else if s.schedule.is_some() {
            create.push(i);
        } else {
            return Err("Unable to create new deployment schedules without a schedule configuration.".into());
        }
    }
    Ok(SchedulePatch::Targeted { update, create })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sent(v: serde_json::Value) -> Vec<ScheduleUpdate> {
        serde_json::from_value(v).unwrap()
    }

    fn existing(slugs: &[Option<&str>]) -> Vec<(Uuid, Option<String>)> {
        slugs.iter().map(|s| (Uuid::now_v7(), s.map(str::to_owned))).collect()
    }

    #[test]
    fn schedules_without_slugs_are_replaced_wholesale() {
        let given = existing(&[Some("a"), None]);
        let when = sent(json!([{"schedule": {"interval": 60}}]));
        assert_eq!(plan(&given, &when), Ok(SchedulePatch::ReplaceAll));
        assert_eq!(plan(&[], &when), Ok(SchedulePatch::ReplaceAll));
    }

    #[test]
    fn slugged_schedules_refuse_an_unslugged_request() {
        let given = existing(&[Some("a")]);
        let when = sent(json!([{"schedule": {"interval": 60}}]));
        assert!(plan(&given, &when).unwrap_err().starts_with("Please provide a slug"));
    }

    #[test]
    fn matching_slugs_update_in_place_and_new_slugs_are_created() {
        let given = existing(&[Some("a"), Some("b")]);
        let when = sent(json!([{"slug": "b", "active": false}, {"slug": "c", "schedule": {"interval": 60}}]));
        assert_eq!(plan(&given, &when), Ok(SchedulePatch::Targeted { update: vec![(given[1].0, 0)], create: vec![1] }));
    }

    #[test]
    fn a_new_slug_without_a_schedule_cannot_be_created() {
        let given = existing(&[Some("a")]);
        let when = sent(json!([{"slug": "z", "active": false}]));
        assert!(plan(&given, &when).unwrap_err().starts_with("Unable to create"));
    }

    #[test]
    fn replaces_renames_the_named_schedule() {
        let given = existing(&[Some("old")]);
        let when = sent(json!([{"slug": "new", "replaces": "old"}]));
        assert_eq!(plan(&given, &when), Ok(SchedulePatch::Targeted { update: vec![(given[0].0, 0)], create: vec![] }));
    }

    #[test]
    fn replaces_of_a_missing_slug_creates_when_it_has_a_schedule() {
        let given = existing(&[Some("a")]);
        let when = sent(json!([{"slug": "n", "replaces": "gone", "schedule": {"interval": 60}}]));
        assert_eq!(plan(&given, &when), Ok(SchedulePatch::Targeted { update: vec![], create: vec![0] }));
    }

    #[test]
    fn two_schedules_cannot_replace_the_same_slug() {
        let given = existing(&[Some("a")]);
        let when = sent(json!([{"slug": "x", "replaces": "a"}, {"slug": "y", "replaces": "a"}]));
        assert!(plan(&given, &when).unwrap_err().starts_with("Multiple schedules have 'replaces'"));
    }

    #[test]
    fn renaming_onto_a_slug_that_stays_is_a_collision() {
        let given = existing(&[Some("a"), Some("b")]);
        let when = sent(json!([{"slug": "b", "replaces": "a"}]));
        assert_eq!(plan(&given, &when), Err("Cannot rename schedule from 'a' to 'b': a schedule with slug 'b' already exists.".into()));
        // Swapping is fine: b is itself being renamed.
        let when = sent(json!([{"slug": "b", "replaces": "a"}, {"slug": "a", "replaces": "b"}]));
        assert!(plan(&given, &when).is_ok());
    }
}
