//! The Prefect UI served from its bundles: `/ui-settings`, the redirect of
//! a browser opening `/` to its preferred UI, files with the base-path
//! placeholder replaced, `index.html` for the UI's own routes, no way out
//! of the bundle, and the API untouched.

use std::path::Path;

use crate::helpers::{spawn_app_with, Backend, TestApp};

const PLACEHOLDER: &str = "/PREFECT_UI_SERVE_BASE_REPLACE_PLACEHOLDER";

/// Bundles laid out as the `prefect` wheel ships them (`ui/`, `ui-v2/`).
fn write_bundles(root: &Path) {
    for (dir, title) in [("ui", "V1"), ("ui-v2", "V2")] {
        std::fs::create_dir_all(root.join(dir).join("assets")).unwrap();
        std::fs::write(root.join(dir).join("index.html"), format!("<html><title>{title}</title><script src=\"{PLACEHOLDER}/assets/app.js\"></script></html>")).unwrap();
        std::fs::write(root.join(dir).join("assets/app.js"), format!("const base = \"{PLACEHOLDER}\";")).unwrap();
        std::fs::write(root.join(dir).join("assets/logo.png"), [0x89, b'P', b'N', b'G']).unwrap();
    }
}

async fn spawn_with_ui(root: &Path, enabled: bool) -> TestApp {
    let root = root.to_path_buf();
    spawn_app_with(Backend::Sqlite, move |s| {
        s.ui.static_directory = Some(root);
        s.ui.enabled = enabled;
        s.ui.v2_enabled = true;
    })
    .await
}

fn site(app: &TestApp) -> String {
    app.base.trim_end_matches("/api").to_owned()
}

async fn get(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> (u16, Option<String>, Option<String>, Vec<u8>) {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut req = client.get(format!("{}{path}", site(app)));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (status, location, content_type) = (resp.status().as_u16(), header("location"), header("content-type"));
    (status, location, content_type, resp.bytes().await.unwrap().to_vec())
}

/// A GET written by hand, so the path reaches the server as it is.
async fn raw_get(app: &TestApp, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = site(app).trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn text(body: &[u8]) -> String {
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn the_ui_is_served_from_its_bundles() {
    let root = std::env::temp_dir().join(format!("prefect_ui_{}", uuid::Uuid::new_v4().simple()));
    write_bundles(&root);
    let app = spawn_with_ui(&root, true).await;

    let (status, _, _, body) = get(&app, "/ui-settings", &[]).await;
    let settings: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200);
    assert_eq!(settings["available_uis"], serde_json::json!(["v1", "v2"]));
    assert_eq!((settings["default_ui"].as_str(), settings["v2_base_url"].as_str(), settings["csrf_enabled"].as_bool()), (Some("v2"), Some("/v2"), Some(false)));

    // A browser opening `/` goes to its preferred UI; a script does not.
    let (status, location, _, _) = get(&app, "/", &[("accept", "text/html")]).await;
    assert_eq!((status, location.as_deref()), (307, Some("/v2/")));
    let (status, _, _, body) = get(&app, "/", &[("accept", "text/html"), ("cookie", "prefect_ui_version=v1")]).await;
    assert_eq!(status, 200);
    assert_eq!(text(&body), "<html><title>V1</title><script src=\"/assets/app.js\"></script></html>");

    // Files, with the base path put in; the V2 bundle under /v2.
    let (status, _, content_type, body) = get(&app, "/assets/app.js", &[]).await;
    assert_eq!((status, content_type.as_deref(), text(&body)), (200, Some("text/javascript; charset=utf-8"), "const base = \"\";".to_owned()));
    let (_, _, _, body) = get(&app, "/v2/assets/app.js", &[]).await;
    assert_eq!(text(&body), "const base = \"/v2\";");
    let (_, _, content_type, body) = get(&app, "/assets/logo.png", &[]).await;
    assert_eq!((content_type.as_deref(), body), (Some("image/png"), vec![0x89, b'P', b'N', b'G']));

    // The UI's own routes load its index; nothing leaves the bundle.
    let (status, _, _, body) = get(&app, "/flow-runs/flow-run/abc", &[("accept", "text/html")]).await;
    assert!(status == 200 && text(&body).contains("<title>V1</title>"));
    let (status, _, _, body) = get(&app, "/v2/runs", &[("accept", "text/html")]).await;
    assert!(status == 200 && text(&body).contains("<title>V2</title>"));
    let (status, location, _, _) = get(&app, "/v2", &[("accept", "text/html")]).await;
    assert_eq!((status, location.as_deref()), (307, Some("/v2/")));
    // A missing file fetched by a script is a 404, not the index page.
    let (status, _, _, _) = get(&app, "/assets/missing.js", &[("accept", "*/*")]).await;
    assert_eq!(status, 404);
    // A raw request (no client to tidy the path) cannot climb out.
    let secret = root.parent().unwrap().join(format!("outside_{}.txt", uuid::Uuid::new_v4().simple()));
    std::fs::write(&secret, "do not serve").unwrap();
    let name = secret.file_name().unwrap().to_str().unwrap().to_owned();
    for path in [format!("/../{name}"), format!("/assets/../../{name}"), format!("/v2/../../{name}"), format!("/%2e%2e/{name}")] {
        let response = raw_get(&app, &path).await;
        assert!(!response.contains("do not serve"), "{path}: {response}");
    }
    let _ = std::fs::remove_file(&secret);

    // The API is untouched, and writes outside it are still 404s.
    let (status, body) = app.get("/health").await;
    assert_eq!((status, body), (200, serde_json::json!(true)));
    let resp = reqwest::Client::new().post(format!("{}/anything", site(&app))).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);

    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test]
async fn no_ui_is_served_when_it_is_off() {
    let root = std::env::temp_dir().join(format!("prefect_ui_{}", uuid::Uuid::new_v4().simple()));
    write_bundles(&root);
    let app = spawn_with_ui(&root, false).await;
    let (status, _, _, _) = get(&app, "/", &[("accept", "text/html")]).await;
    assert_eq!(status, 404);
    let (status, _, _, _) = get(&app, "/ui-settings", &[]).await;
    assert_eq!(status, 404);
    let _ = std::fs::remove_dir_all(&root);
}
