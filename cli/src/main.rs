//! chaosctl: the firedrill command line.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

mod crds;
mod validate;

/// firedrill's command line: check experiment manifests, print the CRDs, and (with the lab or
/// a cluster) run game days.
#[derive(Debug, Parser)]
#[command(name = "chaosctl", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check Experiment, GameDay and DrillSchedule manifests without a cluster.
    ///
    /// Every problem is printed as FILE:LINE:COLUMN: FIELD: MESSAGE. Unknown fields are
    /// errors, so a typo can never silently change what gets injected. The CRDs' CEL rules
    /// are evaluated locally, as the API server would at admission. Exits 0 only when every
    /// file is valid, 1 when any is not, 2 on usage errors.
    ///
    /// Example: chaosctl validate experiments/*.yaml
    Validate {
        /// Manifest files (YAML, one or more documents each); `-` reads standard input.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Print nothing for valid files.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print the CustomResourceDefinitions as YAML, or write one file per CRD.
    ///
    /// Example: chaosctl crds | kubectl apply -f -
    Crds {
        /// Write experiments.yaml, gamedays.yaml, ... into this directory instead.
        #[arg(long, value_name = "DIR")]
        write: Option<PathBuf>,
        /// Compare the files in DIR with the generated CRDs; exit 1 when they differ.
        #[arg(long, value_name = "DIR", conflicts_with = "write")]
        check: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate { files, quiet } => validate::run(&files, quiet),
        Command::Crds { write, check } => crds::run(write.as_deref(), check.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("chaosctl: {err}");
            ExitCode::from(2)
        }
    }
}

/// Errors that stop a command before it can give an answer.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not render the CRDs: {0}")]
    Render(#[from] serde_json::Error),
}
