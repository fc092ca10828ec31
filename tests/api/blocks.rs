//! Blocks through the HTTP API (Prefect's `block_types`, `block_schemas`,
//! `block_documents` and `block_capabilities` routers): registration as the
//! client does it, secrets hidden on read and kept when posted back hidden,
//! nested block references, filters, cascades, feed events and replay.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::TestApp;

fn names(list: &Value) -> Vec<&str> {
    list.as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect()
}

/// A block class's schema as the client sends it: `secret_fields` and the
/// (empty or nested) `block_schema_references`.
fn schema_fields(title: &str, slug: &str, props: Value, secret: &[&str], refs: Value, definitions: Option<Value>) -> Value {
    let mut fields = json!({
        "title": title, "type": "object", "properties": props, "block_type_slug": slug,
        "secret_fields": secret, "block_schema_references": refs,
    });
    if let Some(d) = definitions {
        fields["definitions"] = d;
    }
    fields
}

/// Registers a type and a schema; returns (type id, schema id, checksum).
async fn register(app: &TestApp, name: &str, slug: &str, fields: Value, capabilities: Value) -> (String, String, String) {
    let (status, t) = app.post("/block_types/", json!({"name": name, "slug": slug, "description": "Has <b> & co"})).await;
    assert_eq!(status, 201, "{t}");
    let type_id = t["id"].as_str().unwrap().to_owned();
    let (status, s) = app.post("/block_schemas/", json!({"fields": fields, "block_type_id": type_id, "capabilities": capabilities})).await;
    assert_eq!(status, 201, "{s}");
    (type_id, s["id"].as_str().unwrap().to_owned(), s["checksum"].as_str().unwrap().to_owned())
}

