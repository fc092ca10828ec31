//! Server configuration: one typed struct read once from `PREFECT_*`
//! environment variables, using Prefect's own names where they exist so a
//! Prefect user's settings keep working.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Which database backs the event log and the read models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `postgresql://…` (a `+asyncpg` driver suffix is accepted and dropped).
    Postgres(String),
    /// A SQLite file path (`:memory:` is refused: the log must be durable).
    Sqlite(PathBuf),
}

impl DatabaseUrl {
    /// Parses the URL forms Prefect users already have in their profiles.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if let Some(rest) = strip_scheme(raw, &["postgresql+asyncpg://", "postgresql://", "postgres://"]) {
            return Ok(DatabaseUrl::Postgres(format!("postgresql://{rest}")));
        }
        if let Some(rest) = strip_scheme(raw, &["sqlite+aiosqlite:///", "sqlite:///"]) {
            // As in SQLAlchemy: sqlite:////abs/path is absolute, sqlite:///rel is relative.
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() || path.contains(":memory:") {
                return Err(format!("database URL {raw:?} names no SQLite file"));
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        Err(format!(
            "database URL {raw:?} is neither postgresql://… nor sqlite://…"
        ))
    }

    /// The URL with any password hidden, for logs.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(p) => format!("sqlite:///{}", p.display()),
            DatabaseUrl::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(s), Some(at)) if url[s + 3..at].contains(':') => {
                    let user_end = s + 3 + url[s + 3..at].find(':').unwrap_or(0);
                    format!("{}:***{}", &url[..user_end], &url[at..])
                }
                _ => url.clone(),
            },
        }
    }
}

fn strip_scheme<'a>(raw: &'a str, schemes: &[&str]) -> Option<&'a str> {
    schemes.iter().find_map(|s| raw.strip_prefix(s))
}

/// Which broker carries live events to subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// In-process (the embedded default): one API process sees its own events.
    Memory,
    /// NATS JetStream: every API process sees every event.
    Nats,
}

impl BrokerKind {
    /// `memory` (or Prefect's `prefect.server.utilities.messaging.memory`) or
    /// `nats`, case-insensitive.
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "memory" | "prefect.server.utilities.messaging.memory" => Ok(BrokerKind::Memory),
            "nats" => Ok(BrokerKind::Nats),
            _ => Err(format!("{raw:?} is not one of memory, nats")),
        }
    }
}

