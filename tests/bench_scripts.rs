//! The benchmark's Python (bench/comparison, bench/compare.py) has unit
//! tests of its own; run them here so that a change that breaks them fails
//! the suite. Standard-library Python only: no root, network or Dovecot.

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
