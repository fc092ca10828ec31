//! The Prefect UI, served as Prefect's server serves it: the static
//! bundles from the `prefect` wheel (V1 at `/`, V2 at `/v2`), their
//! `/PREFECT_UI_SERVE_BASE_REPLACE_PLACEHOLDER` base replaced as they are
//! read, any other path under a bundle answered with its `index.html` (the
//! UI routes in the browser), `/ui-settings` for the UI's runtime
//! configuration, and a browser opening `/` sent to its preferred UI.
//!
//! This binary ships no UI: `PREFECT_UI_STATIC_DIRECTORY` names the
//! bundles (see [`settings::UiSettings`]).

pub mod settings;

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

pub use settings::UiSettings;

/// The text Prefect's UI build leaves where its base path goes.
const PLACEHOLDER: &str = "/PREFECT_UI_SERVE_BASE_REPLACE_PLACEHOLDER";
/// The cookie holding a browser's chosen UI (`v1` or `v2`).
const VERSION_COOKIE: &str = "prefect_ui_version";

/// One UI build and where it is mounted.
#[derive(Debug, Clone)]
struct Bundle {
    version: &'static str,
    dir: PathBuf,
    /// `""` for `/`, `"/v2"` for the V2 UI.
    base: &'static str,
}

/// The mounted UI bundles and the settings `/ui-settings` reports.
#[derive(Debug)]
pub struct WebUi {
    v1: Option<Bundle>,
    v2: Option<Bundle>,
    api_url: String,
    v2_preferred: bool,
}

fn is_bundle(dir: &Path) -> bool {
    dir.join("index.html").is_file()
}

/// The V1 and V2 bundle directories the settings name (none when the UI
/// is off or unset).
fn bundle_dirs(settings: &UiSettings) -> (Option<PathBuf>, Option<PathBuf>) {
    let Some(root) = settings.static_directory.as_ref().filter(|_| settings.enabled) else {
        return (None, None);
    };
    if is_bundle(root) {
        (Some(root.clone()), None)
    } else {
        (Some(root.join("ui")).filter(|d| is_bundle(d)), Some(root.join("ui-v2")).filter(|d| is_bundle(d)))
    }
}

/// Whether the settings name a UI bundle to serve.
pub fn is_served(settings: &UiSettings) -> bool {
    let (v1, v2) = bundle_dirs(settings);
    v1.is_some() || v2.is_some()
}

impl WebUi {
    /// The UI the settings describe, or `None` when it is off or no bundle
    /// is found (then only the API is served, as before).
    pub fn from_settings(settings: &UiSettings) -> Option<Arc<WebUi>> {
        let (v1, v2) = bundle_dirs(settings);
        if v1.is_none() && v2.is_none() {
            if let Some(root) = settings.static_directory.as_ref().filter(|_| settings.enabled) {
                tracing::warn!(directory = %root.display(), "no UI bundle (index.html) found; serving the API only");
            }
            return None;
        }
        Some(Arc::new(WebUi {
            v1: v1.map(|dir| Bundle { version: "v1", dir, base: "" }),
            v2: v2.map(|dir| Bundle { version: "v2", dir, base: "/v2" }),
            api_url: settings.api_url.clone(),
            v2_preferred: settings.v2_enabled,
        }))
    }

    fn available(&self) -> Vec<&'static str> {
        [&self.v1, &self.v2].into_iter().flatten().map(|b| b.version).collect()
    }

    fn default_ui(&self) -> &'static str {
        match (&self.v1, &self.v2) {
            (_, Some(_)) if self.v2_preferred => "v2",
            (Some(_), _) => "v1",
            _ => "v2",
        }
    }

    /// `/ui-settings` (Prefect's `UISettings`).
    fn ui_settings(&self) -> serde_json::Value {
        json!({
            "api_url": self.api_url,
            "csrf_enabled": false,
            "auth": null,
            "flags": [],
            "default_ui": self.default_ui(),
            "available_uis": self.available(),
            "v1_base_url": self.v1.as_ref().map(|_| "/"),
            "v2_base_url": self.v2.as_ref().map(|_| "/v2"),
        })
    }

    /// The bundle a path belongs to, and the path inside it.
    fn bundle_for<'a>(&self, path: &'a str) -> Option<(&Bundle, &'a str)> {
        if let Some(v2) = &self.v2 {
            if path == "/v2" || path.starts_with("/v2/") {
                return Some((v2, &path[3..]));
            }
        }
        self.v1.as_ref().map(|v1| (v1, path))
    }
}

