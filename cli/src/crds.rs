//! `chaosctl crds`.

use std::{path::Path, process::ExitCode};

use firedrill_core::crd;

use crate::CliError;

pub fn run(write: Option<&Path>, check: Option<&Path>) -> Result<ExitCode, CliError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| CliError::Io { path, source }
    };
    let mut stale = Vec::new();
    for (file, definition) in crd::all() {
        let text = crd::to_yaml(&definition)?;
        match (write, check) {
            (Some(dir), _) => {
                let path = dir.join(file);
                std::fs::write(&path, text).map_err(io(&path))?;
                println!("wrote {}", path.display());
            }
            (None, Some(dir)) => {
                let path = dir.join(file);
                let committed = std::fs::read_to_string(&path).unwrap_or_default();
                if committed != text {
                    stale.push(path.display().to_string());
                }
            }
            (None, None) => print!("---\n{text}"),
        }
    }
    if stale.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "the committed CRDs differ from the API types: {}\nregenerate them with: cargo run -p chaosctl -- crds --write charts/firedrill/crds",
        stale.join(", ")
    );
    Ok(ExitCode::from(1))
}
