//! Every guard has a test that switches it off, and ARCHITECTURE.md maps every guard.
//!
//! A guard that no test disables is a check nobody has shown to matter; a guard missing from
//! ARCHITECTURE.md is a check a reader cannot find. Both fail here.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The variants of `doorward_proto::guard::Guard`, read from its source.
fn guards() -> Vec<String> {
    let src = std::fs::read_to_string(workspace().join("crates/proto/src/guard.rs")).unwrap();
    let body = src
        .split("pub enum Guard {")
        .nth(1)
        .expect("guard.rs declares the Guard enum");
    let body = body.split("\n}").next().unwrap();
    let names: Vec<String> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//") && !l.starts_with('#') && l.ends_with(','))
        .map(|l| l.trim_end_matches(',').to_string())
        .collect();
    assert!(names.len() >= 20, "parsed too few guards: {names:?}");
    names
}

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_guard_is_switched_off_by_some_test() {
    let mut files = Vec::new();
    rust_sources(&workspace().join("crates"), &mut files);
    let text: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let missing: Vec<String> = guards()
        .into_iter()
        .filter(|g| {
            !text.contains(&format!("disable(Guard::{g})"))
                && !text.contains(&format!(
                    "guard::disable(doorward_proto::guard::Guard::{g})"
                ))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "guards no test switches off: {missing:?}"
    );
}

#[test]
fn architecture_maps_every_guard() {
    let doc = std::fs::read_to_string(workspace().join("ARCHITECTURE.md")).unwrap();
    let missing: Vec<String> = guards()
        .into_iter()
        .filter(|g| !doc.contains(&format!("`{g}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "guards missing from ARCHITECTURE.md: {missing:?}"
    );
}
