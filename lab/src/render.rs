//! Each lab process's command line and configuration files, from the topology (pure).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use talk::nats::config::{ServerSpec, SyncPolicy, render as render_nats};

pub use crate::binaries::Binaries;
use crate::state::disk_beside;
use crate::topology::{Kind, Process, Topology};

/// A process's command and the files it needs written first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// (path, contents) to write before starting.
    pub files: Vec<(PathBuf, String)>,
}

/// The message rate talk-load offers, per second: enough to see loss, light enough for a
/// 2-core machine running the whole lab.
pub const LOAD_RATE: u32 = 100;

fn joined(addrs: &[SocketAddr], scheme: &str) -> String {
    addrs
        .iter()
        .map(|a| format!("{scheme}{a}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// How `process` is started. `config_dir` and `data_dir` are its own directories.
pub fn launch(
    topology: &Topology,
    process: &Process,
    bin: &Binaries,
    config_dir: &Path,
    data_dir: &Path,
) -> Launch {
    let zone = topology
        .node(&process.node)
        .and_then(|n| n.zone.clone())
        .unwrap_or_default();
    match &process.kind {
        Kind::Nats {
            client,
            cluster,
            monitor,
            routes,
            always_fsync,
        } => {
            let spec = ServerSpec {
                name: process.name.clone(),
                zone: process
                    .labels
                    .get("topology.kubernetes.io/zone")
                    .cloned()
                    .unwrap_or(zone),
                client_addr: *client,
                monitor_addr: Some(*monitor),
                cluster_addr: Some(*cluster),
                routes: routes.clone(),
                cluster_name: "talk".to_owned(),
                data_dir: data_dir.to_path_buf(),
                sync: if *always_fsync {
                    SyncPolicy::Always
                } else {
                    SyncPolicy::ServerDefault
                },
            };
            let conf = config_dir.join("nats.conf");
            Launch {
                program: bin.nats_server.clone(),
                args: vec!["-c".to_owned(), conf.display().to_string()],
                files: vec![(conf, render_nats(&spec))],
            }
        }
        Kind::TalkServer {
            listen,
            nats,
            replicas,
            placement_zone,
        } => {
            let mut args = vec![
                format!("--listen={listen}"),
                format!("--nats-url={}", joined(nats, "nats://")),
                format!("--replicas={replicas}"),
                format!("--zone={zone}"),
                // Fail over within the talk probe's tolerance when a zone goes dark.
                "--nats-timeout=2s".to_owned(),
                format!("--channel-window={}", topology.talk.channel_window),
            ];
            if let Some(z) = placement_zone {
                args.push(format!("--placement-tag=zone:{z}"));
            }
            Launch {
                program: bin.talk_server.clone(),
                args,
                files: vec![],
            }
        }
        Kind::TalkLoad { listen, targets } => Launch {
            program: bin.talk_load.clone(),
            args: vec![
                format!("--target={}", joined(targets, "http://")),
                format!("--sli-listen={listen}"),
                format!("--rate={LOAD_RATE}"),
                "--connections=6".to_owned(),
                format!("--transport={}", topology.talk.transport.as_str()),
                "--duration=0s".to_owned(),
                // Like a phone that keeps retrying "sending...": a send rides out a stream
                // leader election (NATS takes 4-9 s) by failing over between servers.
                "--request-timeout=10s".to_owned(),
                "--no-drain".to_owned(),
                format!("--report={}", data_dir.join("report.json").display()),
            ],
            files: vec![],
        },
        Kind::Prometheus {
            listen,
            scrape,
            alertmanagers,
        } => {
            let conf = config_dir.join("prometheus.yml");
            let rules = config_dir.join("rules.yml");
            Launch {
                program: bin.prometheus.clone(),
                args: vec![
                    format!("--config.file={}", conf.display()),
                    format!("--storage.tsdb.path={}", data_dir.display()),
                    format!("--web.listen-address={listen}"),
                    "--storage.tsdb.retention.time=1d".to_owned(),
                    "--web.enable-lifecycle".to_owned(),
                ],
                files: vec![
                    (
                        conf,
                        prometheus_config(&process.name, scrape, alertmanagers, &rules),
                    ),
                    (rules, PROMETHEUS_RULES.to_owned()),
                ],
            }
        }
        // `data_dir` is here the volume's mount point; the disk behind it sits beside it.
        Kind::PageCache { .. } => Launch {
            program: bin.powerloss.clone(),
            args: vec![
                format!("--backing={}", disk_beside(data_dir).display()),
                format!("--mountpoint={}", data_dir.display()),
            ],
            files: vec![],
        },
        Kind::Alertmanager { listen } => {
            let conf = config_dir.join("alertmanager.yml");
            Launch {
                program: bin.alertmanager.clone(),
                args: vec![
                    format!("--config.file={}", conf.display()),
                    format!("--storage.path={}", data_dir.display()),
                    format!("--web.listen-address={listen}"),
                    // A lone instance: no gossip port to bind or peers to find.
                    "--cluster.listen-address=".to_owned(),
                ],
                files: vec![(conf, ALERTMANAGER_CONFIG.to_owned())],
            }
        }
    }
}

fn prometheus_config(
    name: &str,
    scrape: &std::collections::BTreeMap<String, Vec<SocketAddr>>,
    alertmanagers: &[SocketAddr],
    rules: &Path,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Generated by firedrill's lab; do not edit.");
    let _ = writeln!(out, "global:");
    let _ = writeln!(out, "  scrape_interval: 2s");
    let _ = writeln!(out, "  evaluation_interval: 2s");
    let _ = writeln!(out, "  external_labels: {{monitor: {name}}}");
    let _ = writeln!(out, "rule_files: [\"{}\"]", rules.display());
    let _ = writeln!(out, "alerting:");
    let _ = writeln!(out, "  alertmanagers:");
    let _ = writeln!(out, "    - static_configs:");
    let _ = writeln!(out, "        - targets: [{}]", quoted(alertmanagers));
    let _ = writeln!(out, "scrape_configs:");
    for (job, targets) in scrape {
        let _ = writeln!(out, "  - job_name: {job}");
        let _ = writeln!(out, "    scrape_timeout: 1s");
        let _ = writeln!(out, "    static_configs:");
        let _ = writeln!(out, "      - targets: [{}]", quoted(targets));
    }
    out
}

fn quoted(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Alerts on the SLOs the game day checks, so the drill also exercises the alert path.
const PROMETHEUS_RULES: &str = r#"# Generated by firedrill's lab; do not edit.
groups:
  - name: talk-slo
    rules:
      - alert: TalkDeliveryDegraded
        expr: talk_load_delivery_success_ratio < 0.95
        for: 10s
        labels: {severity: page}
        annotations: {summary: "talk delivers fewer than 95% of messages"}
      - alert: TalkAcknowledgedMessagesLost
        expr: talk_load_lost_messages > 0
        labels: {severity: page}
        annotations: {summary: "talk lost acknowledged messages"}
      - alert: Watchdog
        expr: vector(1)
        annotations: {summary: "always firing: proves the alert path works end to end"}
"#;

const ALERTMANAGER_CONFIG: &str = r#"# Generated by firedrill's lab; do not edit.
route:
  receiver: default
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 1m
receivers:
  - name: default
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{TalkSettings, Weakness};
    use talk::load::Transport;

    fn bins() -> Binaries {
        Binaries {
            nats_server: "/bin/nats-server".into(),
            talk_server: "/bin/talk-server".into(),
            talk_load: "/bin/talk-load".into(),
            prometheus: "/bin/prometheus".into(),
            alertmanager: "/bin/alertmanager".into(),
            powerloss: "/bin/firedrill-powerloss".into(),
        }
    }

    fn launch_of(t: &Topology, name: &str) -> Launch {
        let p = t.process(name).expect("process");
        launch(t, p, &bins(), Path::new("/cfg"), Path::new("/data"))
    }

    #[test]
    fn nats_syncs_every_write_unless_weakened() {
        let healthy = launch_of(&Topology::new(None), "nats-0");
        assert!(healthy.files[0].1.contains("sync_interval: always"));
        assert!(healthy.files[0].1.contains("zone:zone-a"));
        let lazy = launch_of(&Topology::new(Some(Weakness::NoFsync)), "nats-0");
        assert!(!lazy.files[0].1.contains("sync_interval"));
    }

    #[test]
    fn r1_pins_the_stream_to_zone_a() {
        let weak = launch_of(&Topology::new(Some(Weakness::StreamR1)), "talk-server-b");
        assert!(weak.args.contains(&"--replicas=1".to_owned()));
        assert!(
            weak.args
                .contains(&"--placement-tag=zone:zone-a".to_owned())
        );
        let healthy = launch_of(&Topology::new(None), "talk-server-b");
        assert!(healthy.args.contains(&"--replicas=3".to_owned()));
        assert!(
            !healthy
                .args
                .iter()
                .any(|a| a.starts_with("--placement-tag"))
        );
    }

    #[test]
    fn talk_load_and_talk_server_get_the_lab_s_talk_settings() {
        let default = Topology::new(None);
        let load = launch_of(&default, "talk-load");
        assert!(
            load.args.contains(&"--transport=channel".to_owned()),
            "{:?}",
            load.args
        );
        let server = launch_of(&default, "talk-server-a");
        assert!(
            server.args.contains(&"--channel-window=256".to_owned()),
            "{:?}",
            server.args
        );

        let http = Topology::new(None).with_talk(TalkSettings {
            transport: Transport::Http,
            channel_window: 16,
        });
        assert!(
            launch_of(&http, "talk-load")
                .args
                .contains(&"--transport=http".to_owned())
        );
        assert!(
            launch_of(&http, "talk-server-c")
                .args
                .contains(&"--channel-window=16".to_owned())
        );
    }

    #[test]
    fn a_state_recorded_before_talk_settings_reads_with_talk_s_defaults() {
        let mut json = serde_json::to_value(Topology::new(None)).unwrap();
        json.as_object_mut().unwrap().remove("talk");
        let old: Topology = serde_json::from_value(json).unwrap();
        assert_eq!(old.talk, TalkSettings::default());
    }

    #[test]
    fn prometheus_scrapes_talk_load_and_alerts_to_alertmanager() {
        let t = Topology::new(None);
        let l = launch_of(&t, "prometheus-b");
        let conf = &l.files[0].1;
        assert!(conf.contains("job_name: talk-load"), "{conf}");
        let am = t.hosts["alertmanager.talk"];
        assert!(conf.contains(&format!("\"{am}\"")), "{conf}");
    }
}