both_backends!(block_types_and_schemas_register_like_the_client, |app: TestApp| async move {
    let fields = schema_fields("Creds", "creds", json!({"user": {"type": "string"}, "password": {"type": "string", "format": "password"}}), &["password"], json!({}), None);
    let (status, t) = app.post("/block_types/", json!({"name": "Creds", "slug": "creds", "description": "a <b> & c"})).await;
    assert_eq!(status, 201, "{t}");
    let keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["id", "created", "updated", "name", "slug", "logo_url", "documentation_url", "description", "code_example", "is_protected"]);
    assert_eq!((t["description"].clone(), t["is_protected"].clone()), (json!("a &lt;b&gt; &amp; c"), json!(false)));
    let type_id = t["id"].as_str().unwrap().to_owned();

    // Prefect's refusals: reserved names, taken slugs, bad slugs, unknown fields.
    let (status, body) = app.post("/block_types/", json!({"name": "PrefectThing", "slug": "pt"})).await;
    assert_eq!((status, body), (403, json!({"detail": "Block type names beginning with 'Prefect' are reserved."})));
    let (status, body) = app.post("/block_types/", json!({"name": "Other", "slug": "creds"})).await;
    assert_eq!((status, body), (409, json!({"detail": "Block type with name \"Other\" already exists"})));
    let (status, body) = app.post("/block_types/", json!({"name": "Bad", "slug": "Bad Slug"})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["exception_detail"][0]["msg"], json!("Value error, Block type slug must only contain lowercase letters, numbers, and dashes."));
    let (status, _) = app.post("/block_types/", json!({"name": "X", "slug": "x", "colour": 1})).await;
    assert_eq!(status, 422);

    // Schemas: 201, then 200 with the same schema for the same checksum and
    // version; a new version is a new schema. Lookups by checksum.
    let (status, s) = app.post("/block_schemas/", json!({"fields": fields, "block_type_id": type_id, "capabilities": ["read"]})).await;
    assert_eq!(status, 201, "{s}");
    assert!(s["checksum"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!((s["version"].clone(), s["block_type"]["slug"].clone(), s["fields"]["secret_fields"].clone()), (json!("non-versioned"), json!("creds"), json!(["password"])));
    let (status, again) = app.post("/block_schemas/", json!({"fields": fields, "block_type_id": type_id, "capabilities": ["read"]})).await;
    assert_eq!((status, again["id"].clone()), (200, s["id"].clone()));
    let (status, v2) = app.post("/block_schemas/", json!({"fields": fields, "block_type_id": type_id, "capabilities": ["read", "write"], "version": "2"})).await;
    assert_eq!(status, 201, "{v2}");
    let checksum = s["checksum"].as_str().unwrap();
    let (status, newest) = app.get(&format!("/block_schemas/checksum/{checksum}")).await;
    assert_eq!((status, newest["id"].clone()), (200, v2["id"].clone()));
    let (_, first) = app.get(&format!("/block_schemas/checksum/{checksum}?version=non-versioned")).await;
    assert_eq!(first["id"], s["id"]);
    let (status, _) = app.get("/block_schemas/checksum/sha256:nope").await;
    assert_eq!(status, 404);
    let (status, body) = app.post("/block_schemas/", json!({"fields": {}, "block_type_id": "00000000-0000-0000-0000-000000000001"})).await;
    assert_eq!((status, body["detail"].clone()), (404, json!("Block type 00000000-0000-0000-0000-000000000001 not found.")));

    // A nested reference to a type nobody registered is a 409.
    let nested = schema_fields("Outer", "outer", json!({"c": {"$ref": "#/definitions/Creds"}}), &[], json!({"c": {"block_type_slug": "ghost", "block_schema_checksum": "sha256:x"}}), Some(json!({})));
    let (status, body) = app.post("/block_schemas/", json!({"fields": nested, "block_type_id": type_id})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["detail"], json!("Cannot create block schema because block type 'ghost' was not found.Did you forget to register the block type?"));

    // Filters, capabilities.
    let (_, listed) = app.post("/block_schemas/filter", json!({"block_schemas": {"block_capabilities": {"all_": ["write"]}}})).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let (_, listed) = app.post("/block_schemas/filter", json!({"block_schemas": {"version": {"any_": ["non-versioned", "2"]}}})).await;
    assert_eq!(listed.as_array().unwrap().iter().map(|s| s["version"].clone()).collect::<Vec<_>>(), [json!("2"), json!("non-versioned")]);
    let (_, caps) = app.get("/block_capabilities/").await;
    assert_eq!(caps, json!(["read", "write"]));
    let (_, types) = app.post("/block_types/filter", json!({"block_types": {"name": {"like_": "RED"}}})).await;
    assert_eq!(names(&types), ["Creds"]);
    let (_, types) = app.post("/block_types/filter", json!({"block_schemas": {"block_capabilities": {"all_": ["nothing"]}}})).await;
    assert_eq!(names(&types), Vec::<&str>::new());

    // Updates change only what differs; reads by id and slug.
    let (status, _) = app.call(reqwest::Method::PATCH, &format!("/block_types/{type_id}"), Some(json!({"logo_url": "https://x/l.png"}))).await;
    assert_eq!(status, 204);
    let (_, read) = app.get("/block_types/slug/creds").await;
    assert_eq!((read["logo_url"].clone(), read["description"].clone()), (json!("https://x/l.png"), json!("a &lt;b&gt; &amp; c")));
    let (status, body) = app.get("/block_types/slug/nope").await;
    assert_eq!((status, body), (404, json!({"detail": "Block type not found"})));
    let (status, _) = app.post("/block_types/install_system_block_types", json!({})).await;
    assert_eq!(status, 501);

    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
});

both_backends!(block_documents_keep_secrets_and_resolve_references, |app: TestApp| async move {
    let creds_fields = schema_fields("Creds", "creds", json!({"user": {"type": "string"}, "password": {"type": "string"}}), &["password"], json!({}), None);
    let (creds_type, creds_schema, creds_checksum) = register(&app, "Creds", "creds", creds_fields.clone(), json!([])).await;
    let outer_fields = schema_fields(
        "Outer", "outer",
        json!({"creds": {"$ref": "#/definitions/Creds"}, "label": {"type": "string"}}),
        &["creds.password"],
        json!({"creds": {"block_type_slug": "creds", "block_schema_checksum": creds_checksum}}),
        Some(json!({"Creds": creds_fields})),
    );
    let (outer_type, outer_schema, _) = register(&app, "Outer", "outer", outer_fields, json!([])).await;

    // Create: the secret is hidden in the answer and in plain reads.
    let body = json!({"name": "prod", "block_type_id": creds_type, "block_schema_id": creds_schema, "data": {"user": "ann", "password": "hunter2"}});
    let (status, creds) = app.post("/block_documents/", body.clone()).await;
    assert_eq!(status, 201, "{creds}");
    let keys: Vec<&str> = creds.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["id", "created", "updated", "name", "data", "block_schema_id", "block_schema", "block_type_id", "block_type_name", "block_type", "block_document_references", "is_anonymous"]);
    assert_eq!((creds["data"].clone(), creds["block_type_name"].clone()), (json!({"user": "ann", "password": "********"}), json!("Creds")));
    let creds_id = creds["id"].as_str().unwrap().to_owned();
    let (status, body) = app.post("/block_documents/", body).await;
    assert_eq!((status, body), (409, json!({"detail": "Block already exists"})));
    let (status, body) = app.post("/block_documents/", json!({"block_type_id": creds_type, "block_schema_id": creds_schema})).await;
    assert_eq!((status, body["exception_detail"][0]["msg"].clone()), (422, json!("Value error, Names must be provided for block documents.")));
    let (_, secret) = app.get(&format!("/block_documents/{creds_id}?include_secrets=true")).await;
    assert_eq!(secret["data"]["password"], json!("hunter2"));
    // At rest, in the log and in the read model, the values are sealed.
    let payloads = app.db.q("SELECT CAST(payload AS TEXT) FROM es_events WHERE stream_type = 'block_document'");
    let payloads: Vec<String> = sqlx::query_scalar(&payloads).fetch_all(app.db.reader()).await.unwrap();
    assert!(!payloads.is_empty() && payloads.iter().all(|p| p.contains("sealed:v1:") && !p.contains("hunter2")), "{payloads:?}");
    let stored: Vec<String> = sqlx::query_scalar("SELECT data FROM block_document").fetch_all(app.db.reader()).await.unwrap();
    assert!(stored.iter().all(|d| d.starts_with("\"sealed:v1:")), "{stored:?}");
    let (status, body) = app.get(&format!("/block_documents/{creds_id}?include_secrets=maybe")).await;
    assert_eq!((status, body["exception_detail"][0]["type"].clone()), (422, json!("bool_parsing")));

    // Posting the hidden text back keeps the secret; a merge keeps the rest.
    let (status, _) = app.call(reqwest::Method::PATCH, &format!("/block_documents/{creds_id}"), Some(json!({"data": {"user": "bob", "password": "********"}}))).await;
    assert_eq!(status, 204);
    let (_, after) = app.get("/block_types/slug/creds/block_documents/name/prod?include_secrets=true").await;
    assert_eq!(after["data"], json!({"user": "bob", "password": "hunter2"}));

    // A nested block by reference: read resolved, its secrets hidden.
    let outer = json!({"name": "app", "block_type_id": outer_type, "block_schema_id": outer_schema, "data": {"label": "x", "creds": {"$ref": {"block_document_id": creds_id}}}});
    let (status, outer) = app.post("/block_documents/", outer).await;
    assert_eq!(status, 201, "{outer}");
    assert_eq!(outer["data"], json!({"label": "x", "creds": {"user": "bob", "password": "********"}}));
    assert_eq!(outer["block_document_references"]["creds"]["block_document"]["name"], json!("prod"));
    assert_eq!(outer["block_document_references"]["creds"]["block_document"]["block_type"]["slug"], json!("creds"));
    let outer_id = outer["id"].as_str().unwrap().to_owned();

    // A reference back to the parent would form a cycle: 400, nothing stored.
    let (status, body) = app.call(reqwest::Method::PATCH, &format!("/block_documents/{creds_id}"), Some(json!({"data": {"loop": {"$ref": {"block_document_id": outer_id}}}}))).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app.post("/block_documents/", json!({"name": "bad", "block_type_id": outer_type, "block_schema_id": outer_schema, "data": {"creds": {"$ref": {}}}})).await;
    assert_eq!((status, body), (400, json!({"detail": "Received block reference without a block_document_id in key creds"})));
    // Moving to another type's schema is refused.
    let (status, body) = app.call(reqwest::Method::PATCH, &format!("/block_documents/{creds_id}"), Some(json!({"block_schema_id": outer_schema, "data": {}}))).await;
    assert_eq!((status, body), (400, json!({"detail": "Must migrate block document to a block schema of the same block type."})));

    // Anonymous documents: named for the client, left out of default lists.
    let (status, anon) = app.post("/block_documents/", json!({"is_anonymous": true, "block_type_id": creds_type, "block_schema_id": creds_schema, "data": {"user": "z"}})).await;
    assert_eq!(status, 201, "{anon}");
    assert!(anon["name"].as_str().unwrap().starts_with("anonymous-"));
    let (_, listed) = app.post("/block_documents/filter", json!({"sort": "NAME_DESC"})).await;
    assert_eq!(names(&listed), ["prod", "app"]);
    let (_, n) = app.post("/block_documents/count", json!({"block_documents": {"is_anonymous": null}})).await;
    assert_eq!(n, json!(3));
    let (_, listed) = app.post("/block_documents/filter", json!({"block_types": {"slug": {"any_": ["outer"]}}})).await;
    assert_eq!(names(&listed), ["app"]);
    let (_, listed) = app.get("/block_types/slug/creds/block_documents").await;
    assert_eq!(names(&listed), ["prod"]);

    // Deleting the referenced document drops the reference from its parent.
    let (status, _) = app.call(reqwest::Method::DELETE, &format!("/block_documents/{creds_id}"), None).await;
    assert_eq!(status, 204);
    let (_, outer) = app.get(&format!("/block_documents/{outer_id}")).await;
    assert_eq!((outer["data"].clone(), outer["block_document_references"].clone()), (json!({"label": "x"}), json!({})));
    let (status, body) = app.call(reqwest::Method::DELETE, &format!("/block_documents/{creds_id}"), None).await;
    assert_eq!((status, body), (404, json!({"detail": "Block document not found"})));

    // Prefect's lifecycle events reach the feed, without the secret.
    let rid = format!("prefect.block-document.{creds_id}");
    let events = app
        .wait_for("block document events in the feed", || async {
            let (_, page) = app.post("/events/filter", json!({"filter": {"any_resource": {"id": [rid.as_str()]}}, "limit": 10})).await;
            let evs: Vec<Value> = page["events"].as_array().cloned().unwrap_or_default();
            (evs.len() == 3).then_some(evs)
        })
        .await;
    let created = events.iter().find(|e| e["event"] == "prefect.block-document.created").expect("created event");
    assert_eq!(created["payload"]["data"], json!({"user": "ann"}));
    assert_eq!(created["related"][0]["prefect.resource.role"], json!("block-type"));

    // Deleting a type takes its schemas and documents.
    let (status, _) = app.call(reqwest::Method::DELETE, &format!("/block_types/{outer_type}"), None).await;
    assert_eq!(status, 204);
    let (status, _) = app.get(&format!("/block_documents/{outer_id}")).await;
    assert_eq!(status, 404);
    let (status, _) = app.get(&format!("/block_schemas/{outer_schema}")).await;
    assert_eq!(status, 404);

    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
});

