//! The calls every Prefect client makes first.

use crate::both_backends;
use crate::helpers::TestApp;

both_backends!(handshake_routes_answer_like_prefect, |app: TestApp| async move {
    assert_eq!(app.get("/health").await, (200, serde_json::json!(true)));
    assert_eq!(app.get("/admin/version").await, (200, serde_json::json!("3.8.8")));
    assert_eq!(app.get("/version").await, (200, serde_json::json!("0.8.4")));
    let (status, body) = app.get("/csrf-token?client=abc").await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"], "CSRF protection is disabled.");
    let (status, body) = app.get("/admin/storage").await;
    assert_eq!(status, 200);
    assert!(body["default_result_storage_block_id"].is_null());
    let resp = app.client.get(app.url("/admin/version")).header("X-PREFECT-API-VERSION", "0.7.0").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let resp = app.client.get(app.url("/admin/version")).header("X-PREFECT-API-VERSION", "nope").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // /health is outside Prefect's routers and ignores the header.
    let resp = app.client.get(app.url("/health")).header("X-PREFECT-API-VERSION", "nope").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
});
