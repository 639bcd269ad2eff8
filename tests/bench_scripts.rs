//! The benchmark's Python (bench/comparison, bench/compare.py) has unit
//! tests of its own; run them here so that a change that breaks them fails
//! the suite; and bench/intake.py runs briefly against the built binary. Standard-library Python only: no root, network or Dovecot.

use std::path::Path;
use std::process::Command;

#[test]
fn the_benchmark_comparison_passes_its_python_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = match Command::new("python3")
        .args([
            "-m",
            "unittest",
            "discover",
            "-s",
            "bench",
            "-p",
            "test_*.py",
        ])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(root)
        .output()
    {
        Ok(output) => output,
        Err(error) => {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "python3 is not installed (CI must install it): {error}"
            );
            eprintln!("skipped: python3 not installed");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // unittest reports on stderr: "Ran N tests" then "OK".
    assert!(stderr.contains("\nOK"), "{stderr}");
    assert!(!stderr.contains("Ran 0 tests"), "{stderr}");
}

/// bench/intake.py, briefly, against the built binary: every way delivers
/// and the table and the wait are reported (the figures are not checked:
/// they are the benchmark's business, not a test's).
#[test]
fn the_intake_benchmark_runs_end_to_end() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if Command::new("python3").arg("--version").output().is_err() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "python3 is not installed (CI must install it)"
        );
        eprintln!("skipped: python3 not installed");
        return;
    }
    // Bounded: a few messages, and `timeout` over the whole run.
    let output = Command::new("timeout")
        .args([
            "120",
            "python3",
            "bench/intake.py",
            env!("CARGO_BIN_EXE_poplite"),
        ])
        .args([
            "--messages",
            "8",
            "--clients",
            "2",
            "--rounds",
            "1",
            "--wait",
            "1",
        ])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(root)
        .output()
        .expect("timeout (coreutils) runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    for way in ["| lmtp | ", "| smtp | ", "| http | "] {
        assert!(stdout.contains(way), "{stdout}");
    }
    assert!(stdout.contains("status 200"), "{stdout}");
}
