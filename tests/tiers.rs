//! Every integration test file is in exactly one tier of `.cargo/config.toml`
//! (`cargo test-fast`, `cargo test-system`), so that a new one is not left
//! out of the tier a developer runs.

use std::collections::BTreeSet;
use std::path::Path;

/// The `--test NAME`s of the alias `tier` in `.cargo/config.toml`.
fn tier(config: &str, tier: &str) -> BTreeSet<String> {
    let line = config
        .lines()
        .find(|line| line.starts_with(&format!("{tier} = ")))
        .unwrap_or_else(|| panic!("no alias {tier} in .cargo/config.toml"));
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .filter(|pair| pair[0] == "--test")
        .map(|pair| pair[1].trim_end_matches('"').to_string())
        .collect()
}

#[test]
fn every_test_file_is_in_exactly_one_tier() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = std::fs::read_to_string(root.join(".cargo/config.toml")).unwrap();
    let fast = tier(&config, "test-fast");
    let system = tier(&config, "test-system");
    let files: BTreeSet<String> = std::fs::read_dir(root.join("tests"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter_map(|path| {
            let is_test =
                path.extension().is_some_and(|ext| ext == "rs") || path.join("main.rs").exists();
            is_test.then(|| path.file_stem().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    let both: Vec<_> = fast.intersection(&system).collect();
    assert!(both.is_empty(), "in both tiers: {both:?}");
    let tiered: BTreeSet<String> = fast.union(&system).cloned().collect();
    let untiered: Vec<_> = files.difference(&tiered).collect();
    assert!(untiered.is_empty(), "in no tier: {untiered:?}");
    let missing: Vec<_> = tiered.difference(&files).collect();
    assert!(missing.is_empty(), "no such test file: {missing:?}");
}
