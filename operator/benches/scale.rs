//! The operator at scale: memory and reconcile rate with 1,000 Experiments on one API server.
//!
//! `cargo bench -p firedrill-operator --bench scale` (as root). It prints figures; it asserts
//! nothing about them. It starts a private etcd and kube-apiserver (`bench/apiserver.sh`: the
//! e2e cluster's pinned binaries and PKI, on 127.0.0.1 with other ports, in a temporary
//! directory, stopped and removed however this ends), installs the CRDs, makes fake Nodes
//! (one per zone, no kubelet) and opted-in namespaces with three Pods each bound to them,
//! and runs the release `firedrill-operator` binary against it:
//!
//! 1. 1,000 dry-run network-partition Experiments, created before the operator starts: the
//!    time from its start until every one is Completed, its reconcile rate and memory;
//! 2. a label on all 1,000 (a started Experiment's spec cannot change): the reconciliations
//!    it wakes;
//! 3. deleting all 1,000 (the finalizer path): the time until they are gone;
//! 4. 1,000 live ones that inject, for at most `FD_BENCH_LIVE_SECONDS` (default 180; skip
//!    with `FD_BENCH_LIVE=0`): no agent confirms their Injections, so each would run its
//!    full course (steady state, inject, the engine's 60 s inject timeout, revert,
//!    recovery), the operator requeueing every injecting one each second; how far they get.
//!
//! `FD_BENCH_EXPERIMENTS` changes the count (default 1000); `FD_BENCH_OPERATOR_ENV_X=v` sets
//! `X=v` for the operator alone (a heap profile: `X` = `LD_PRELOAD` with heaptrack's
//! `libheaptrack_preload.so` and `DUMP_HEAPTRACK_OUTPUT` a file, read afterwards with
//! `heaptrack_interpret < file | gzip > profile.gz` and `heaptrack_print`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use firedrill_core::api::{Experiment, Phase};
use firedrill_core::manifest::{Manifest, load_str};
use futures_util::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config, ResourceExt};
use serde_json::json;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

const MISSION: &str = include_str!("../../experiments/network-partition.yaml");
const VERSIONS: &str = include_str!("../../e2e/cluster/versions.env");
const APISERVER_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/apiserver.sh");
const CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/firedrill/crds");
const OPERATOR: &str = env!("CARGO_BIN_EXE_firedrill-operator");

const NAMESPACES: usize = 20;
const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];
const METRICS_ADDR: &str = "127.0.0.1:18080";
const BENCH_LABEL: &str = "firedrill.dev/bench";
/// firedrill's own namespace: the Injections live there, and its pause marker (the kill
/// switch) is read from it; an operator that cannot read it starts nothing.
const OPERATOR_NAMESPACE: &str = "firedrill-system";
/// Requests in flight while creating, patching or deleting objects.
const IN_FLIGHT: usize = 64;

