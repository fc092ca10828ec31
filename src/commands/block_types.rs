//! Block type commands (Prefect's `block_types` router): create, update and
//! delete, each one document event on the type's stream carrying Prefect's
//! `prefect.block-type.*` feed event. Slugs are unique per workspace,
//! enforced under a slug lock. Deleting a type deletes its schemas and
//! documents with it (the projector's cascade, as Prefect's foreign keys).

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sqlx::AnyConnection;
use uuid::Uuid;

use super::documents::{self as doc, find};
use super::{present, write, ws};
use crate::api::error::{ApiResult, AppError};
use crate::db::{Bind, Db, Dialect};
use crate::eventlog::{lock_key, lock_stream, StreamRef, StreamType};
use crate::server_model::documents::BLOCK_TYPE;
use crate::server_model::feed_events::{lifecycle_event, merged};

/// `BlockTypeCreate` (extra fields forbidden).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockTypeCreate {
    pub name: String,
    pub slug: String,
    #[serde(default)]
    pub logo_url: Option<String>,
    #[serde(default)]
    pub documentation_url: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub code_example: Option<String>,
}

/// `BlockTypeUpdate`: the fields that were sent (`Some(None)` is `null`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockTypeUpdate {
    #[serde(default, deserialize_with = "present")]
    pub logo_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub documentation_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub code_example: Option<Option<String>>,
}

impl BlockTypeUpdate {
    /// The sent fields, by name, in `BlockTypeUpdate`'s order.
    fn sent(&self) -> Map<String, Value> {
        let fields = [
            ("logo_url", &self.logo_url),
            ("documentation_url", &self.documentation_url),
            ("description", &self.description),
            ("code_example", &self.code_example),
        ];
        fields.into_iter().filter_map(|(k, v)| v.as_ref().map(|v| (k.to_owned(), json!(v)))).collect()
    }
}



pub fn not_found() -> AppError {
    AppError::Detail(StatusCode::NOT_FOUND, "Block type not found".into())
}

/// `html.escape(text, quote=False)`, which Prefect applies to a new type's
/// description and code example.
fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The inverse of [`html_escape`] (plus the quote entities), for comparing
/// texts as `_should_update_block_type` does with `html.unescape`.
fn html_unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#x27;", "'").replace("&#39;", "'").replace("&amp;", "&")
}

// ------------------------------------------------------------ lookups ---

pub async fn by_id(conn: &mut AnyConnection, dialect: Dialect, id: Uuid) -> ApiResult<Option<Map<String, Value>>> {
    find(conn, dialect, &BLOCK_TYPE, "t.workspace_id = $1 AND t.id = $2", &[Bind::Text(ws()), Bind::Text(id.to_string())]).await
}

pub async fn by_slug(conn: &mut AnyConnection, dialect: Dialect, slug: &str) -> ApiResult<Option<Map<String, Value>>> {
    find(conn, dialect, &BLOCK_TYPE, "t.workspace_id = $1 AND t.slug = $2", &[Bind::Text(ws()), Bind::Text(slug.to_owned())]).await
}

/// Prefect's `prefect.block-type.<action>` event: the type's presentation
/// fields as payload.
fn block_type_event(action: &str, id: Uuid, block_type: &Map<String, Value>, occurred: DateTime<Utc>) -> Value {
    let field = |k: &str| block_type.get(k).cloned().unwrap_or(Value::Null);
    let payload = json!({
        "name": field("name"),
        "slug": field("slug"),
        "logo_url": field("logo_url"),
        "documentation_url": field("documentation_url"),
        "description": field("description"),
        "code_example": field("code_example"),
        "is_protected": block_type.get("is_protected").cloned().unwrap_or(Value::Bool(false)),
    });
    let name = block_type.get("name").and_then(Value::as_str);
    lifecycle_event("block-type", action, &id.to_string(), name, vec![], payload, occurred)
}

/// `_should_update_block_type`: the sent fields differ from the stored ones
/// (compared unescaped). Sending fewer than all four fields always differs,
/// as in Prefect, where the stored side has every field.
fn should_update(sent: &Map<String, Value>, stored: &Map<String, Value>) -> bool {
    let normal = |k: &str, v: &Value| match (k, v) {
        ("description" | "code_example", Value::String(s)) => Value::String(html_unescape(s)),
        (_, v) => v.clone(),
    };
    let keys = ["logo_url", "documentation_url", "description", "code_example"];
    let stored: Map<String, Value> = keys.iter().map(|k| (k.to_string(), normal(k, stored.get(*k).unwrap_or(&Value::Null)))).collect();
    let sent: Map<String, Value> = sent.iter().map(|(k, v)| (k.clone(), normal(k, v))).collect();
    stored != sent
}

