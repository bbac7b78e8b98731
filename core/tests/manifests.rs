//! Manifest validation: the catalog is valid, every hand-written bad document is refused with
//! a message naming its field, the validator never panics, and the committed CRDs match the
//! API types.

use std::path::Path;

use firedrill_core::{crd, manifest};
use proptest::prelude::*;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn the_catalog_is_valid() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo().join("experiments")).expect("experiments/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let bytes = std::fs::read(&path).expect("readable");
            if let Err(problems) = manifest::load_bytes(&bytes) {
                panic!("{} is invalid: {problems:#?}", path.display());
            }
            seen += 1;
        }
    }
    assert!(seen >= 6, "only {seen} catalog files");
}

#[test]
fn every_bad_document_is_refused_naming_its_field() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bad"));
    let mut checked = 0;
    let mut wrong = Vec::new();
    for entry in std::fs::read_dir(dir).expect("tests/bad") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("readable");
        let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
        let first = String::from_utf8_lossy(first);
        let (want_path, want_text) = first
            .strip_prefix("# expect:")
            .and_then(|rest| rest.split_once('|'))
            .map(|(p, t)| (p.trim().to_owned(), t.trim().to_owned()))
            .unwrap_or_else(|| panic!("{} lacks an `# expect: PATH | TEXT` line", path.display()));
        checked += 1;
        match manifest::load_bytes(&bytes) {
            Ok(_) => wrong.push(format!("{}: accepted", path.display())),
            Err(problems) => {
                let hit = problems.iter().any(|p| {
                    p.path == want_path && p.message.contains(&want_text) && p.position.line >= 1
                });
                if !hit {
                    wrong.push(format!(
                        "{}: wanted `{want_path}: …{want_text}…`, got {:?}",
                        path.display(),
                        problems.iter().map(ToString::to_string).collect::<Vec<_>>()
                    ));
                }
            }
        }
    }
    assert!(checked >= 40, "only {checked} bad documents");
    assert!(
        wrong.is_empty(),
        "{} of {checked} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn problems_point_at_the_offending_line() {
    let text = std::fs::read_to_string(repo().join("experiments/zone-blackout.yaml"))
        .expect("catalog")
        .replace("maxPercent: 50", "maxPercent: 500");
    let line = text
        .lines()
        .position(|l| l.contains("maxPercent: 500"))
        .expect("edited")
        + 1;
    let problems = manifest::load_str(&text).expect_err("refused");
    assert_eq!(problems[0].position.line, line, "{problems:?}");
}

#[test]
fn committed_crds_match_the_api_types() {
    for (file, definition) in crd::all() {
        let generated = crd::to_yaml(&definition).expect("renders");
        let path = repo().join("charts/firedrill/crds").join(file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale: run `cargo run -p chaosctl -- crds --write charts/firedrill/crds`",
            path.display()
        );
    }
}

fn catalog_texts() -> Vec<String> {
    [
        "zone-blackout",
        "network-partition",
        "disk-loss",
        "ops-tool-outage",
        "gameday-quarterly-dr",
        "drill-schedule-quarterly",
    ]
    .iter()
    .map(|n| {
        std::fs::read_to_string(repo().join(format!("experiments/{n}.yaml"))).expect("catalog")
    })
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = manifest::load_bytes(&bytes);
    }

    #[test]
    fn never_panics_on_mutated_catalog_documents(
        which in 0usize..6,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut bytes = catalog_texts().swap_remove(which).into_bytes();
        for (at, byte, op) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => { bytes.remove(i); }
                _ => bytes.insert(i, byte),
            }
        }
        let _ = manifest::load_bytes(&bytes);
    }
}
