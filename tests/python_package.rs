//! The Python package (python/, built with maturin): its wheel, installed
//! into a fresh virtual environment, puts `poplite` on that environment's
//! PATH and registers the pytest plugin, whose own tests and sample suite
//! (python/tests, python/examples) then pass there. CI builds the wheel
//! first and names it in POPLITE_TEST_WHEEL; POPLITE_TEST_PYTHONS lists the
//! interpreters to try (comma-separated; `python3` when unset), so the oldest
//! supported one, 3.9, is checked where it is installed.

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;

use common::run_checked;

fn wheel() -> Option<String> {
    common::built_package("POPLITE_TEST_WHEEL", "dist/build-wheel.sh")
}

/// A fresh virtual environment of `python` in `dir` with the wheel and pytest.
fn environment(python: &str, dir: &Path, wheel: &str) {
    run_checked(Command::new(python).args(["-m", "venv"]).arg(dir));
    let pip = dir.join("bin/pip");
    // The wheel alone, from no index: it needs nothing else.
    run_checked(Command::new(&pip).args(["install", "-q", "--no-index", wheel]));
    run_checked(Command::new(&pip).args([
        "install",
        "-q",
        "--disable-pip-version-check",
        "pytest",
    ]));
}

#[test]
fn the_wheel_installs_poplite_and_a_plugin_whose_suites_pass() {
    let Some(wheel) = wheel() else { return };
    let pythons = std::env::var("POPLITE_TEST_PYTHONS").unwrap_or_else(|_| "python3".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
    for python in pythons.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let dir = tempfile::tempdir().unwrap();
        let venv = dir.path().join("venv");
        environment(python, &venv, &wheel);

        let bin = venv.join("bin");
        let version = run_checked(Command::new(bin.join("poplite")).arg("--version"));
        assert!(String::from_utf8_lossy(&version.stdout).starts_with("poplite "));

        // Only the environment's PATH: the suites must find the wheel's binary,
        // not one built here.
        let run = Command::new(bin.join("python"))
            .args(["-m", "pytest", "-p", "no:cacheprovider", "-rA"])
            .arg(root.join("tests"))
            .arg(root.join("examples"))
            .current_dir(dir.path())
            .env_remove("POPLITE_BIN")
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{python}: {said}{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let summary = said.lines().last().unwrap_or_default();
        assert!(
            summary.contains(" passed") && !summary.contains("skipped"),
            "{python}: {summary}"
        );
        // The sample suite ran, not only the plugin's own tests.
        assert!(
            said.contains("PASSED") && said.contains("test_inbox.py::"),
            "{said}"
        );
    }
}

/// bench/python_package.py, briefly: it installs the wheel and times both
/// fixtures, so the figures in docs/performance.md can be made again.
#[test]
fn the_package_benchmark_runs() {
    let Some(wheel) = wheel() else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = run_checked(
        Command::new("python3")
            .arg(root.join("bench/python_package.py"))
            .args([&wheel, "--installs", "1", "--tests", "3"]),
    );
    let said = String::from_utf8_lossy(&out.stdout);
    for line in [
        "pip install poplite-",
        "poplite_server: set-up median",
        "poplite_server_session: set-up median",
    ] {
        assert!(said.contains(line), "{said}");
    }
}

/// "Typed": the installed package (with its py.typed marker) passes
/// `mypy --strict` as a user's type checker sees it, from site-packages.
#[test]
fn the_installed_package_passes_mypy_strict() {
    let Some(wheel) = wheel() else { return };
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv");
    environment("python3", &venv, &wheel);
    run_checked(Command::new(venv.join("bin/pip")).args([
        "install",
        "-q",
        "--disable-pip-version-check",
        "mypy",
    ]));
    let checked = run_checked(
        Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "mypy",
                "--strict",
                "--no-incremental",
                "-p",
                "poplite",
            ])
            .current_dir(dir.path()),
    );
    assert!(
        String::from_utf8_lossy(&checked.stdout).starts_with("Success: no issues found"),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );
}
