//! The deployment files under `deploy/` agree with the binary: every
//! manifest parses, every container's arguments are accepted by the
//! command line, every `PREFECT_*` variable they set is one the server
//! reads, and every `.Values` path the Helm templates use exists in the
//! chart's `values.yaml`. (No cluster or `helm` binary is needed.)

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::Path;

use clap::Parser;
use prefect_server::cli::Cli;
use prefect_server::config::Settings;
use serde::Deserialize;
use serde_yaml::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every variable name the server's settings look up.
fn settings_names() -> HashSet<String> {
    let asked = RefCell::new(HashSet::new());
    Settings::from_lookup(|k| {
        asked.borrow_mut().insert(k.to_owned());
        None
    })
    .expect("defaults are valid");
    asked.into_inner()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text).map(|d| Value::deserialize(d).expect("valid YAML")).filter(|v| !v.is_null()).collect()
}

fn assert_args_accepted(args: &[String]) {
    let argv = std::iter::once("prefect-server".to_owned()).chain(args.iter().cloned());
    if let Err(e) = Cli::try_parse_from(argv) {
        panic!("{args:?} is not a valid command line: {e}");
    }
}

fn prefect_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("PREFECT_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')).unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn the_kubernetes_manifests_match_the_binary() {
    let known = settings_names();
    let docs = documents(&read("deploy/kubernetes/prefect-server.yaml"));
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().expect("kind")).collect();
    assert_eq!(kinds, ["Secret", "ConfigMap", "Deployment", "Deployment", "Service"]);
    let mut roles = Vec::new();
    for doc in &docs {
        assert!(doc["apiVersion"].is_string() && doc["metadata"]["name"].is_string(), "{doc:?}");
        if let Some(data) = doc["data"].as_mapping() {
            for key in data.keys().filter_map(Value::as_str) {
                assert!(known.contains(key), "{key} is not a setting the server reads");
            }
        }
        for container in doc["spec"]["template"]["spec"]["containers"].as_sequence().into_iter().flatten() {
            let args: Vec<String> = container["args"].as_sequence().into_iter().flatten().filter_map(|a| a.as_str().map(str::to_owned)).collect();
            assert_args_accepted(&args);
            roles.push(args.join(" "));
            for env in container["env"].as_sequence().into_iter().flatten() {
                let name = env["name"].as_str().expect("env name");
                assert!(known.contains(name), "{name} is not a setting the server reads");
            }
        }
    }
    assert_eq!(roles, ["--no-services", "services"]);
}

#[test]
fn the_helm_chart_matches_the_binary_and_its_values() {
    let known = settings_names();
    let chart = documents(&read("deploy/helm/prefect-server/Chart.yaml")).remove(0);
    assert_eq!((chart["apiVersion"].as_str(), chart["name"].as_str()), (Some("v2"), Some("prefect-server")));
    let values = documents(&read("deploy/helm/prefect-server/values.yaml")).remove(0);
    let dir = Path::new(ROOT).join("deploy/helm/prefect-server/templates");
    let mut templates: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    templates.sort();
    let mut args_seen = Vec::new();
    for path in templates {
        let text = std::fs::read_to_string(&path).unwrap();
        // Every `.Values.a.b` names a key of values.yaml.
        for (i, _) in text.match_indices(".Values.") {
            let tail = &text[i + ".Values.".len()..];
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_')).unwrap_or(tail.len());
            let mut node = &values;
            for part in tail[..end].trim_end_matches('.').split('.') {
                node = node.get(part).unwrap_or_else(|| panic!("{}: .Values.{} is not in values.yaml", path.display(), &tail[..end]));
            }
        }
        for name in prefect_names(&text) {
            assert!(known.contains(&name), "{}: {name} is not a setting the server reads", path.display());
        }
        for line in text.lines().map(str::trim).filter(|l| l.starts_with("args:")) {
            let args: Vec<String> = serde_yaml::from_str(line.trim_start_matches("args:")).expect("args are a YAML list");
            assert_args_accepted(&args);
            args_seen.push(args.join(" "));
        }
    }
    args_seen.sort();
    assert_eq!(args_seen, ["--no-services", "services"]);
}

#[test]
fn the_image_sets_only_settings_the_server_reads() {
    let known = settings_names();
    let dockerfile = read("deploy/docker/Dockerfile");
    let names = prefect_names(&dockerfile);
    assert!(names.contains(&"PREFECT_UI_STATIC_DIRECTORY".to_owned()));
    for name in names {
        assert!(known.contains(&name), "{name} is not a setting the server reads");
    }
}