fn main() -> ExitCode {
    if let Some(why) = skip_reason() {
        println!("SKIPPED: {why}");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("scale: no tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let load_start = load_average();
    let servers = match Servers::start() {
        Ok(servers) => servers,
        Err(e) => {
            eprintln!("scale: could not start etcd and kube-apiserver: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut report = Report { rows: Vec::new() };
    let result = runtime.block_on(run(&servers, &mut report, load_start));
    drop(runtime);
    drop(servers);
    report.add("load average at end", load_average());
    if let Err(e) = print_table(&report) {
        eprintln!("scale: cannot print: {e}");
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scale: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `KEY=value` from e2e/cluster/versions.env.
fn version(key: &str) -> Option<&'static str> {
    VERSIONS.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

fn cache_bin(component: &str, version_key: &str, bin: &str) -> Option<PathBuf> {
    Some(
        Path::new(version("CACHE_ROOT")?)
            .join(format!("{component}-{}", version(version_key)?))
            .join("bin")
            .join(bin),
    )
}

fn skip_reason() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().map(str::to_owned));
    if uid.as_deref() != Some("0") {
        return Some("run as root (it starts etcd and kube-apiserver)".into());
    }
    for (component, key, bin) in [
        ("etcd", "ETCD_VERSION", "etcd"),
        ("k8s", "K8S_VERSION", "kube-apiserver"),
        ("k8s", "K8S_VERSION", "kubectl"),
    ] {
        match cache_bin(component, key, bin) {
            Some(path) if path.is_file() => {}
            Some(path) => {
                return Some(format!(
                    "no {} (e2e/cluster/build.sh builds it)",
                    path.display()
                ));
            }
            None => return Some(format!("{key} or CACHE_ROOT missing in versions.env")),
        }
    }
    None
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// etcd and kube-apiserver, run by bench/apiserver.sh, which stops them and removes their
/// directory when told to (TERM) or when this process is gone, however it ended.
struct Servers {
    script: Child,
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Servers {
    fn start() -> Result<Self> {
        let mut script = Command::new("bash")
            .arg(APISERVER_SH)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = script.stdout.take().ok_or("no stdout from apiserver.sh")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut dir = None;
        let mut kubeconfig = None;
        for line in lines.by_ref() {
            let line = line?;
            if let Some(d) = line.strip_prefix("DIR ") {
                dir = Some(PathBuf::from(d));
            } else if let Some(k) = line.strip_prefix("READY ") {
                kubeconfig = Some(PathBuf::from(k));
                break;
            } else {
                eprintln!("{line}");
            }
        }
        // Whatever it says from now on goes to stderr, so that its pipe never fills.
        std::thread::spawn(move || {
            for line in lines.map_while(std::result::Result::ok) {
                eprintln!("{line}");
            }
        });
        let (Some(dir), Some(kubeconfig)) = (dir, kubeconfig) else {
            let status = script.wait()?;
            return Err(
                format!("apiserver.sh ended before the API server was ready ({status})").into(),
            );
        };
        Ok(Self {
            script,
            dir,
            kubeconfig,
        })
    }

    fn pid(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("pids").join(format!("{name}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.script.id().to_string()])
            .status();
        let _ = self.script.wait();
    }
}

/// The operator binary, stopped (TERM, then KILL) when dropped.
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    fn start(servers: &Servers) -> Result<Self> {
        let log = servers.dir.join("logs").join("operator.log");
        let out = std::fs::File::create(&log)?;
        let mut command = Command::new(OPERATOR);
        // FD_BENCH_OPERATOR_ENV_X=v sets X=v for the operator alone: a heap profiler's
        // preload, an allocator's tuning.
        for (key, value) in std::env::vars() {
            if let Some(name) = key.strip_prefix("FD_BENCH_OPERATOR_ENV_") {
                command.env(name, value);
            }
        }
        let child = command
            .args([
                "--metrics-addr",
                METRICS_ADDR,
                "--namespace",
                OPERATOR_NAMESPACE,
                "--no-leader-election",
            ])
            .env("KUBECONFIG", &servers.kubeconfig)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        // apiserver.sh stops it too, should this process die first.
        std::fs::write(
            servers.dir.join("pids").join("operator.pid"),
            child.id().to_string(),
        )?;
        Ok(Self { child, log })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Memory and CPU of one process, from /proc.
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    /// Resident now, MiB.
    rss: f64,
    /// Peak resident since it started, MiB.
    hwm: f64,
    /// User + system CPU since it started, seconds.
    cpu: f64,
}

fn usage(pid: u32) -> Option<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<f64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))?
            .split_whitespace()
            .next()?
            .parse::<f64>()
            .ok()
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which ends with the last ')': utime and stime are
    // the 14th and 15th fields of the line, the 12th and 13th after it.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(Usage {
        rss: kib("VmRSS:")? / 1024.0,
        hwm: kib("VmHWM:")? / 1024.0,
        cpu: ticks / clock_ticks(),
    })
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The operator's own counters, from its /metrics.
#[derive(Clone, Debug, Default)]
struct Metrics {
    reconciles: f64,
    failures: BTreeMap<String, f64>,
    duration_sum: f64,
    duration_count: f64,
    injections_created: f64,
    verdicts: BTreeMap<String, f64>,
}

impl Metrics {
    fn parse(text: &str) -> Self {
        let mut m = Self::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let label = |key: &str| -> String {
                name.split_once(&format!("{key}=\""))
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .map(|(v, _)| v.to_owned())
                    .unwrap_or_default()
            };
            match name.split('{').next().unwrap_or_default() {
                "firedrill_operator_reconciles_total" => m.reconciles = value,
                "firedrill_operator_reconcile_failures_total" => {
                    m.failures.insert(label("category"), value);
                }
                "firedrill_operator_reconcile_duration_seconds_sum" => m.duration_sum = value,
                "firedrill_operator_reconcile_duration_seconds_count" => m.duration_count = value,
                "firedrill_operator_injections_created_total" => m.injections_created = value,
                "firedrill_operator_experiments_completed_total" => {
                    m.verdicts.insert(label("verdict"), value);
                }
                _ => {}
            }
        }
        m
    }

    fn failures_total(&self) -> f64 {
        self.failures.values().sum()
    }
}

async fn metrics(http: &reqwest::Client) -> Result<Metrics> {
    let text = http
        .get(format!("http://{METRICS_ADDR}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(Metrics::parse(&text))
}

/// The API server's requests so far by `VERB resource` (its `apiserver_request_total`):
/// all clients', but the benchmark's own are its creations, patches, deletions and watches.
async fn api_requests(client: &Client) -> Result<BTreeMap<String, f64>> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix("=\""))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        let key = format!("{} {}", label("verb"), label("resource"));
        *counts.entry(key).or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    Ok(counts)
}

/// The requests between two [`api_requests`], the most frequent first.
fn requests_between(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> String {
    let mut delta: Vec<(&String, f64)> = after
        .iter()
        .map(|(k, v)| (k, v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect();
    delta.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = delta.iter().map(|(_, d)| d).sum();
    let top: Vec<String> = delta
        .iter()
        .take(8)
        .map(|(k, d)| format!("{k} {d:.0}"))
        .collect();
    format!("{total:.0} in all; {}", top.join(", "))
}

/// When the first, half and all of the Experiments met a condition, from a start.
#[derive(Clone, Copy, Debug)]
struct Milestones {
    first: Duration,
    half: Duration,
    all: Duration,
}

/// Waits until `count` Experiments in `store` satisfy `done`; polls every 50 ms.
async fn wait_all(
    store: &Store<Experiment>,
    count: usize,
    start: Instant,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Experiment) -> bool,
) -> Result<Milestones> {
    let mut first = None;
    let mut half = None;
    let mut last_report = Instant::now();
    loop {
        let n = store.state().iter().filter(|e| done(e)).count();
        let now = start.elapsed();
        if n >= 1 && first.is_none() {
            first = Some(now);
        }
        if n * 2 >= count && half.is_none() {
            half = Some(now);
        }
        if n >= count {
            return Ok(Milestones {
                first: first.unwrap_or(now),
                half: half.unwrap_or(now),
                all: now,
            });
        }
        if now > timeout {
            return Err(format!("after {timeout:?} only {n} of {count} Experiments {what}").into());
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            eprintln!("  .. {:>5.1}s: {n}/{count} {what}", now.as_secs_f64());
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn phase(e: &Experiment) -> Phase {
    e.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

fn completed(e: &Experiment) -> bool {
    phase(e) == Phase::Completed
}

/// The Experiments' template: the catalog's network partition.
fn mission() -> Result<Experiment> {
    let manifests = load_str(MISSION).map_err(|problems| {
        format!(
            "experiments/network-partition.yaml: {}",
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    match manifests.into_iter().next() {
        Some(Manifest::Experiment(e)) => Ok(*e),
        _ => Err("experiments/network-partition.yaml holds no Experiment".into()),
    }
}

fn namespace_name(i: usize) -> String {
    format!("fd-bench-{i:02}")
}

/// Experiment `i` of `count`: the mission in its namespace; `live` ones inject, judged by an
/// HTTP probe of the operator's own /healthz (always healthy), the others are dry runs.
fn experiment(template: &Experiment, prefix: &str, i: usize, live: bool) -> Result<Experiment> {
    let namespace = namespace_name(i % NAMESPACES);
    let mut value = serde_json::to_value(template)?;
    value["metadata"] = json!({
        "name": format!("{prefix}-{i:04}"),
        "namespace": namespace,
        "labels": {BENCH_LABEL: prefix, "firedrill.dev/mission": "network-partition"},
    });
    value["spec"]["target"]["namespaces"] = json!([namespace]);
    if live {
        value["spec"]["hypothesis"]["probes"] = json!([{
            "name": "operator-healthz",
            "http": {"url": format!("http://{METRICS_ADDR}/healthz")},
        }]);
        value["spec"]["abortConditions"] = json!([]);
    } else {
        value["spec"]["dryRun"] = json!(true);
    }
    if let Some(object) = value.as_object_mut() {
        object.remove("status");
    }
    Ok(serde_json::from_value(value)?)
}

/// Runs `f` on every item with [`IN_FLIGHT`] at a time; returns how long it took.
async fn concurrently<T, F, Fut>(items: Vec<T>, f: F) -> Result<Duration>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let start = Instant::now();
    stream::iter(items.into_iter().map(f))
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(start.elapsed())
}

fn kubectl(servers: &Servers, args: &[&str]) -> Result<()> {
    let bin = cache_bin("k8s", "K8S_VERSION", "kubectl").ok_or("no kubectl")?;
    let out = Command::new(bin)
        .arg("--kubeconfig")
        .arg(&servers.kubeconfig)
        .args(args)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
}

/// CRDs, fake zoned Nodes, opted-in namespaces with a default ServiceAccount and three Pods
/// each (one per zone), all through the API: nothing runs them.
async fn setup(servers: &Servers, client: &Client) -> Result<()> {
    kubectl(servers, &["apply", "--server-side", "-f", CRDS])?;
    kubectl(
        servers,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ],
    )?;
    let nodes: Api<Node> = Api::all(client.clone());
    for (i, zone) in ZONES.iter().enumerate() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": format!("fd-bench-{zone}"), "labels": {
                "topology.kubernetes.io/zone": zone, "kubernetes.io/hostname": format!("fd-bench-{zone}")}},
            "spec": {"podCIDR": format!("10.245.{}.0/24", i + 1)},
        }))?;
        nodes.create(&PostParams::default(), &node).await?;
    }
    let own: Namespace = serde_json::from_value(json!({"metadata": {"name": OPERATOR_NAMESPACE}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &own)
        .await?;
    let client = client.clone();
    concurrently((0..NAMESPACES).collect(), move |i| {
        let client = client.clone();
        async move {
            let name = namespace_name(i);
            let ns: Namespace = serde_json::from_value(json!({"metadata": {
                "name": name,
                "labels": {firedrill_operator::OPT_IN_LABEL: firedrill_operator::OPT_IN_VALUE}}}))?;
            Api::<Namespace>::all(client.clone())
                .create(&PostParams::default(), &ns)
                .await?;
            // No controller-manager makes it; Pod admission needs it.
            let sa: ServiceAccount =
                serde_json::from_value(json!({"metadata": {"name": "default"}}))?;
            Api::<ServiceAccount>::namespaced(client.clone(), &name)
                .create(&PostParams::default(), &sa)
                .await?;
            let pods: Api<Pod> = Api::namespaced(client.clone(), &name);
            for zone in ZONES {
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("talk-{zone}"), "labels": {"app": "talk", "zone": zone}},
                    "spec": {
                        "nodeName": format!("fd-bench-{zone}"),
                        "automountServiceAccountToken": false,
                        "containers": [{"name": "talk", "image": "registry.invalid/never-pulled:0"}],
                    },
                }))?;
                pods.create(&PostParams::default(), &pod).await?;
            }
            Ok(())
        }
    })
    .await?;
    Ok(())
}

async fn create_experiments(
    client: &Client,
    template: &Experiment,
    prefix: &str,
    count: usize,
    live: bool,
) -> Result<Duration> {
    let experiments = (0..count)
        .map(|i| experiment(template, prefix, i, live))
        .collect::<Result<Vec<_>>>()?;
    concurrently(experiments, |e| {
        let api: Api<Experiment> =
            Api::namespaced(client.clone(), &e.namespace().unwrap_or_default());
        async move {
            api.create(&PostParams::default(), &e).await?;
            Ok(())
        }
    })
    .await
}

/// Samples the operator's memory every 200 ms: the highest resident size seen.
#[derive(Clone, Default)]
struct Sampler {
    peak_rss: Arc<Mutex<f64>>,
}

impl Sampler {
    fn spawn(&self, pid: u32) -> tokio::task::JoinHandle<()> {
        let peak = self.peak_rss.clone();
        tokio::spawn(async move {
            loop {
                if let Some(u) = usage(pid)
                    && let Ok(mut p) = peak.lock()
                {
                    *p = p.max(u.rss);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }

    fn take(&self) -> f64 {
        self.peak_rss
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }
}

/// One row of the table.
struct Row {
    what: String,
    value: String,
}

struct Report {
    rows: Vec<Row>,
}

impl Report {
    fn add(&mut self, what: impl Into<String>, value: impl Into<String>) {
        let row = Row {
            what: what.into(),
            value: value.into(),
        };
        eprintln!("  {}: {}", row.what, row.value);
        self.rows.push(row);
    }

    fn section(&mut self, title: &str) {
        eprintln!("== {title}");
        self.rows.push(Row {
            what: format!("-- {title}"),
            value: String::new(),
        });
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn mib(v: f64) -> String {
    format!("{v:.1} MiB")
}

fn milestones(m: Milestones) -> String {
    format!(
        "first {:.1} s, half {:.1} s, all {:.1} s",
        m.first.as_secs_f64(),
        m.half.as_secs_f64(),
        m.all.as_secs_f64()
    )
}

/// Reconciles, failures and mean duration between two readings, over `elapsed`.
fn rate(before: &Metrics, after: &Metrics, elapsed: Duration, count: usize) -> String {
    let n = after.reconciles - before.reconciles;
    let failed = after.failures_total() - before.failures_total();
    let dn = after.duration_count - before.duration_count;
    let mean = if dn > 0.0 && n > 0.0 {
        format!(
            "{:.0} ms",
            (after.duration_sum - before.duration_sum) / dn * 1000.0
        )
    } else {
        "-".into()
    };
    let mut failures: Vec<String> = vec![format!("{failed}")];
    failures.extend(after.failures.iter().filter_map(|(k, v)| {
        let d = v - before.failures.get(k).copied().unwrap_or_default();
        (d > 0.0).then(|| format!("{k} {d}"))
    }));
    format!(
        "{n} reconciles ({:.2} per Experiment) in {:.1} s = {:.0}/s, mean {mean} each; failed: {}",
        n / count as f64,
        elapsed.as_secs_f64(),
        n / elapsed.as_secs_f64().max(0.001),
        failures.join(", ")
    )
}

fn memory(report: &mut Report, servers: &Servers, operator: &Operator, sampler: &Sampler) {
    if let Some(u) = usage(operator.pid()) {
        report.add(
            "operator RSS now / peak seen (200 ms) / VmHWM",
            format!(
                "{} / {} / {}",
                mib(u.rss),
                mib(sampler.take().max(u.rss)),
                mib(u.hwm)
            ),
        );
        report.add("operator CPU so far", format!("{:.1} s", u.cpu));
    }
    for name in ["kube-apiserver", "etcd"] {
        if let Some(u) = servers.pid(name).and_then(usage) {
            report.add(
                format!("{name} RSS now / VmHWM, CPU so far"),
                format!("{} / {}, {:.1} s", mib(u.rss), mib(u.hwm), u.cpu),
            );
        }
    }
}

/// The Experiment count's store, ready.
async fn watch_experiments(
    client: &Client,
) -> Result<(Store<Experiment>, tokio::task::JoinHandle<()>)> {
    let api: Api<Experiment> = Api::all(client.clone());
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().labels(BENCH_LABEL);
    let task = tokio::spawn(
        reflector::reflector(writer, watcher(api, config))
            .applied_objects()
            .for_each(|_| async {}),
    );
    reader.wait_until_ready().await?;
    Ok((reader, task))
}

async fn run(servers: &Servers, report: &mut Report, load_start: String) -> Result<()> {
    let count: usize = match std::env::var("FD_BENCH_EXPERIMENTS") {
        Ok(n) => n.parse()?,
        Err(_) => 1000,
    };
    let live = std::env::var("FD_BENCH_LIVE").map_or(true, |v| v != "0");
    let kubeconfig = Kubeconfig::read_from(&servers.kubeconfig)?;
    let mut config =
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    config.read_timeout = Some(Duration::from_secs(300));
    let client = Client::try_from(config)?;
    let server_version = client.apiserver_version().await?;
    let etcd_version = cache_bin("etcd", "ETCD_VERSION", "etcd")
        .and_then(|b| Command::new(b).arg("--version").output().ok())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    report.section("setup");
    report.add(
        "versions",
        format!(
            "kube-apiserver {} ({}), {etcd_version}, operator {OPERATOR}",
            server_version.git_version, server_version.platform
        ),
    );
    report.add(
        "machine",
        format!(
            "{} cores; load average at start {load_start}",
            std::thread::available_parallelism().map_or(0, usize::from)
        ),
    );
    report.add(
        "Experiments",
        format!(
            "{count} copies of experiments/network-partition.yaml in {NAMESPACES} opted-in \
             namespaces, each with 3 Pods (one per zone) bound to 3 fake Nodes; phases 1-3 \
             dryRun: true, phase 4 live"
        ),
    );
    setup(servers, &client).await?;
    let template = mission()?;
    let (store, watch_task) = watch_experiments(&client).await?;
    let created = create_experiments(&client, &template, "dry", count, false).await?;
    report.add(
        "created (before the operator starts)",
        format!(
            "{count} in {} ({:.0}/s, {IN_FLIGHT} in flight)",
            secs(created),
            count as f64 / created.as_secs_f64()
        ),
    );
    wait_all(
        &store,
        count,
        Instant::now(),
        Duration::from_secs(60),
        "seen",
        |_| true,
    )
    .await?;

    // ---- Phase 1: the operator starts with 1,000 dry-run Experiments waiting.
    report.section(&format!(
        "phase 1: operator start -> {count} dry-run Experiments Completed"
    ));
    let requests_before = api_requests(&client).await?;
    let start = Instant::now();
    let operator = Operator::start(servers)?;
    let sampler = Sampler::default();
    let sampling = sampler.spawn(operator.pid());
    let timeout = Duration::from_secs(600);
    let touched = wait_all(&store, count, start, timeout, "with the finalizer", |e| {
        e.finalizers()
            .iter()
            .any(|f| f == firedrill_operator::FINALIZER)
    })
    .await?;
    let done = wait_all(&store, count, start, timeout, "Completed", completed).await?;
    let at_done = metrics(&http).await?;
    report.add("finalizer added", milestones(touched));
    report.add("Completed (verdict Skipped: dry run)", milestones(done));
    let skipped = store
        .state()
        .iter()
        .filter(|e| {
            e.status
                .as_ref()
                .is_some_and(|s| s.verdict == Some(firedrill_core::api::Verdict::Skipped))
        })
        .count();
    report.add("verdict Skipped", format!("{skipped} of {count}"));
    report.add(
        "reconciles, operator start -> all Completed",
        rate(&Metrics::default(), &at_done, done.all, count),
    );
    report.add(
        "Experiments completed per second",
        format!("{:.0}/s", count as f64 / done.all.as_secs_f64()),
    );
    report.add(
        "API requests, operator start -> all Completed",
        requests_between(&requests_before, &api_requests(&client).await?),
    );
    memory(report, servers, &operator, &sampler);
    let settle = Duration::from_secs(15);
    tokio::time::sleep(settle).await;
    let settled = metrics(&http).await?;
    report.add(
        format!("idle {} s after", settle.as_secs()),
        rate(&at_done, &settled, settle, count),
    );
    memory(report, servers, &operator, &sampler);

    // ---- Phase 2: every one touched. A started Experiment's spec cannot change (a CEL
    // rule), so a label is what a user can still change; each wakes a reconciliation of
    // a Completed Experiment, which should cost the API server nothing but the watch event.
    report.section(&format!(
        "phase 2: a label on all {count} Completed -> each reconciled once more"
    ));
    let before = metrics(&http).await?;
    let requests_before = api_requests(&client).await?;
    let start = Instant::now();
    let names: Vec<(String, String)> = store
        .state()
        .iter()
        .map(|e| (e.namespace().unwrap_or_default(), e.name_any()))
        .collect();
    let patch = json!({"metadata": {"labels": {"firedrill.dev/bench-touched": "yes"}}});
    let patched = concurrently(names.clone(), |(ns, name)| {
        let api: Api<Experiment> = Api::namespaced(client.clone(), &ns);
        let patch = patch.clone();
        async move {
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            Ok(())
        }
    })
    .await?;
    report.add("patched", secs(patched));
    tokio::time::sleep(settle).await;
    let after = metrics(&http).await?;
    report.add(
        format!(
            "reconciles, first patch -> {} s after the last",
            settle.as_secs()
        ),
        rate(&before, &after, start.elapsed(), count),
    );
    report.add(
        "API requests, first patch -> the same",
        requests_between(&requests_before, &api_requests(&client).await?),
    );
    memory(report, servers, &operator, &sampler);

    // ---- Phase 3: delete them, then 1,000 live ones.
    report.section(&format!("phase 3: delete all {count} (finalizer path)"));
    let before = metrics(&http).await?;
    let start = Instant::now();
    concurrently(names, |(ns, name)| {
        let api: Api<Experiment> = Api::namespaced(client.clone(), &ns);
        async move {
            api.delete(&name, &DeleteParams::default()).await?;
            Ok(())
        }
    })
    .await?;
    let mut gone = Duration::ZERO;
    while start.elapsed() < timeout {
        if store.state().is_empty() {
            gone = start.elapsed();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !store.state().is_empty() {
        return Err(format!(
            "{} Experiments still there after {timeout:?}",
            store.state().len()
        )
        .into());
    }
    let after = metrics(&http).await?;
    report.add("all gone", secs(gone));
    report.add("reconciles", rate(&before, &after, gone, count));

    if live {
        let live = Live {
            servers,
            client: &client,
            http: &http,
            store: &store,
            operator: &operator,
            sampler: &sampler,
        };
        if let Err(e) = live.run(report, &template, count).await {
            report.add("phase 4", format!("FAILED: {e}"));
        }
    }

    sampling.abort();
    watch_task.abort();
    let log = std::fs::read_to_string(&operator.log).unwrap_or_default();
    let warnings = log.lines().filter(|l| l.contains(" WARN ")).count();
    let errors = log.lines().filter(|l| l.contains(" ERROR ")).count();
    report.section("end");
    let mut categories: BTreeMap<String, usize> = BTreeMap::new();
    for line in log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
    {
        let category = line.split_once("category=").map_or("other", |(_, rest)| {
            rest.split_whitespace().next().unwrap_or("other")
        });
        *categories
            .entry(category.trim_matches('"').to_owned())
            .or_default() += 1;
    }
    report.add(
        "operator log",
        format!("{warnings} WARN, {errors} ERROR lines; by category {categories:?}"),
    );
    drop(operator);
    let mut seen = std::collections::BTreeSet::new();
    for line in log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
    {
        // Without the timestamp, to tell them apart.
        let line: String = line
            .split_once(' ')
            .map_or(line, |(_, rest)| rest)
            .chars()
            .take(400)
            .collect();
        if seen.len() < 8 && seen.insert(line.clone()) {
            eprintln!("operator log: {line}");
        }
    }
    Ok(())
}

/// Phase 4's inputs.
struct Live<'a> {
    servers: &'a Servers,
    client: &'a Client,
    http: &'a reqwest::Client,
    store: &'a Store<Experiment>,
    operator: &'a Operator,
    sampler: &'a Sampler,
}

impl Live<'_> {
    /// `count` live Experiments for at most `FD_BENCH_LIVE_SECONDS` (default 180): how far
    /// they get, the reconcile rate, memory.
    async fn run(&self, report: &mut Report, template: &Experiment, count: usize) -> Result<()> {
        let budget = Duration::from_secs(match std::env::var("FD_BENCH_LIVE_SECONDS") {
            Ok(s) => s.parse()?,
            Err(_) => 180,
        });
        report.section(&format!(
            "phase 4: {count} live Experiments, at most {} s (no agent: each injection times out after 60 s)",
            budget.as_secs()
        ));
        let before = metrics(self.http).await?;
        let requests_before = api_requests(self.client).await?;
        let start = Instant::now();
        let created = create_experiments(self.client, template, "live", count, true).await?;
        report.add("created", secs(created));
        let mut all_started = None;
        let mut all_done = None;
        let mut most_injecting = (0, Duration::ZERO);
        let mut fastest = (0.0, Duration::ZERO);
        let mut last = (Instant::now(), before.clone());
        let mut peak_rss = 0.0_f64;
        while start.elapsed() < budget {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let state = self.store.state();
            let started = state
                .iter()
                .filter(|e| {
                    e.status.as_ref().is_some_and(|s| {
                        s.inject_requested_at.is_some() || s.phase == Phase::Completed
                    })
                })
                .count();
            let injecting = state
                .iter()
                .filter(|e| {
                    matches!(
                        phase(e),
                        Phase::Injecting | Phase::Holding | Phase::Reverting
                    )
                })
                .count();
            let done = state.iter().filter(|e| completed(e)).count();
            let now = metrics(self.http).await?;
            let per_second =
                (now.reconciles - last.1.reconciles) / last.0.elapsed().as_secs_f64().max(0.001);
            last = (Instant::now(), now);
            if let Some(u) = usage(self.operator.pid()) {
                peak_rss = peak_rss.max(u.rss);
            }
            let at = start.elapsed();
            if injecting > most_injecting.0 {
                most_injecting = (injecting, at);
            }
            if per_second > fastest.0 {
                fastest = (per_second, at);
            }
            eprintln!(
                "  .. {:>5.1}s: {started} past steady state, {injecting} injecting, {done} Completed; {per_second:.0} reconciles/s",
                at.as_secs_f64()
            );
            if started >= count && all_started.is_none() {
                all_started = Some(at);
            }
            if done >= count {
                all_done = Some(at);
                break;
            }
        }
        let after = metrics(self.http).await?;
        report.add(
            "API requests while live",
            requests_between(&requests_before, &api_requests(self.client).await?),
        );
        let elapsed = start.elapsed();
        let state = self.store.state();
        let of = |n: usize| format!("{n} of {count} within {} s", budget.as_secs());
        report.add(
            "past steady state (Injecting or later)",
            all_started.map_or_else(
                || {
                    of(state
                        .iter()
                        .filter(|e| {
                            e.status
                                .as_ref()
                                .is_some_and(|s| s.inject_requested_at.is_some())
                        })
                        .count())
                },
                |t| format!("all by {}", secs(t)),
            ),
        );
        report.add(
            "Completed",
            all_done.map_or_else(
                || of(state.iter().filter(|e| completed(e)).count()),
                |t| format!("all by {}", secs(t)),
            ),
        );
        let mut phases: BTreeMap<String, usize> = BTreeMap::new();
        for e in &state {
            *phases.entry(format!("{:?}", phase(e))).or_default() += 1;
        }
        report.add("phases at the end", format!("{phases:?}"));
        let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
        for e in &state {
            let v = e
                .status
                .as_ref()
                .and_then(|s| s.verdict)
                .map_or("none yet".into(), |v| format!("{v:?}"));
            *verdicts.entry(v).or_default() += 1;
        }
        report.add("verdicts", format!("{verdicts:?}"));
        report.add(
            "most injecting at once",
            format!("{} at {}", most_injecting.0, secs(most_injecting.1)),
        );
        report.add(
            "Injections created",
            format!("{}", after.injections_created - before.injections_created),
        );
        report.add(
            "reconciles, whole phase",
            rate(&before, &after, elapsed, count),
        );
        report.add(
            "fastest 5 s",
            format!("{:.0} reconciles/s at {}", fastest.0, secs(fastest.1)),
        );
        report.add("operator RSS, highest seen (5 s)", mib(peak_rss));
        memory(report, self.servers, self.operator, self.sampler);
        Ok(())
    }
}

fn print_table(report: &Report) -> Result<()> {
    let width = report
        .rows
        .iter()
        .filter(|r| !r.value.is_empty())
        .map(|r| r.what.len())
        .max()
        .unwrap_or(0);
    let mut out = std::io::stdout().lock();
    writeln!(out)?;
    writeln!(out, "firedrill-operator scale benchmark")?;
    for row in &report.rows {
        if row.value.is_empty() {
            writeln!(out, "{}", row.what)?;
        } else {
            writeln!(out, "  {:<width$}  {}", row.what, row.value)?;
        }
    }
    Ok(())
}
