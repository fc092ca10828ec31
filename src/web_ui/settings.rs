//! The UI's settings (`PREFECT_SERVER_UI_*`, with Prefect's `PREFECT_UI_*`
//! aliases).

use std::path::PathBuf;

/// Where the UI bundles are and how the UI reaches the API.
#[derive(Debug, Clone, Default)]
pub struct UiSettings {
    /// `PREFECT_SERVER_UI_ENABLED` / `PREFECT_UI_ENABLED` (true): serve the
    /// UI when a bundle is found.
    pub enabled: bool,
    /// `PREFECT_SERVER_UI_STATIC_DIRECTORY` / `PREFECT_UI_STATIC_DIRECTORY`:
    /// a UI bundle (a directory with `index.html`), or a directory holding
    /// `ui/` and `ui-v2/` as the `prefect` wheel ships them under
    /// `prefect/server/`. Unset: no UI (this binary ships none).
    pub static_directory: Option<PathBuf>,
    /// `PREFECT_SERVER_UI_API_URL` / `PREFECT_UI_API_URL`: the API URL the
    /// browser uses. Default: `PREFECT_API_URL`, else
    /// `http://<host>:<port>/api`.
    pub api_url: String,
    /// `PREFECT_SERVER_UI_V2_ENABLED` / `PREFECT_UI_V2_ENABLED` (true): send
    /// browsers without a saved preference to the V2 UI when it is there.
    pub v2_enabled: bool,
}

impl UiSettings {
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>, host: std::net::IpAddr, port: u16) -> Result<Self, String> {
        let either = |name: &str| get(&format!("PREFECT_SERVER_UI_{name}")).map(|v| (format!("PREFECT_SERVER_UI_{name}"), v)).or_else(|| get(&format!("PREFECT_UI_{name}")).map(|v| (format!("PREFECT_UI_{name}"), v)));
        let flag = |name: &str| -> Result<bool, String> {
            match either(name) {
                None => Ok(true),
                Some((key, v)) => match v.trim().to_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => Ok(true),
                    "0" | "false" | "no" | "off" => Ok(false),
                    _ => Err(format!("{key}: {v:?} is not a boolean")),
                },
            }
        };
        let api_url = either("API_URL")
            .map(|(_, v)| v.trim().to_owned())
            .or_else(|| get("PREFECT_API_URL").map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| format!("http://{host}:{port}/api"));
        Ok(UiSettings {
            enabled: flag("ENABLED")?,
            static_directory: either("STATIC_DIRECTORY").map(|(_, v)| PathBuf::from(v.trim())),
            api_url,
            v2_enabled: flag("V2_ENABLED")?,
        })
    }
}
