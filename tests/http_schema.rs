//! Schemathesis against the real binary: every response matches
//! docs/openapi.json, and no input, valid or not, gets a 5xx (but the 507
//! a delivery over quota is owed, see `http/schemathesis.toml`). In the
//! system tier: an outside tool, run on the release build.

#[path = "http/client.rs"]
mod client;
#[path = "common/mod.rs"]
mod common;

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use client::{get, Binary, TOKEN};

/// How long one schemathesis run may take before it is killed.
const DEADLINE: Duration = Duration::from_secs(400);

/// Whether schemathesis runs here: skipped with a note if not installed,
/// a failure under `CI=true` (`.ci/run` installs it with pip).
fn schemathesis_available() -> bool {
    match Command::new("schemathesis")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) => status.success(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("schemathesis is not installed, but CI must run it (.ci/run: pip install schemathesis)");
            }
            eprintln!("skipped: schemathesis not installed");
            false
        }
        Err(error) => panic!("cannot start schemathesis: {error}"),
    }
}

fn wait_bounded(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("schemathesis ran past {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn schemathesis_finds_every_response_as_documented_and_no_server_error() {
    if !schemathesis_available() {
        return;
    }
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let binary = Binary::serve(&["--user", "bob:pw"]);
    let work = tempfile::tempdir().unwrap();
    // The document as served, less `timeout` on the waiting list: a
    // generated `min` large and `timeout` of up to 60 s would make a run
    // take hours. The wait has its own tests (wait.rs).
    let mut document: serde_json::Value = get(binary.http, "/api/v1/openapi.json").json();
    let list = &mut document["paths"]["/api/v1/users/{name}/messages"]["get"]["parameters"];
    list.as_array_mut()
        .unwrap()
        .retain(|parameter| parameter["name"] != "timeout");
    let schema = work.path().join("openapi.json");
    std::fs::write(&schema, document.to_string()).unwrap();
    let output = work.path().join("schemathesis.log");
    let mut child = Command::new("schemathesis")
        .arg("--config-file")
        .arg(here.join("tests/http/schemathesis.toml"))
        .arg("run")
        .arg(&schema)
        .args(["--url", &format!("http://{}", binary.http)])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--checks", "all", "--max-examples", "40", "--workers", "1"])
        .args(["--request-timeout", "20", "--seed", "1", "--no-color"])
        .env("PYTHONPATH", here.join("tests/http"))
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&output).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut child);
    let log = std::fs::read_to_string(&output).unwrap();
    assert!(status.success(), "schemathesis failed:\n{log}");
    let summary = log
        .lines()
        .rev()
        .find(|line| line.contains("generated"))
        .unwrap_or("");
    eprintln!("schemathesis: {}", summary.trim());
}
