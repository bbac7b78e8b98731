//! chaosctl: the firedrill command line.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use chaosctl::cluster::ClusterArgs;
use chaosctl::{
    CliError, access, crds, describe, gameday, get, history, lab, output, pause, stop, validate,
};

/// firedrill's command line: check experiment manifests, print the CRDs, and (with the lab or
/// a cluster) run game days.
#[derive(Debug, Parser)]
#[command(
    name = "chaosctl",
    version,
    about,
    long_about = None,
    after_help = "Examples:
  chaosctl validate experiments/*.yaml           check manifests, no cluster needed
  sudo chaosctl game-day                         the quarterly drill in the lab on this machine
  chaosctl game-day -f experiments/gameday-quarterly-dr.yaml --context prod
                                                 the same on a cluster, followed live
  chaosctl get experiments -A                    what is running where
  chaosctl describe experiment zone-blackout -n talk
  chaosctl history quarterly-dr -n talk --svg trend.svg
  chaosctl abort zone-blackout -n talk           revert one experiment's fault now
  chaosctl stop-all                              the kill switch: revert every fault
  sudo chaosctl lab stop-all                     the lab's: revert and pause until `lab resume`
  chaosctl completions bash > /etc/bash_completion.d/chaosctl

Cluster commands use the current context of KUBECONFIG (or ~/.kube/config), or
--context/--kubeconfig. Exit codes: 0 ok, 1 a verdict or check failed, 2 could not run."
)]
struct Cli {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(subcommand)]
    command: Command,
}

/// Which namespace(s) a cluster command reads.
#[derive(Debug, Clone, clap::Args)]
struct NamespaceArgs {
    /// The namespace (default: the context's).
    #[arg(short, long, value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    all_namespaces: bool,
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
    ///
    /// On a cluster (--context, --kubeconfig or --cluster): applies the plan as a GameDay
    /// (server-side apply, field manager chaosctl; referenced experiments found next to the
    /// plan are inlined), follows it live with the same progress lines, then prints the same
    /// table and writes the same report. Ctrl-C stops following, not the game day.
    ///
    /// Examples:
    ///   chaosctl game-day -f experiments/gameday-quarterly-dr.yaml --context staging
    ///   chaosctl game-day -f plan.yaml --cluster -n talk --only zone-blackout --report-dir out
    #[command(verbatim_doc_comment)]
    GameDay {
        /// The lab's directory.
        #[arg(long, env = "FIREDRILL_LAB_DIR", default_value = firedrill_lab::state::DEFAULT_DIR)]
        lab_dir: PathBuf,
        #[command(flatten)]
        args: gameday::GameDayArgs,
    },
    /// List experiments, game days or drill schedules on the cluster.
    ///
    /// Tables show phase, verdict, fault and age (experiments), step and report (game
    /// days), last verdict and next run (drills); free text is cut to $COLUMNS (default
    /// 120). -o wide adds targets, fault detail, nodes and figures (experiments), steps and
    /// policy (game days), steps, policy and the last game day (drills), nothing cut.
    /// -o json|yaml prints the objects as the API server has them (one object by NAME, else
    /// a List).
    #[command(after_help = "Examples:
  chaosctl get experiments -A
  chaosctl get gd -n talk
  chaosctl get exp -n talk -o wide              with targets, fault detail and nodes
  chaosctl get drills quarterly-dr -n talk -o yaml
  chaosctl get exp -A -l firedrill.dev/test=chaosctl -o json | jq '.items[].status.verdict'")]
    Get {
        /// experiments (exp), gamedays (gd) or drills (drillschedules).
        #[arg(value_enum)]
        kind: access::Kind,
        /// Only this object.
        name: Option<String>,
        #[command(flatten)]
        ns: NamespaceArgs,
        /// Only objects with these labels (a Kubernetes label selector).
        #[arg(short = 'l', long, value_name = "SELECTOR")]
        selector: Option<String>,
        #[arg(short, long, value_enum, default_value_t = output::Format::Table)]
        output: output::Format,
    },
    /// Show one experiment, game day or drill schedule in detail.
    ///
    /// Experiments: spec summary, phase, verdict and figures, conditions, probe records,
    /// their Injections with the agents' state, and the timeline. Game days: every step with
    /// its object and verdict. Drills: schedule, policy and history.
    #[command(after_help = "Examples:
  chaosctl describe experiment zone-blackout -n talk
  chaosctl describe gameday quarterly-dr-20260101-090000 -n talk
  chaosctl describe drill quarterly-dr -n talk")]
    Describe {
        #[arg(value_enum)]
        kind: access::Kind,
        name: String,
        /// The namespace (default: the context's).
        #[arg(short, long, value_name = "NAMESPACE")]
        namespace: Option<String>,
    },
    /// Drill results over time from a DrillSchedule's history: a table, and an SVG trend.
    #[command(after_help = "Examples:
  chaosctl history quarterly-dr -n talk
  chaosctl history quarterly-dr -n talk --svg drills.svg")]
    History {
        /// The DrillSchedule.
        drill: String,
        /// The namespace (default: the context's).
        #[arg(short, long, value_name = "NAMESPACE")]
        namespace: Option<String>,
        /// Also draw the trend (one bar per drill, the share of experiments passed) here.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        /// Print the history as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Abort an experiment now: its fault is reverted at once.
    ///
    /// Sets the annotation firedrill.dev/abort the operator honours; the experiment ends
    /// Aborted. NAME may also be a GameDay: then the game day and its running experiments
    /// are aborted.
    #[command(after_help = "Examples:
  chaosctl abort zone-blackout -n talk
  chaosctl abort quarterly-dr-20260101-090000 -n talk --reason 'customer incident'")]
    Abort {
        name: String,
        /// The namespace (default: the context's).
        #[arg(short, long, value_name = "NAMESPACE")]
        namespace: Option<String>,
        /// Why (recorded in the annotation and the experiment's status).
        #[arg(long, default_value = "aborted by hand")]
        reason: String,
    },
    /// The kill switch: pause firedrill, abort every running experiment in every namespace
    /// and wait until the agents confirm every fault reverted.
    ///
    /// First pauses firedrill cluster-wide (the firedrill.dev/paused label and annotation on
    /// its namespace, --firedrill-namespace): until `chaosctl resume`, no Experiment starts,
    /// GameDays stop after reverting their current step and DrillSchedules record their runs
    /// as skipped. With -l nothing is paused. Then annotates every running Experiment with
    /// firedrill.dev/abort, deletes every Injection
    /// (revert = delete: the node's agent reverts and then lets it go, so this works even when
    /// the operator is down), and waits until every Injection is gone or Reverted by its
    /// agent. Exits 0 when nothing is active any more, 1 with the list of what still is when
    /// --timeout passes. The lab has its own: `chaosctl lab stop-all` (and `lab resume`).
    #[command(after_help = "Examples:
  chaosctl stop-all
  chaosctl stop-all --context prod --timeout 60
  chaosctl stop-all -l team=payments          only experiments with this label")]
    StopAll {
        /// Give up waiting after this many seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 120)]
        timeout: u64,
        /// Only experiments with these labels, and their Injections.
        #[arg(short = 'l', long, value_name = "SELECTOR")]
        selector: Option<String>,
        /// Do not delete Injections; only annotate and wait for the operator to revert.
        #[arg(long)]
        no_delete: bool,
    },
    /// Lift the pause `stop-all` set: Experiments waiting in Pending start, GameDays can be
    /// started again, DrillSchedules run at their next scheduled time (skipped runs are not
    /// made up).
    #[command(after_help = "Examples:
  chaosctl resume
  chaosctl resume --firedrill-namespace chaos-system")]
    Resume,
    /// Print a shell completion script.
    #[command(after_help = "Examples:
  chaosctl completions bash > ~/.local/share/bash-completion/completions/chaosctl
  chaosctl completions zsh > \"${fpath[1]}/_chaosctl\"
  chaosctl completions fish > ~/.config/fish/completions/chaosctl.fish")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate { files, quiet } => validate::run(&files, quiet),
        Command::Crds { write, check } => crds::run(write.as_deref(), check.as_deref()),
        Command::Lab { dir, command } => lab::run(command, &dir).map_err(CliError::from),
        Command::GameDay { lab_dir, args } => {
            if args.on_cluster(&cli.cluster) {
                gameday::cluster::run(args, cli.cluster).map_err(CliError::from)
            } else {
                gameday::lab::run(args, &lab_dir).map_err(CliError::from)
            }
        }
        Command::Get {
            kind,
            name,
            ns,
            selector,
            output,
        } => get::run_get(
            &cli.cluster,
            kind,
            name.as_deref(),
            access::scope(ns.namespace, ns.all_namespaces),
            selector.as_deref(),
            output,
        )
        .map_err(CliError::from),
        Command::Describe {
            kind,
            name,
            namespace,
        } => describe::run_describe(&cli.cluster, kind, &name, namespace).map_err(CliError::from),
        Command::History {
            drill,
            namespace,
            svg,
            json,
        } => history::run(&cli.cluster, &drill, namespace, svg, json).map_err(CliError::from),
        Command::Abort {
            name,
            namespace,
            reason,
        } => stop::run_abort(&cli.cluster, &name, namespace, &reason).map_err(CliError::from),
        Command::Resume => pause::run_resume(&cli.cluster).map_err(CliError::from),
        Command::StopAll {
            timeout,
            selector,
            no_delete,
        } => stop::run_stop_all(
            &cli.cluster,
            &stop::StopAll {
                timeout: std::time::Duration::from_secs(timeout),
                selector,
                no_delete,
            },
        )
        .map_err(CliError::from),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "chaosctl", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("chaosctl: {err}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent_and_every_cluster_command_has_examples() {
        Cli::command().debug_assert();
        let command = Cli::command();
        for name in [
            "get",
            "describe",
            "history",
            "abort",
            "stop-all",
            "completions",
        ] {
            let sub = command.find_subcommand(name).expect(name);
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(help.contains("Examples:"), "{name} has no examples");
        }
    }

    #[test]
    fn completions_name_the_subcommands() {
        let mut out = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "chaosctl",
            &mut out,
        );
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.contains("stop-all") && text.contains("game-day"),
            "{text}"
        );
    }
}