/// A browser loading a page (not a script fetching data), as Prefect tells.
fn is_html_navigation(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    header("sec-fetch-mode") == "navigate" || ["document", "iframe"].contains(&header("sec-fetch-dest").as_str()) || header("accept").contains("text/html")
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

/// A request path inside a bundle as a relative file path; `None` for
/// anything that could leave the bundle (`..`, absolute parts).
fn safe_relative(path: &str) -> Option<PathBuf> {
    let relative = Path::new(path.trim_start_matches('/'));
    relative.components().all(|c| matches!(c, Component::Normal(_))).then(|| relative.to_path_buf())
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Prefect rewrites the placeholder in these files of its bundles.
fn has_placeholder(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("txt" | "html" | "css" | "js" | "json"))
}

/// A file of the bundle, with the base path put in where Prefect's build
/// left its placeholder.
async fn file_response(bundle: &Bundle, file: &Path, method: &Method) -> Response {
    let Ok(bytes) = tokio::fs::read(file).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let bytes = if has_placeholder(file) {
        match String::from_utf8(bytes) {
            Ok(text) => text.replace(PLACEHOLDER, bundle.base).into_bytes(),
            Err(e) => e.into_bytes(),
        }
    } else {
        bytes
    };
    let len = bytes.len();
    let body = if method == Method::HEAD { Body::empty() } else { Body::from(bytes) };
    ([(header::CONTENT_TYPE, content_type(file).to_owned()), (header::CONTENT_LENGTH, len.to_string())], body).into_response()
}

/// Everything outside `/api`: `/ui-settings`, the redirect to the preferred
/// UI, the bundles' files, and their `index.html` for the UI's own routes.
pub async fn serve(State(ui): State<Arc<WebUi>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::NOT_FOUND, Json(json!({"detail": "Not Found"}))).into_response();
    }
    if path == "/ui-settings" || path == "/v2/ui-settings" {
        return Json(ui.ui_settings()).into_response();
    }
    if path == "/" && is_html_navigation(&method, &headers) {
        let available = ui.available();
        let preferred = cookie(&headers, VERSION_COOKIE).filter(|c| available.contains(&c.as_str())).unwrap_or_else(|| ui.default_ui().to_owned());
        if preferred == "v2" && ui.v2.is_some() {
            let target = match uri.query() {
                Some(q) => format!("/v2/?{q}"),
                None => "/v2/".to_owned(),
            };
            return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, target)]).into_response();
        }
    }
    let Some((bundle, inner)) = ui.bundle_for(path) else {
        return (StatusCode::NOT_FOUND, Json(json!({"detail": "Not Found"}))).into_response();
    };
    let Some(relative) = safe_relative(inner) else {
        return (StatusCode::NOT_FOUND, Json(json!({"detail": "Not Found"}))).into_response();
    };
    if path == "/v2" {
        return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, "/v2/")]).into_response();
    }
    let candidate = bundle.dir.join(&relative);
    if !relative.as_os_str().is_empty() && tokio::fs::metadata(&candidate).await.is_ok_and(|m| m.is_file()) {
        return file_response(bundle, &candidate, &method).await;
    }
    // The bundle's root, or a route of the UI loaded by a browser; a missing
    // file fetched by a script is a 404, as FastAPI's frontend answers.
    if relative.as_os_str().is_empty() || accepts_html(&headers) {
        return file_response(bundle, &bundle.dir.join("index.html"), &method).await;
    }
    (StatusCode::NOT_FOUND, Json(json!({"detail": "Not Found"}))).into_response()
}

/// An `Accept` naming HTML with a non-zero quality.
fn accepts_html(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let zero = parts.any(|p| p.replace(' ', "") == "q=0" || p.replace(' ', "") == "q=0.0");
        (media == "text/html" || media == "application/xhtml+xml") && !zero
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_leave_the_bundle() {
        assert_eq!(safe_relative("/assets/app.js"), Some(PathBuf::from("assets/app.js")));
        assert_eq!(safe_relative("/"), Some(PathBuf::new()));
        assert_eq!(safe_relative("/../etc/passwd"), None);
        assert_eq!(safe_relative("/assets/../../x"), None);
        assert_eq!(safe_relative("/./index.html"), None);
    }

    #[test]
    fn browsers_loading_pages_are_told_from_scripts() {
        let mut h = HeaderMap::new();
        h.insert("accept", "text/html,application/xhtml+xml".parse().unwrap());
        assert!(is_html_navigation(&Method::GET, &h));
        assert!(!is_html_navigation(&Method::POST, &h));
        let mut h = HeaderMap::new();
        h.insert("accept", "application/json".parse().unwrap());
        assert!(!is_html_navigation(&Method::GET, &h));
        h.insert("sec-fetch-mode", "navigate".parse().unwrap());
        assert!(is_html_navigation(&Method::GET, &h));
    }

    #[test]
    fn html_is_accepted_unless_its_quality_is_zero() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, v.parse().unwrap());
            accepts_html(&h)
        };
        assert!(with("text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"));
        assert!(!with("application/json, */*"));
        assert!(!with("text/html;q=0"));
        assert!(!accepts_html(&HeaderMap::new()));
    }

    #[test]
    fn the_ui_cookie_is_read_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; prefect_ui_version=v1; b=2".parse().unwrap());
        assert_eq!(cookie(&h, VERSION_COOKIE).as_deref(), Some("v1"));
        assert_eq!(cookie(&HeaderMap::new(), VERSION_COOKIE), None);
    }
}
