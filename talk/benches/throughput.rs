//! talk vs raw JetStream on this machine, replication 3.
//!
//! Prints: raw JetStream publish rate and talk's sustained send rate (same
//! number of closed-loop workers), their ratio, and talk's p50/p99 at half
//! its max rate (open loop, via the talk-load library).
//! Run: `cargo bench -p talk --bench throughput` (~1-2 minutes).
//! Env: TALK_NATS_SERVER (binary), TALK_BENCH_SECONDS (default 10),
//! TALK_BENCH_WORKERS (default 64), TALK_BENCH_SYNC (default|always|1s),
//! TALK_BENCH_CHECK_INTERVAL (talk-load's reader poll in the open-loop phase, default
//! talk-load's own).
//!
//! "raw" publishes plain messages; "raw + msg id" also sets the Nats-Msg-Id header that
//! talk-server sets for exactly-once retries (JetStream then tracks each id for its
//! duplicate window): the same JetStream work a talk send asks for, without HTTP.
//! The headline ratio is against plain raw.

#![allow(clippy::unwrap_used)] // a benchmark harness: panics are the error report

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use talk::load::client::TalkClient;
use talk::load::{LoadConfig, Profile};
use talk::nats::{LocalCluster, LocalClusterSpec, NatsBinary, SyncPolicy};
use talk::wire::SendRequest;

struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let secs: u64 = env_or("TALK_BENCH_SECONDS", 10);
    let workers: usize = env_or("TALK_BENCH_WORKERS", 64);
    let sync = SyncPolicy::parse(&std::env::var("TALK_BENCH_SYNC").unwrap_or_default()).unwrap();
    let run = Duration::from_secs(secs);
    let dir = tempfile::tempdir().unwrap();
    let binary = NatsBinary::locate().unwrap_or_else(|e| {
        panic!("benchmark needs nats-server (apt-get install nats-server): {e}")
    });
    let cluster = LocalCluster::start(
        binary,
        LocalClusterSpec::new(3, sync, dir.path().join("nats")),
    )
    .unwrap();
    let urls = cluster.client_urls();
    println!(
        "talk benchmark: 3-server JetStream cluster, replication 3, fsync {sync}, {workers} workers, {secs}s per phase"
    );

    let raw = raw_jetstream(&urls, workers, run, false).await;
    println!("raw JetStream publish (R3):  {raw:>10.0} msg/s");
    let raw_id = raw_jetstream(&urls, workers, run, true).await;
    println!("raw + msg id (R3):           {raw_id:>10.0} msg/s");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = Guard(
        Command::new(env!("CARGO_BIN_EXE_talk-server"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--nats-url", &urls.join(",")])
            .args(["--replicas", "3"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;

    let talk_max = talk_closed_loop(&base, workers, run).await;
    println!("talk-server send (R3):       {talk_max:>10.0} msg/s");
    let ratio = talk_max / raw;
    println!(
        "ratio talk/raw:               {:>10.1} %  (target >= 70 %: {}); talk/(raw + msg id) {:.1} %",
        ratio * 100.0,
        if ratio >= 0.7 { "met" } else { "NOT met" },
        talk_max / raw_id * 100.0
    );

    let half = (talk_max / 2.0).max(1.0);
    let mut config = LoadConfig::for_targets(vec![base]);
    config.profile = Profile::Steady;
    config.rate = half;
    config.connections = workers;
    config.duration = run;
    config.sli_window = run + Duration::from_secs(5);
    config.sli_listen = "off".into();
    config.report = "-".into();
    if let Ok(v) = std::env::var("TALK_BENCH_CHECK_INTERVAL") {
        config.check_interval = talk::duration::parse_duration(&v).unwrap();
    }
    let report = talk::load::run(config, std::future::pending(), |_| {})
        .await
        .unwrap();
    let s = report.sli;
    println!(
        "open loop at {half:.0} msg/s (half max): p50 {:.2} ms, p99 {:.2} ms  (target p99 < 50 ms: {}); acked {}, failed {}, lost {}",
        s.p50_latency_ms,
        s.p99_latency_ms,
        if s.p99_latency_ms < 50.0 {
            "met"
        } else {
            "NOT met"
        },
        report.check.total.acked,
        report.check.total.indeterminate,
        report.check.total.lost,
    );
}

async fn raw_jetstream(urls: &[String], workers: usize, run: Duration, msg_id: bool) -> f64 {
    let addrs: Vec<async_nats::ServerAddr> = urls.iter().map(|u| u.parse().unwrap()).collect();
    let client = async_nats::connect(addrs).await.unwrap();
    let js = async_nats::jetstream::new(client);
    // The JetStream meta leader may still be electing right after start.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = js
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: "RAW".into(),
            subjects: vec!["raw.>".into()],
            num_replicas: 3,
            ..Default::default()
        })
        .await
    {
        assert!(Instant::now() < deadline, "creating RAW stream: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let js = js.clone();
        let count = count.clone();
        tasks.push(tokio::spawn(async move {
            // Same payload shape and size as talk stores.
            let payload = serde_json::to_vec(&serde_json::json!({
                "room": "bench", "producer": format!("raw-{w}-{msg_id}"), "counter": 0,
                "body": "x".repeat(64), "receivedAtMs": 0
            }))
            .unwrap();
            let mut counter = 0u64;
            while start.elapsed() < run {
                counter += 1;
                let subject = format!("raw.r{}", w % 8);
                let ack = if msg_id {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Nats-Msg-Id", format!("raw-{w}:{counter}").as_str());
                    js.publish_with_headers(subject, headers, payload.clone().into())
                        .await
                } else {
                    js.publish(subject, payload.clone().into()).await
                };
                if let Ok(ack) = ack
                    && ack.await.is_ok()
                {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

async fn talk_closed_loop(base: &str, workers: usize, run: Duration) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let count = count.clone();
        let base = base.to_owned();
        tasks.push(tokio::spawn(async move {
            // talk-load's own client, one per worker as talk-load has one per producer.
            let http = TalkClient::new(Duration::from_secs(5)).unwrap();
            let room = format!("bench-{}", w % 8);
            let mut counter = 0;
            while start.elapsed() < run {
                counter += 1;
                let req = SendRequest {
                    producer: format!("bench-{w}"),
                    counter,
                    body: "x".repeat(64),
                    sent_at_ms: None,
                };
                let ok = http
                    .send_within(&base, &room, &req, Duration::from_secs(5))
                    .await
                    .is_ok();
                if ok {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

async fn wait_ready(base: &str) {
    let http = reqwest::Client::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("talk-server not ready");
}
