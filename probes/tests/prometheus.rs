//! `prometheus` probes against a real Prometheus on loopback (Debian package `prometheus`).

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use firedrill_core::api::Probe;
use firedrill_core::engine::Outcome;
use firedrill_probes::Prober;
use serde_json::{Value, json};

const INSTALL: &str = "prometheus is needed for these tests: install it with \
    `apt-get update && apt-get install -y prometheus` (Debian/Ubuntu), or point \
    FIREDRILL_PROMETHEUS_BIN at a prometheus binary";

/// A Prometheus scraping itself, killed when dropped (also when a test panics).
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FIREDRILL_PROMETHEUS_BIN") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("prometheus"))
        .find(|p| p.is_file());
    let found = on_path.or_else(|| {
        let usr = Path::new("/usr/bin/prometheus");
        usr.is_file().then(|| usr.to_owned())
    });
    found.unwrap_or_else(|| panic!("{INSTALL}"))
}

/// A loopback port nobody listens on (connections to it are refused).
fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

impl Prometheus {
    async fn start() -> Self {
        let bin = binary();
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = closed_port();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      \
                 - targets: ['{addr}']\n"
            ),
        )
        .expect("write config");
        let log = File::create(dir.path().join("log")).expect("log file");
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}; {INSTALL}", bin.display()));
        let mut prometheus = Self { child, addr, dir };
        prometheus.wait_until_scraped().await;
        prometheus
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Ready, and `up` has its first sample (so queries have something to find).
    async fn wait_until_scraped(&mut self) {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let query = format!("{}/api/v1/query?query=up", self.url());
        let give_up = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < give_up,
                "prometheus did not scrape itself within 60s:\n{}",
                self.log()
            );
            if let Ok(response) = client.get(&query).send().await
                && let Ok(body) = response.json::<Value>().await
                && body["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn probe(endpoints: &[String], query: &str, timeout: &str) -> Probe {
    serde_json::from_value(json!({
        "name": "prom",
        "prometheus": {"endpoints": endpoints, "query": query},
        "tolerance": {"op": ">=", "value": 1.0},
        "timeout": timeout,
    }))
    .expect("a valid probe")
}

fn unhealthy(outcome: Outcome) -> String {
    match outcome {
        Outcome::Unhealthy(why) => why,
        other => panic!("expected Unhealthy, got {other:?}"),
    }
}

