//! The exposition and the shipped files against the tools that read
//! them: `promtool check metrics` on a live scrape, `promtool check
//! rules` and `check config` on docs/prometheus/, and the Grafana
//! dashboard's queries against the metrics a server exports.
//!
//! Without promtool (Debian package `prometheus`) the promtool tests are
//! skipped with a note, except under `CI=true`, where they fail.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{get_metrics, scrape, start};

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/prometheus")
}

/// Whether promtool runs; outside CI a missing one skips the test.
fn promtool_available() -> bool {
    match Command::new("promtool").arg("--version").output() {
        Ok(output) => output.status.success(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("promtool is not installed, but CI must check the metrics with it (.ci/run installs the Debian package prometheus)");
            }
            eprintln!("skipped: promtool not installed");
            false
        }
        Err(error) => panic!("cannot start promtool: {error}"),
    }
}

/// Runs promtool with `args`, `stdin` fed in; panics with its output
/// unless it succeeds.
fn promtool(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_accepts_a_live_scrape() {
    if !promtool_available() {
        return;
    }
    let server = start(|_| {});
    server.add_user("alice", "pw");
    // Some of everything: a histogram with observations, a counter moved.
    let mut client = server.connect();
    client.cmd("USER alice");
    client.cmd("PASS wrong");
    client.login("alice", "pw");
    client.cmd("QUIT");
    let (_, text) = get_metrics(server.http_addr(), None);
    // Lint problems (a counter without _total, a unit in the wrong place)
    // make promtool fail too.
    promtool(&["check", "metrics"], &text);
}

#[test]
fn promtool_accepts_the_shipped_rules_and_config() {
    if !promtool_available() {
        return;
    }
    let rules = docs().join("rules.yml");
    let out = promtool(&["check", "rules", rules.to_str().unwrap()], "");
    assert!(out.contains("SUCCESS"), "{out}");
    let config = docs().join("prometheus.yml");
    let out = promtool(&["check", "config", config.to_str().unwrap()], "");
    assert!(out.contains("1 rule files found"), "{out}");
}

/// The metric names (`poplite_…`, `process_…`) a PromQL expression reads.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let starts = (i == 0 || !word(bytes[i - 1])) && word(bytes[i]);
        if starts {
            let end = (i..bytes.len())
                .find(|&j| !word(bytes[j]))
                .unwrap_or(bytes.len());
            let name = &expr[i..end];
            if name.starts_with("poplite_") || name.starts_with("process_") {
                names.push(name.to_string());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

/// Every `"expr"` in the dashboard, wherever it is.
fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    _ => exprs(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| exprs(item, out)),
        _ => {}
    }
}

#[test]
fn the_grafana_dashboard_queries_only_exported_metrics() {
    let text = std::fs::read_to_string(docs().join("grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "poplite");
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    assert!(queries.len() >= 10, "{queries:?}");
    let scrape = scrape(&start(|_| {}));
    let exported: BTreeSet<&str> = scrape
        .series
        .keys()
        .map(|series| series.split('{').next().unwrap_or(series))
        .collect();
    let mut queried = BTreeSet::new();
    for query in &queries {
        for name in metric_names(query) {
            assert!(
                exported.contains(name.as_str()),
                "{name} (in {query}) is not exported"
            );
            queried.insert(name);
        }
    }
    // And it shows every metric poplite exports, process metrics included.
    for name in &exported {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| base.ends_with("_seconds"))
            .unwrap_or(name);
        let shown = queried.iter().any(|q| q == name || q.starts_with(family));
        assert!(shown, "{name} is on no dashboard panel");
    }
}
