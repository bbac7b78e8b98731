//! chaosctl: the firedrill command line.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

mod crds;
mod gameday;
mod lab;
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
    /// Build, inspect and tear down the lab: talk in three zones of network namespaces on
    /// this machine (needs root).
    Lab {
        /// The lab's directory: state, logs and data of every process, the fault journal.
        #[arg(long, env = "FIREDRILL_LAB_DIR", default_value = firedrill_lab::state::DEFAULT_DIR, global = true)]
        dir: PathBuf,
        #[command(subcommand)]
        command: lab::LabCommand,
    },
    /// Run a game day for real. With no cluster given, in the lab (needs root).
    ///
    /// Brings the lab up (cleaning up an earlier one), runs every experiment of the game day
    /// through the engine — steady state before, fault, hold, revert, recovery, steady state
    /// after — with live progress on stderr, prints a summary table, writes a report
    /// directory, and takes the lab down again. Exits 0 when every experiment passed, 1 when
    /// any did not, 2 when the game day could not run. Ctrl-C reverts the running fault
    /// before stopping; a killed chaosctl's fault is reverted at its expiry by the lab's
    /// supervisor, and `chaosctl lab down` removes everything.
    ///
    /// Examples:
    ///   sudo chaosctl game-day
    ///   sudo chaosctl game-day --weaken single-zone --only zone-blackout --output json
    #[command(verbatim_doc_comment)]
    GameDay {
        /// The lab's directory.
        #[arg(long, env = "FIREDRILL_LAB_DIR", default_value = firedrill_lab::state::DEFAULT_DIR)]
        lab_dir: PathBuf,
        #[command(flatten)]
        args: gameday::GameDayArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate { files, quiet } => validate::run(&files, quiet),
        Command::Crds { write, check } => crds::run(write.as_deref(), check.as_deref()),
        Command::Lab { dir, command } => lab::run(command, &dir).map_err(CliError::from),
        Command::GameDay { lab_dir, args } => gameday::run(args, &lab_dir).map_err(CliError::from),
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
    #[error("{0}")]
    Lab(#[from] firedrill_lab::LabError),
}
