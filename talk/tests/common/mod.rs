//! Harness for tests against real processes: nats-server, talk-server, talk-load.
//! Every process is killed on drop, even when the test panics.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use talk::nats::{LocalCluster, LocalClusterSpec, NatsBinary, SyncPolicy};
use talk::store::{MessageStore, StreamSpec};

/// The nats-server binary, or a failure that says how to install it.
pub fn nats_binary() -> NatsBinary {
    match NatsBinary::locate() {
        Ok(b) => b,
        Err(e) => panic!(
            "these tests need a real nats-server: apt-get install nats-server \
             (or set TALK_NATS_SERVER). Error: {e}"
        ),
    }
}

pub fn start_cluster(dir: &Path, servers: usize, sync: SyncPolicy) -> LocalCluster {
    let spec = LocalClusterSpec::new(servers, sync, dir.join("nats"));
    match LocalCluster::start(nats_binary(), spec) {
        Ok(c) => c,
        Err(e) => panic!("starting {servers}-server JetStream cluster: {e}"),
    }
}

/// A child process killed on drop.
#[derive(Debug)]
pub struct ChildGuard {
    pub name: String,
    pub child: Child,
}

impl ChildGuard {
    /// Waits up to `timeout` for exit; kills and panics on timeout.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("{} did not exit within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts talk-server against `urls` and waits until /readyz says ready.
pub async fn start_talk_server(
    dir: &Path,
    urls: &[String],
    replicas: usize,
) -> (ChildGuard, String) {
    let port = free_port();
    let log = std::fs::File::create(dir.join(format!("talk-server-{port}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_talk-server"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--nats-url", &urls.join(",")])
        .args(["--replicas", &replicas.to_string()])
        .args(["--nats-timeout", "2s"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let guard = ChildGuard {
        name: "talk-server".into(),
        child,
    };
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let start = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            break;
        }
        // A cold three-server JetStream elects its meta leader and creates the stream
        // first; on a loaded 2-core machine that has taken over 30 s.
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "talk-server never became ready in 90 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (guard, base)
}

/// Starts talk-load writing its report to `report`.
pub fn start_load(
    targets: &[String],
    duration: &str,
    rate: u32,
    report: &Path,
    extra: &[&str],
) -> ChildGuard {
    let child = Command::new(env!("CARGO_BIN_EXE_talk-load"))
        .args(["--target", &targets.join(",")])
        .args(["--duration", duration])
        .args(["--rate", &rate.to_string()])
        .args(["--rooms", "4"])
        .args(["--connections", "4"])
        .args(["--request-timeout", "3s"])
        .args(if extra.contains(&"--sli-listen") {
            &[][..]
        } else {
            &["--sli-listen", "off"][..]
        })
        .args(["--drain-timeout", "60s"])
        .args(["--report", report.to_str().unwrap()])
        .args(extra)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    ChildGuard {
        name: "talk-load".into(),
        child,
    }
}

pub fn read_report(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("talk-load wrote no report at {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Waits for talk-load to end (150 s at most) and returns its report, which must say the
/// drain was complete (else the cluster's logs say why not).
pub fn drained_report(
    load: &mut ChildGuard,
    report_path: &Path,
    cluster: &LocalCluster,
) -> serde_json::Value {
    let status = load.wait(Duration::from_secs(150));
    assert!(status.success(), "talk-load failed: {status}");
    let report = read_report(report_path);
    eprintln!("{report:#}");
    assert_eq!(
        report["complete"],
        true,
        "drain incomplete:\n{}",
        cluster.logs()
    );
    report
}

pub fn total(report: &serde_json::Value, field: &str) -> u64 {
    report["total"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("report has no total.{field}: {report:#}"))
}

/// The name of the server leading the stream.
pub async fn stream_leader(urls: &[String]) -> String {
    let store = MessageStore::connect(urls, StreamSpec::default(), Duration::from_secs(2), true)
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        if let Ok(Some(leader)) = store.stream_leader().await {
            return leader;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no stream leader"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
