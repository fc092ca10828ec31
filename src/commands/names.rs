//! Random run names in Prefect's `adjective-animal` style.

const ADJECTIVES: &[&str] = &[
    "agile", "amber", "brave", "bright", "calm", "clever", "cosmic", "crimson", "daring", "eager", "electric",
    "fancy", "fearless", "gentle", "golden", "happy", "honest", "jolly", "keen", "lively", "lucky", "magic",
    "mellow", "nimble", "noble", "olive", "placid", "proud", "quick", "quiet", "rapid", "royal", "rustic",
    "sassy", "shiny", "silver", "smart", "spirited", "steady", "stellar", "sunny", "swift", "tidy", "vivid",
    "wise", "witty", "zealous",
];

const ANIMALS: &[&str] = &[
    "albatross", "alpaca", "badger", "beaver", "bison", "bobcat", "caracal", "cheetah", "cougar", "coyote",
    "crane", "dingo", "dolphin", "eagle", "falcon", "ferret", "finch", "gazelle", "gecko", "gopher", "heron",
    "ibex", "jackal", "jaguar", "kestrel", "koala", "lemur", "lynx", "marmot", "mongoose", "newt", "ocelot",
    "oriole", "otter", "panda", "pelican", "puffin", "quail", "raccoon", "raven", "salamander", "seal",
    "sparrow", "tapir", "toucan", "turtle", "walrus", "wombat", "yak", "zebra",
];

/// A two-word slug such as `spirited-oriole`, drawn from `seed`'s bits.
pub fn slug(seed: u128) -> String {
    let a = ADJECTIVES[(seed % ADJECTIVES.len() as u128) as usize];
    let b = ANIMALS[((seed >> 64) % ANIMALS.len() as u128) as usize];
    format!("{a}-{b}")
}

/// Characters Prefect bans from object names (`prefect.types.names`).
const BANNED: &[char] = &['/', '%', '&', '>', '<'];

/// Prefect's `Name`: non-empty, none of `/ % & > <`.
pub fn validate_name(loc: &[&str], name: &str) -> crate::api::error::ApiResult<()> {
    if name.is_empty() || name.contains(BANNED) {
        return Err(crate::api::error::AppError::Validation {
            detail: vec![serde_json::json!({
                "type": "string_pattern_mismatch",
                "loc": loc,
                "msg": "String should match pattern '^[^/%&><]+$'",
                "input": name,
                "ctx": {"pattern": "^[^/%&><]+$"},
            })],
            body: serde_json::Value::Null,
        });
    }
    Ok(())
}

/// Prefect's `raise_on_name_alphanumeric_dashes_only` with its
/// `field_name` (block type slugs, block document names, artifact keys,
/// flow-run input keys): lowercase letters, digits and dashes only.
pub fn validate_dashed(loc: &[&str], field_name: &str, value: &str) -> crate::api::error::ApiResult<()> {
    if value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Ok(());
    }
    Err(crate::api::error::AppError::invalid(
        loc,
        format!("Value error, {field_name} must only contain lowercase letters, numbers, and dashes."),
        serde_json::json!(value),
    ))
}

/// Prefect's `NonEmptyishName`: a [`validate_name`] that is not just quotes
/// and spaces.
pub fn validate_non_emptyish_name(loc: &[&str], name: &str) -> crate::api::error::ApiResult<()> {
    if name.trim_matches(|c| c == '\'' || c == ' ' || c == '"').is_empty() {
        return Err(crate::api::error::AppError::invalid(loc, "Value error, name cannot be an empty string", serde_json::json!(name)));
    }
    validate_name(loc, name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn slugs_are_two_words() {
        let s = super::slug(uuid::Uuid::new_v4().as_u128());
        assert_eq!(s.split('-').count(), 2);
    }
}
