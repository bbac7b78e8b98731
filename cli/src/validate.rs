//! `chaosctl validate`.

use std::{io::Read, path::Path, process::ExitCode};

use firedrill_core::manifest;

use crate::CliError;

pub fn run(files: &[impl AsRef<Path>], quiet: bool) -> Result<ExitCode, CliError> {
    let mut invalid = 0usize;
    for file in files {
        let file = file.as_ref();
        let name = file.display().to_string();
        let bytes = read(file).map_err(|source| CliError::Io {
            path: name.clone(),
            source,
        })?;
        match manifest::load_bytes(&bytes) {
            Ok(objects) => {
                if !quiet {
                    let what: Vec<String> = objects
                        .iter()
                        .map(|o| format!("{} {}", o.kind(), o.name()))
                        .collect();
                    println!("{name}: ok ({})", what.join(", "));
                }
            }
            Err(problems) => {
                invalid += 1;
                for problem in problems {
                    println!("{name}:{problem}");
                }
            }
        }
    }
    if invalid > 0 {
        eprintln!("{invalid} of {} files are invalid", files.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a file, or standard input for `-`, refusing more than the manifest limit.
fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    let limit = (manifest::MAX_BYTES + 1) as u64;
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        std::io::stdin().take(limit).read_to_end(&mut bytes)?;
    } else {
        std::fs::File::open(path)?
            .take(limit)
            .read_to_end(&mut bytes)?;
    }
    Ok(bytes)
}