// ---------------------------------------------------------- commands ---

/// Creates a block type; returns its id. Names starting with "prefect" are
/// reserved (403); a taken slug is a 409 with Prefect's message.
pub async fn create(db: &Db, body: BlockTypeCreate) -> ApiResult<Uuid> {
    super::names::validate_name(&["body", "name"], &body.name)?;
    super::names::validate_dashed(&["body", "slug"], "Block type slug", &body.slug)?;
    if body.name.to_lowercase().starts_with("prefect") {
        return Err(AppError::Detail(StatusCode::FORBIDDEN, "Block type names beginning with 'Prefect' are reserved.".into()));
    }
    let dialect = db.dialect;
    write(db, move |conn| {
        let body = body.clone();
        Box::pin(async move {
            lock_key(conn, dialect, &format!("block-type-slug:{}", body.slug)).await?;
            if by_slug(conn, dialect, &body.slug).await?.is_some() {
                return Err(AppError::Detail(StatusCode::CONFLICT, format!("Block type with name \"{}\" already exists", body.name)));
            }
            let now = crate::time::micros(Utc::now());
            let id = Uuid::now_v7();
            let record = Map::from_iter([
                ("name".into(), json!(body.name)),
                ("slug".into(), json!(body.slug)),
                ("logo_url".into(), json!(body.logo_url)),
                ("documentation_url".into(), json!(body.documentation_url)),
                ("description".into(), json!(body.description.as_deref().map(html_escape))),
                ("code_example".into(), json!(body.code_example.as_deref().map(html_escape))),
                ("is_protected".into(), json!(false)),
            ]);
            let event = block_type_event("created", id, &record, now);
            doc::create(conn, dialect, StreamType::BlockType, id, record, now, Some(event)).await?;
            Ok(id)
        })
    })
    .await
}

/// Applies a `BlockTypeUpdate` (404 when there is no such type). Like
/// Prefect, nothing is written when the sent fields match the stored ones,
/// so clients that re-register a type on every save do not contend.
pub async fn update(db: &Db, id: Uuid, body: BlockTypeUpdate) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        let sent = body.sent();
        Box::pin(async move {
            let current = by_id(conn, dialect, id).await?.ok_or_else(not_found)?;
            if !should_update(&sent, &current) {
                return Ok(());
            }
            lock_stream(conn, dialect, &StreamRef::new(StreamType::BlockType, id)).await?;
            let now = crate::time::micros(Utc::now());
            let event = block_type_event("updated", id, &merged(&current, &sent), now);
            doc::update(conn, dialect, StreamType::BlockType, id, sent, now, Some(event)).await
        })
    })
    .await
}

/// Deletes a block type with its schemas and documents (404 when there is
/// none; 403 for a protected type).
pub async fn delete(db: &Db, id: Uuid) -> ApiResult<()> {
    let dialect = db.dialect;
    write(db, move |conn| {
        Box::pin(async move {
            let current = by_id(conn, dialect, id).await?.ok_or_else(not_found)?;
            if current.get("is_protected").and_then(Value::as_bool) == Some(true) {
                return Err(AppError::Detail(StatusCode::FORBIDDEN, "protected block types cannot be deleted.".into()));
            }
            lock_stream(conn, dialect, &StreamRef::new(StreamType::BlockType, id)).await?;
            let now = crate::time::micros(Utc::now());
            let event = block_type_event("deleted", id, &current, now);
            doc::delete(conn, dialect, StreamType::BlockType, id, now, Some(event)).await
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Map<String, Value> {
        json!({"logo_url": "https://x/logo.png", "documentation_url": null, "description": "a &lt;b&gt;", "code_example": "x &amp; y"})
            .as_object()
            .cloned()
            .unwrap()
    }

    #[test]
    fn an_identical_full_update_writes_nothing() {
        let sent = json!({"logo_url": "https://x/logo.png", "documentation_url": null, "description": "a <b>", "code_example": "x & y"});
        assert!(!should_update(sent.as_object().unwrap(), &stored()));
    }

    #[test]
    fn a_changed_or_partial_update_is_written() {
        let changed = json!({"logo_url": "https://x/new.png", "documentation_url": null, "description": "a <b>", "code_example": "x & y"});
        assert!(should_update(changed.as_object().unwrap(), &stored()));
        let partial = json!({"logo_url": "https://x/logo.png"});
        assert!(should_update(partial.as_object().unwrap(), &stored()));
    }

    #[test]
    fn descriptions_are_stored_html_escaped_without_quotes() {
        assert_eq!(html_escape("a <b> & \"c\""), "a &lt;b&gt; &amp; \"c\"");
        assert_eq!(html_unescape(&html_escape("x<&>y")), "x<&>y");
    }
}