both_backends!(the_server_default_result_storage_names_a_writable_block, |app: TestApp| async move {
    let storage_fields = schema_fields("Disk", "disk", json!({"basepath": {"type": "string"}}), &[], json!({}), None);
    let (disk_type, disk_schema, _) = register(&app, "Disk", "disk", storage_fields, json!(["read-path", "write-path"])).await;
    let plain_fields = schema_fields("Plain", "plain", json!({"x": {"type": "string"}}), &[], json!({}), None);
    let (plain_type, plain_schema, _) = register(&app, "Plain", "plain", plain_fields, json!([])).await;
    let (_, disk) = app.post("/block_documents/", json!({"name": "disk", "block_type_id": disk_type, "block_schema_id": disk_schema, "data": {"basepath": "/tmp/x"}})).await;
    let (_, plain) = app.post("/block_documents/", json!({"name": "plain", "block_type_id": plain_type, "block_schema_id": plain_schema, "data": {"x": "y"}})).await;

    let (status, body) = app.get("/admin/storage").await;
    assert_eq!((status, body), (200, json!({"default_result_storage_block_id": null})));
    let (status, body) = app.call(reqwest::Method::PUT, "/admin/storage", Some(json!({"default_result_storage_block_id": plain["id"]}))).await;
    assert_eq!((status, body["detail"].clone()), (422, json!(format!("Block document {} cannot be used for result storage.", plain["id"].as_str().unwrap()))));
    let ghost = "00000000-0000-0000-0000-00000000abcd";
    let (status, body) = app.call(reqwest::Method::PUT, "/admin/storage", Some(json!({"default_result_storage_block_id": ghost}))).await;
    assert_eq!((status, body), (404, json!({"detail": format!("Block document {ghost} not found.")})));
    let (status, body) = app.call(reqwest::Method::PUT, "/admin/storage", Some(json!({"default_result_storage_block_id": disk["id"]}))).await;
    assert_eq!((status, body), (200, json!({"default_result_storage_block_id": disk["id"]})));
    let (_, body) = app.get("/admin/storage").await;
    assert_eq!(body["default_result_storage_block_id"], disk["id"]);

    // Clearing, setting again, and a deleted document reading as unset.
    let (status, _) = app.call(reqwest::Method::DELETE, "/admin/storage", None).await;
    assert_eq!(status, 204);
    let (_, body) = app.get("/admin/storage").await;
    assert_eq!(body["default_result_storage_block_id"], Value::Null);
    let (status, _) = app.call(reqwest::Method::PUT, "/admin/storage", Some(json!({"default_result_storage_block_id": disk["id"]}))).await;
    assert_eq!(status, 200);
    let (status, _) = app.call(reqwest::Method::DELETE, &format!("/block_documents/{}", disk["id"].as_str().unwrap()), None).await;
    assert_eq!(status, 204);
    let (_, body) = app.get("/admin/storage").await;
    assert_eq!(body["default_result_storage_block_id"], Value::Null);

    let report = prefect_server::replay::rebuild_server(&app.db, true).await.unwrap();
    assert!(report.matches(), "{}", crate::helpers::diff_report(&report));
});
