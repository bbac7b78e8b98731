//! `chaosctl game-day`'s command line, the same for the lab and a cluster.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use firedrill_lab::Weakness;

use crate::cluster::ClusterArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Live progress on stderr, a summary table on stdout.
    Table,
    /// Live progress on stderr, the JSON report on stdout.
    Json,
}

#[derive(Debug, Args)]
pub struct GameDayArgs {
    /// The GameDay manifest (the plan).
    #[arg(
        value_name = "FILE",
        default_value = "experiments/gameday-quarterly-dr.yaml"
    )]
    pub(crate) file: PathBuf,
    /// The GameDay manifest, as a flag (same as FILE).
    #[arg(short = 'f', long = "file", value_name = "PLAN")]
    pub(crate) plan: Option<PathBuf>,
    /// Run on the cluster of the current kubeconfig context (implied by --context and
    /// --kubeconfig) instead of the lab.
    #[arg(long)]
    pub(crate) cluster: bool,
    /// Cluster only: the namespace to create the GameDay in (default: the plan's, else the
    /// context's).
    #[arg(short, long, value_name = "NAMESPACE")]
    pub(crate) namespace: Option<String>,
    /// Cluster only: the GameDay object's name (default: the plan's name and the time).
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// Cluster only: a label for the GameDay object, KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_label)]
    pub(crate) label: Vec<(String, String)>,
    /// Cluster only: stop following after this many seconds (the game day goes on).
    #[arg(long, value_name = "SECONDS", default_value_t = 4 * 3600)]
    pub(crate) timeout: u64,
    /// Where the experiments it refers to are (every *.yaml file is read); default: the
    /// game day's directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) experiments: Option<PathBuf>,
    /// Deploy the lab with a weakness (stream-r1, single-zone, no-fsync, single-monitor) to
    /// see which experiment catches it.
    #[arg(long, value_name = "NAME")]
    pub(crate) weaken: Option<Weakness>,
    /// How the lab launches talk-load and talk-server.
    #[command(flatten)]
    pub(crate) talk: crate::lab::TalkArgs,
    /// Run only this step of the game day (repeatable).
    #[arg(long, value_name = "STEP")]
    pub(crate) only: Vec<String>,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub(crate) output: Output,
    /// Where to write the report (Markdown, JSON, JUnit XML, one SVG per experiment);
    /// default: firedrill-reports/<game day>-<time>.
    #[arg(long, value_name = "DIR")]
    pub(crate) report_dir: Option<PathBuf>,
    /// Leave the lab up afterwards (it is taken down when this command brought it up).
    #[arg(long)]
    pub(crate) keep_lab: bool,
    /// Directory holding talk-server and talk-load (default: next to chaosctl).
    #[arg(long, value_name = "DIR")]
    pub(crate) bin_dir: Option<PathBuf>,
}

impl GameDayArgs {
    /// True when the game day is to run on a cluster rather than in the lab.
    pub fn on_cluster(&self, cluster: &ClusterArgs) -> bool {
        self.cluster || cluster.given()
    }

    /// The plan: `-f PLAN`, else FILE.
    pub fn plan_file(&self) -> &Path {
        self.plan.as_deref().unwrap_or(&self.file)
    }
}

/// Reads `KEY=VALUE`.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_key_value() {
        assert_eq!(parse_label("a=b"), Ok(("a".into(), "b".into())));
        assert_eq!(parse_label("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_label("ab").is_err());
        assert!(parse_label("=b").is_err());
    }
}