/// Everything the server reads from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `PREFECT_SERVER_API_HOST` (default 127.0.0.1).
    pub host: IpAddr,
    /// `PREFECT_SERVER_API_PORT` (default 4200; 0 picks a free port).
    pub port: u16,
    /// `PREFECT_API_DATABASE_CONNECTION_URL` or its alias `PREFECT_DATABASE_URL`;
    /// default: `$PREFECT_HOME/prefect-server.db`.
    pub database: DatabaseUrl,
    /// `PREFECT_HOME` (default `~/.prefect-server`).
    pub home: PathBuf,
    /// `PREFECT_SERVER_LOGGING_LEVEL` (default INFO).
    pub log_level: String,
    /// `PREFECT_SERVER_API_DEFAULT_LIMIT` (default 200): the largest `limit` a
    /// filter route accepts.
    pub default_limit: i64,
    /// `PREFECT_API_MAX_FLOW_RUN_GRAPH_NODES` (alias
    /// `PREFECT_SERVER_FLOW_RUN_GRAPH_MAX_NODES`; default 10,000): a larger run
    /// graph is refused with 400.
    pub max_flow_run_graph_nodes: usize,
    /// `PREFECT_SERVER_API_MAX_BODY_BYTES` (default 10 MiB): larger request
    /// bodies are refused with 413 before they are read.
    pub max_body_bytes: usize,
    /// `PREFECT_SERVER_EVENTS_MAXIMUM_SIZE_BYTES` (default 1.5 MB): the largest
    /// websocket frame accepted on `/events/in`.
    pub max_event_bytes: usize,
    /// `PREFECT_API_DATABASE_POOL_SIZE` (default 10, Postgres only).
    pub pool_size: u32,
    /// `PREFECT_MESSAGING_BROKER` (Prefect's name; also
    /// `PREFECT_SERVER_EVENTS_MESSAGING_BROKER`) or its alias
    /// `PREFECT_BROKER_BACKEND`: `memory` (default) or `nats`.
    pub broker: BrokerKind,
    /// `PREFECT_NATS_URL` (default `nats://127.0.0.1:4222`).
    pub nats_url: String,
    /// `PREFECT_NATS_STREAM` (default `PREFECT_EVENTS`): the JetStream stream.
    pub nats_stream: String,
    /// `PREFECT_NATS_SUBJECT_PREFIX` (default `prefect.events`): events are
    /// published on `<prefix>.<event name>`.
    pub nats_subject_prefix: String,
    /// `PREFECT_SERVER_EVENTS_RETENTION_PERIOD` (alias
    /// `PREFECT_EVENTS_RETENTION_PERIOD`; default 7 days): how long the events
    /// read model keeps an event. The log itself is never trimmed by this.
    pub events_retention: std::time::Duration,
    /// The background services' loops (`PREFECT_SERVER_SERVICES_*`).
    pub services: crate::services::settings::ServiceSettings,
    /// The Prefect UI (`PREFECT_SERVER_UI_*` / `PREFECT_UI_*`).
    pub ui: crate::web_ui::UiSettings,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process
    /// environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let home = match get("PREFECT_HOME") {
            Some(h) => PathBuf::from(expand_home(&h, &lookup)),
            None => PathBuf::from(expand_home("~/.prefect-server", &lookup)),
        };
        let host: IpAddr = parse_var(&get, "PREFECT_SERVER_API_HOST", "127.0.0.1")?;
        let port: u16 = parse_var(&get, "PREFECT_SERVER_API_PORT", "4200")?;
        let database = match get("PREFECT_API_DATABASE_CONNECTION_URL").or_else(|| get("PREFECT_DATABASE_URL")) {
            Some(url) => DatabaseUrl::parse(&url)
                .map_err(|e| format!("PREFECT_API_DATABASE_CONNECTION_URL: {e}"))?,
            None => DatabaseUrl::Sqlite(home.join("prefect-server.db")),
        };
        let log_level = get("PREFECT_SERVER_LOGGING_LEVEL").unwrap_or_else(|| "INFO".into());
        if !["TRACE", "DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"]
            .contains(&log_level.to_uppercase().as_str())
        {
            return Err(format!(
                "PREFECT_SERVER_LOGGING_LEVEL: {log_level:?} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
            ));
        }
        let default_limit: i64 = parse_var(&get, "PREFECT_SERVER_API_DEFAULT_LIMIT", "200")?;
        if default_limit < 1 {
            return Err("PREFECT_SERVER_API_DEFAULT_LIMIT: must be at least 1".into());
        }
        let broker_var = ["PREFECT_MESSAGING_BROKER", "PREFECT_SERVER_EVENTS_MESSAGING_BROKER", "PREFECT_BROKER_BACKEND"]
            .into_iter()
            .find_map(|k| get(k).map(|v| (k, v)));
        let broker = match broker_var {
            Some((key, raw)) => BrokerKind::parse(&raw).map_err(|e| format!("{key}: {e}"))?,
            None => BrokerKind::Memory,
        };
        let nats_stream = get("PREFECT_NATS_STREAM").unwrap_or_else(|| "PREFECT_EVENTS".into()).trim().to_owned();
        if nats_stream.chars().any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\')) {
            return Err(format!("PREFECT_NATS_STREAM: {nats_stream:?} is not a valid stream name"));
        }
        let nats_subject_prefix = get("PREFECT_NATS_SUBJECT_PREFIX")
            .unwrap_or_else(|| "prefect.events".into())
            .trim()
            .to_owned();
        if nats_subject_prefix
            .split('.')
            .any(|t| t.is_empty() || t.chars().any(|c| !c.is_ascii_graphic() || c == '*' || c == '>'))
        {
            return Err(format!(
                "PREFECT_NATS_SUBJECT_PREFIX: {nats_subject_prefix:?} is not a valid subject prefix"
            ));
        }
        let services = crate::services::settings::ServiceSettings::from_lookup(&get)?;
        let ui = crate::web_ui::UiSettings::from_lookup(&get, host, port)?;
        let max_event_bytes = parse_var::<f64>(&get, "PREFECT_SERVER_EVENTS_MAXIMUM_SIZE_BYTES", "1500000")? as usize;
        Ok(Settings {
            host,
            port,
            database,
            home,
            log_level,
            default_limit,
            max_body_bytes: parse_var(&get, "PREFECT_SERVER_API_MAX_BODY_BYTES", "10485760")?,
            max_flow_run_graph_nodes: match get("PREFECT_SERVER_FLOW_RUN_GRAPH_MAX_NODES") {
                Some(_) => parse_var(&get, "PREFECT_SERVER_FLOW_RUN_GRAPH_MAX_NODES", "10000")?,
                None => parse_var(&get, "PREFECT_API_MAX_FLOW_RUN_GRAPH_NODES", "10000")?,
            },
            max_event_bytes,
            pool_size: parse_var(&get, "PREFECT_API_DATABASE_POOL_SIZE", "10")?,
            broker,
            nats_url: get("PREFECT_NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into()).trim().to_owned(),
            nats_stream,
            nats_subject_prefix,
            services,
            ui,
            events_retention: {
                let raw = get("PREFECT_SERVER_EVENTS_RETENTION_PERIOD")
                    .or_else(|| get("PREFECT_EVENTS_RETENTION_PERIOD"))
                    .unwrap_or_else(|| "P7D".into());
                parse_duration(&raw)
                    .ok_or_else(|| format!("PREFECT_SERVER_EVENTS_RETENTION_PERIOD: {raw:?} is not a duration (seconds or ISO 8601 like P7D)"))?
            },
        })
    }

    pub fn bind_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// The `tracing` filter directive for the configured level.
    pub fn tracing_directive(&self) -> &'static str {
        match self.log_level.to_uppercase().as_str() {
            "TRACE" => "trace",
            "DEBUG" => "debug",
            "WARNING" | "WARN" => "warn",
            "ERROR" | "CRITICAL" => "error",
            _ => "info",
        }
    }
}