/// One Prometheus for all cases: it takes seconds to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_a_real_prometheus() {
    let prom = Prometheus::start().await;
    let real = prom.url();
    let prober = Prober::builder().build().expect("prober");
    let sample = |endpoints: Vec<String>, query: &str, timeout: &str| {
        let p = probe(&endpoints, query, timeout);
        let prober = &prober;
        async move { prober.sample(&p).await }
    };

    // Numbers: one sample, a scalar, an aggregate.
    let one = vec![real.clone()];
    assert_eq!(
        sample(one.clone(), r#"up{job="prometheus"}"#, "2s").await,
        Outcome::Measured(1.0)
    );
    assert_eq!(
        sample(one.clone(), "count(prometheus_build_info)", "2s").await,
        Outcome::Measured(1.0)
    );
    assert_eq!(
        sample(one.clone(), "scalar(up) * 2.5", "2s").await,
        Outcome::Measured(2.5)
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    match sample(one.clone(), "time()", "2s").await {
        Outcome::Measured(t) => assert!((t - now).abs() < 60.0, "time() = {t}, now {now}"),
        other => panic!("time(): {other:?}"),
    }

    // Answers that are not one number say which endpoint said what.
    let why = unhealthy(sample(one.clone(), r#"up{job="nope"}"#, "2s").await);
    assert_eq!(
        why,
        format!(
            "prometheus query failed on every endpoint: {real}: empty result (no series matched)"
        )
    );
    let why = unhealthy(sample(one.clone(), "up or prometheus_build_info", "2s").await);
    assert!(why.contains("2 series, need exactly one"), "{why}");
    let why = unhealthy(sample(one.clone(), "NaN", "2s").await);
    assert!(why.ends_with(&format!("{real}: value is NaN")), "{why}");
    let why = unhealthy(sample(one.clone(), "sum(up", "2s").await);
    assert!(why.contains("HTTP 400, bad_data"), "{why}");
    let why = unhealthy(sample(one.clone(), "up[1m]", "2s").await);
    assert!(why.contains("result type matrix"), "{why}");

    // Failover: a dead replica first, the real one second.
    let dead = format!("http://{}", closed_port());
    let start = Instant::now();
    assert_eq!(
        sample(vec![dead.clone(), real.clone()], "up", "2s").await,
        Outcome::Measured(1.0)
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );

    // A blackholed replica (accepts, never answers) costs its share, not the whole timeout.
    let blackhole = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent = format!("http://{}", blackhole.local_addr().expect("addr"));
    let start = Instant::now();
    assert_eq!(
        sample(vec![silent.clone(), real.clone()], "up", "2s").await,
        Outcome::Measured(1.0)
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1900),
        "{took:?}"
    );
    // From then on the replica that answered is asked first: the blackholed one is not
    // even connected to again while the other keeps answering.
    blackhole.set_nonblocking(true).expect("nonblocking");
    let connections =
        |listener: &TcpListener| std::iter::from_fn(|| listener.accept().ok()).count();
    assert_eq!(connections(&blackhole), 1, "the first sample tried it");
    for _ in 0..3 {
        assert_eq!(
            sample(vec![silent.clone(), real.clone()], "up", "2s").await,
            Outcome::Measured(1.0)
        );
    }
    assert_eq!(
        connections(&blackhole),
        0,
        "later samples asked the live one first"
    );

    // The first endpoint that has the number wins even if an earlier one answered badly.
    let prefixed = format!("{real}/wrong-prefix");
    assert_eq!(
        sample(vec![prefixed, real.clone()], "up", "2s").await,
        Outcome::Measured(1.0)
    );
    drop(blackhole);
}

#[tokio::test]
async fn all_endpoints_dead_names_each() {
    let a = format!("http://{}", closed_port());
    let b = format!("http://{}", closed_port());
    let prober = Prober::builder().build().expect("prober");
    let why = unhealthy(
        prober
            .sample(&probe(&[a.clone(), b.clone()], "up", "2s"))
            .await,
    );
    assert!(
        why.starts_with("prometheus query failed on every endpoint: "),
        "{why}"
    );
    let (first, second) = why
        .split_once("; ")
        .unwrap_or_else(|| panic!("two endpoints in {why}"));
    assert!(
        first.contains(&a) && first.to_lowercase().contains("refused"),
        "{why}"
    );
    assert!(
        second.starts_with(&b) && second.to_lowercase().contains("refused"),
        "{why}"
    );
}

#[tokio::test]
async fn silent_endpoints_are_cut_off_at_the_timeout() {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoints = [
        format!("http://{}", a.local_addr().expect("addr")),
        format!("http://{}", b.local_addr().expect("addr")),
    ];
    let prober = Prober::builder().build().expect("prober");
    let start = Instant::now();
    let why = unhealthy(prober.sample(&probe(&endpoints, "up", "600ms")).await);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took <= Duration::from_millis(700),
        "{took:?}"
    );
    for e in &endpoints {
        assert!(why.contains(&format!("{e}: no answer within")), "{why}");
    }
}

#[tokio::test]
async fn host_override_reaches_a_lab_prometheus_by_its_cluster_name() {
    // No Prometheus needed: a refused connection shows the override was used, since the
    // cluster name would otherwise not resolve at all.
    let dead = closed_port();
    let prober = Prober::builder()
        .resolve("prometheus-a.monitoring", dead)
        .build()
        .expect("prober");
    let endpoint = "http://prometheus-a.monitoring:9090".to_owned();
    let why = unhealthy(prober.sample(&probe(&[endpoint], "up", "1s")).await);
    assert!(why.to_lowercase().contains("refused"), "{why}");
}
