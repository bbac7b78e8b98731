//! Loading a game day's plan: the GameDay manifest and the experiments it refers to, read
//! the same way for the lab and a cluster.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use firedrill_core::api::{ExperimentSpec, GameDay};
use firedrill_core::manifest::{Manifest, load_bytes};
use firedrill_lab::LabError;

/// A plan that cannot be used, as the lab reports it.
fn invalid(path: &Path, problems: impl std::fmt::Display) -> LabError {
    LabError::Plan(format!("{}: {problems}", path.display()))
}

fn load(path: &Path) -> Result<Vec<Manifest>, LabError> {
    let bytes = fs::read(path).map_err(|e| LabError::io(path, e))?;
    load_bytes(&bytes).map_err(|problems| {
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        invalid(path, text.join("; "))
    })
}

/// The game day and every experiment in `dir`, by name.
pub fn load_game_day(
    file: &Path,
    dir: &Path,
) -> Result<(GameDay, BTreeMap<String, ExperimentSpec>), LabError> {
    let game_day = load(file)?
        .into_iter()
        .find_map(|m| match m {
            Manifest::GameDay(g) => Some(*g),
            _ => None,
        })
        .ok_or_else(|| invalid(file, "no GameDay in this file"))?;
    let mut experiments = BTreeMap::new();
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| LabError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    entries.sort();
    for path in entries {
        for m in load(&path)? {
            if let Manifest::Experiment(e) = m {
                let name = e.metadata.name.clone().unwrap_or_default();
                experiments.insert(name, e.spec);
            }
        }
    }
    Ok((game_day, experiments))
}

/// The directory the plan's experiments are read from.
pub fn experiments_dir(file: &Path, given: Option<&Path>) -> PathBuf {
    match given {
        Some(d) => d.to_path_buf(),
        None => file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn experiments_are_read_next_to_the_plan_unless_told() {
        assert_eq!(
            experiments_dir(Path::new("experiments/q.yaml"), None),
            PathBuf::from("experiments")
        );
        assert_eq!(
            experiments_dir(Path::new("q.yaml"), None),
            PathBuf::from(".")
        );
        assert_eq!(
            experiments_dir(Path::new("q.yaml"), Some(Path::new("/x"))),
            PathBuf::from("/x")
        );
    }

    #[test]
    fn the_catalog_plan_loads_with_every_experiment_it_refers_to() {
        let catalog = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments");
        let plan = catalog.join("gameday-quarterly-dr.yaml");
        let (game_day, experiments) = load_game_day(&plan, &experiments_dir(&plan, None)).unwrap();
        assert_eq!(game_day.metadata.name.as_deref(), Some("quarterly-dr"));
        for step in &game_day.spec.experiments {
            let name = &step.experiment_ref.as_ref().unwrap().name;
            assert!(experiments.contains_key(name), "{name} not loaded");
        }
        // A file without a GameDay, and one that is no manifest at all.
        let err = load_game_day(&catalog.join("zone-blackout.yaml"), &catalog).unwrap_err();
        assert!(err.to_string().contains("no GameDay in this file"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.yaml");
        fs::write(&bad, "kind: [").unwrap();
        let err = load_game_day(&bad, dir.path()).unwrap_err();
        assert!(
            err.to_string().starts_with(&bad.display().to_string()),
            "{err}"
        );
    }
}