fn parse_var<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    key: &str,
    default: &str,
) -> Result<T, String> {
    let raw = get(key).unwrap_or_else(|| default.to_owned());
    raw.trim()
        .parse()
        .map_err(|_| format!("{key}: {raw:?} is not a valid value"))
}

/// A duration as pydantic reads a `timedelta`: seconds (`604800`, `1.5`) or
/// ISO 8601 (`P7D`, `PT12H`, `P1DT2H30M`).
pub fn parse_duration(raw: &str) -> Option<std::time::Duration> {
    let raw = raw.trim();
    if let Ok(secs) = raw.parse::<f64>() {
        return (secs >= 0.0 && secs.is_finite()).then(|| std::time::Duration::from_secs_f64(secs));
    }
    let rest = raw.strip_prefix('P').or_else(|| raw.strip_prefix('p'))?;
    let (date, time) = match rest.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut total = 0.0;
    let mut take = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut num = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
            } else {
                let (_, scale) = units.iter().find(|(u, _)| *u == c.to_ascii_uppercase())?;
                total += num.parse::<f64>().ok()? * scale;
                num.clear();
            }
        }
        num.is_empty().then_some(())
    };
    take(date, &[('W', 604800.0), ('D', 86400.0)])?;
    if let Some(t) = time {
        take(t, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    (!rest.is_empty() && rest != "T").then(|| std::time::Duration::from_secs_f64(total))
}

fn expand_home(path: &str, lookup: &impl Fn(&str) -> Option<String>) -> String {
    match path.strip_prefix("~/") {
        Some(rest) => format!("{}/{rest}", lookup("HOME").unwrap_or_else(|| ".".into())),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, String> {
        let map: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_to_sqlite_under_prefect_home() {
        let s = settings(&[("HOME", "/home/u")]).unwrap();
        assert_eq!(s.database, DatabaseUrl::Sqlite("/home/u/.prefect-server/prefect-server.db".into()));
        assert_eq!(s.bind_addr().to_string(), "127.0.0.1:4200");
    }

    #[test]
    fn accepts_prefect_style_urls() {
        for (raw, want) in [
            ("postgresql+asyncpg://postgres@127.0.0.1:5432/db", "postgresql://postgres@127.0.0.1:5432/db"),
            ("postgresql://u:p@h/db", "postgresql://u:p@h/db"),
        ] {
            assert_eq!(DatabaseUrl::parse(raw).unwrap(), DatabaseUrl::Postgres(want.into()));
        }
        assert_eq!(
            DatabaseUrl::parse("sqlite+aiosqlite:////tmp/x.db").unwrap(),
            DatabaseUrl::Sqlite("/tmp/x.db".into())
        );
        assert_eq!(DatabaseUrl::parse("sqlite:///rel.db").unwrap(), DatabaseUrl::Sqlite("rel.db".into()));
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        assert!(DatabaseUrl::parse("sqlite:///:memory:").is_err());
    }

    #[test]
    fn bad_values_are_one_line_errors() {
        let err = settings(&[("PREFECT_SERVER_API_PORT", "http")]).unwrap_err();
        assert_eq!(err, "PREFECT_SERVER_API_PORT: \"http\" is not a valid value");
        assert!(settings(&[("PREFECT_SERVER_LOGGING_LEVEL", "LOUD")]).is_err());
        assert!(settings(&[("PREFECT_DATABASE_URL", "oracle://x")]).is_err());
    }

    #[test]
    fn broker_defaults_to_memory() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.broker, BrokerKind::Memory);
        assert_eq!(s.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(s.nats_stream, "PREFECT_EVENTS");
        assert_eq!(s.nats_subject_prefix, "prefect.events");
    }

    #[test]
    fn broker_is_read_from_prefect_names_and_the_alias() {
        let kind = |vars: &[(&str, &str)]| settings(vars).unwrap().broker;
        assert_eq!(kind(&[("PREFECT_MESSAGING_BROKER", "nats")]), BrokerKind::Nats);
        assert_eq!(kind(&[("PREFECT_SERVER_EVENTS_MESSAGING_BROKER", "NATS")]), BrokerKind::Nats);
        assert_eq!(kind(&[("PREFECT_BROKER_BACKEND", "nats")]), BrokerKind::Nats);
        assert_eq!(
            kind(&[("PREFECT_MESSAGING_BROKER", "prefect.server.utilities.messaging.memory")]),
            BrokerKind::Memory
        );
        // The Prefect name wins over the alias.
        assert_eq!(
            kind(&[("PREFECT_MESSAGING_BROKER", "memory"), ("PREFECT_BROKER_BACKEND", "nats")]),
            BrokerKind::Memory
        );
        let s = settings(&[
            ("PREFECT_NATS_URL", "nats://nats:4222"),
            ("PREFECT_NATS_STREAM", "EVENTS_B"),
            ("PREFECT_NATS_SUBJECT_PREFIX", "b.events"),
        ])
        .unwrap();
        assert_eq!((s.nats_url.as_str(), s.nats_stream.as_str()), ("nats://nats:4222", "EVENTS_B"));
        assert_eq!(s.nats_subject_prefix, "b.events");
    }

    #[test]
    fn bad_broker_values_are_one_line_errors() {
        let err = settings(&[("PREFECT_MESSAGING_BROKER", "kafka")]).unwrap_err();
        assert_eq!(err, "PREFECT_MESSAGING_BROKER: \"kafka\" is not one of memory, nats");
        let err = settings(&[("PREFECT_BROKER_BACKEND", "redis")]).unwrap_err();
        assert!(err.starts_with("PREFECT_BROKER_BACKEND: "), "{err}");
        assert!(settings(&[("PREFECT_NATS_STREAM", "a.b")]).is_err());
        assert!(settings(&[("PREFECT_NATS_SUBJECT_PREFIX", "a.>")]).is_err());
        assert!(settings(&[("PREFECT_NATS_SUBJECT_PREFIX", "a..b")]).is_err());
    }

    #[test]
    fn durations_as_pydantic_reads_them() {
        assert_eq!(parse_duration("P7D").unwrap().as_secs(), 7 * 86400);
        assert_eq!(parse_duration("PT12H").unwrap().as_secs(), 12 * 3600);
        assert_eq!(parse_duration("P1DT2H30M").unwrap().as_secs(), 86400 + 2 * 3600 + 1800);
        assert_eq!(parse_duration("3600").unwrap().as_secs(), 3600);
        assert!(parse_duration("seven days").is_none());
        assert!(parse_duration("P").is_none());
        assert_eq!(settings(&[]).unwrap().events_retention.as_secs(), 7 * 86400);
        assert!(settings(&[("PREFECT_SERVER_EVENTS_RETENTION_PERIOD", "forever")]).is_err());
    }

    #[test]
    fn redacts_passwords() {
        let url = DatabaseUrl::parse("postgresql://u:secret@h:5432/db").unwrap();
        assert_eq!(url.redacted(), "postgresql://u:***@h:5432/db");
    }
}
