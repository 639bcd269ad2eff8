//! The documented Node.js and pytest snippets, run as written (docs/testing.md):
//! each starts `poplite serve --memory` with HTTP and SMTP, resets it before
//! each of its two tests, seeds mail (over SMTP or the API), waits with
//! `?min=` and fetches over POP3.

use super::*;

/// The block from `doc` as a file named `file` in a fresh directory.
fn doc_snippet(
    doc: &str,
    marker: &str,
    language: &str,
    file: &str,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let test = dir.path().join(file);
    std::fs::write(&test, common::doc_block(doc, marker, language)).unwrap();
    (dir, test)
}

/// PATH with the built binary first: the snippets run `poplite` from it.
fn path_with_built_binary() -> String {
    let binary_dir = Path::new(env!("CARGO_BIN_EXE_poplite")).parent().unwrap();
    format!(
        "{}:{}",
        binary_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn the_documented_node_test_passes_against_the_binary() {
    if !client_available("node") {
        return;
    }
    let (dir, test) = doc_snippet(
        "docs/testing.md",
        "A Node.js test",
        "js",
        "poplite.test.mjs",
    );
    let output = run_bounded(
        Command::new("node")
            .arg("--test")
            .arg(&test)
            .env("PATH", path_with_built_binary())
            .current_dir(dir.path()),
        "node --test",
    );
    assert!(output.status.success(), "{}", transcript(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("# pass 2"),
        "{}",
        transcript(&output)
    );
}

#[test]
fn the_documented_pytest_fixture_passes_against_the_binary() {
    // pytest is a module, not a program: ask the interpreter for it.
    let has_pytest = Command::new("python3")
        .args(["-c", "import pytest"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !has_pytest {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "pytest is not installed (CI must install it)"
        );
        eprintln!("skipped: pytest not installed");
        return;
    }
    let (dir, test) = doc_snippet(
        "docs/testing.md",
        "## With pytest",
        "python",
        "test_poplite.py",
    );
    let output = run_bounded(
        Command::new("python3")
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
            .arg(&test)
            .env("PATH", path_with_built_binary())
            .current_dir(dir.path()),
        "pytest",
    );
    assert!(output.status.success(), "{}", transcript(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("2 passed"),
        "{}",
        transcript(&output)
    );
}
