//! talk vs raw JetStream on this machine, replication 3.
//!
//! Prints: raw JetStream publish rate and talk's sustained send rate, one message per
//! request and in batches (each phase with the same number of messages in flight), their
//! ratios, and talk's p50/p99 at half its one-per-request max rate (open loop, via the
//! talk-load library). Beside each rate: the CPU time per message of the nats-servers,
//! talk-server and the client, which is where a phase's two cores went.
//! Run: `cargo bench -p talk --bench throughput` (~2 minutes).
//! Env: TALK_NATS_SERVER (binary), TALK_BENCH_SECONDS (default 10),
//! TALK_BENCH_WORKERS (default 64: messages in flight), TALK_BENCH_BATCH (default 16:
//! messages per batch request), TALK_BENCH_SYNC (default|always|1s),
//! TALK_BENCH_CHECK_INTERVAL (talk-load's reader poll in the open-loop phase, default
//! talk-load's own), TALK_BENCH_CHANNELS (default 4: send channels in the channel phase,
//! the workers' messages in flight spread over them), TALK_BENCH_PHASES (default
//! `raw,http,channel`: which phases run; the channel ratio needs raw),
//! TALK_BENCH_OPEN_PRODUCERS (talk-load's producers in the open loops, default the workers),
//! TALK_BENCH_TIMELINE (default 500ms: the open loops print talk-load's p99 over each such
//! slice, read from its own `/sli?window=`, to tell a stall from steady queueing; `off`:
//! not read).
//!
//! The channel phase sends over talk-server's send channel (`GET /channel`, one WebSocket
//! per channel, sends pipelined, one ack frame each) on a new cluster, with the same number
//! of messages in flight; then an open loop of talk-load `--transport channel` at half its
//! maximum gives its p50/p99.
//!
//! "raw" publishes plain messages; "raw + msg id" also sets the Nats-Msg-Id header that
//! talk-server sets for exactly-once retries (JetStream then tracks each id for its
//! duplicate window): the same JetStream work a talk send asks for, without HTTP.
//! The headline ratio is against plain raw.
//!
//! Every phase runs on a new cluster, and its clients connect to the stream's leader
//! (TALK_BENCH_VIA_FOLLOWER=1: to a follower). On one shared cluster the phases differed
//! by where the leader happened to be and by what the earlier phases left behind.

#![allow(clippy::unwrap_used)] // a benchmark harness: panics are the error report

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use talk::load::channel::ChannelConn;
use talk::load::client::TalkClient;
use talk::load::{LoadConfig, Profile, Transport};
use talk::nats::{LocalCluster, LocalClusterSpec, NatsBinary, SyncPolicy};
use talk::store::{MessageStore, StreamSpec};
use talk::wire::{ChannelSend, SendBatchRequest, SendRequest};

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
    let batch_size: usize = env_or("TALK_BENCH_BATCH", 16).max(1);
    let sync = SyncPolicy::parse(&std::env::var("TALK_BENCH_SYNC").unwrap_or_default()).unwrap();
    let run = Duration::from_secs(secs);
    let via_follower = std::env::var("TALK_BENCH_VIA_FOLLOWER").is_ok_and(|v| v == "1");
    println!(
        "talk benchmark: 3-server JetStream cluster, replication 3, fsync {sync}, {workers} workers, {secs}s per phase"
    );

    // Each phase gets a new cluster: JetStream's duplicate-tracking map and the stream's
    // files then start empty for every phase, not full of the phase before.
    let phases = std::env::var("TALK_BENCH_PHASES").unwrap_or_else(|_| "raw,http,channel".into());
    let runs = |phase: &str| phases.split(',').any(|p| p.trim() == phase);
    let (raw, raw_id) = if runs("raw") {
        let raw = raw_phase(
            "raw JetStream publish (R3):",
            sync,
            via_follower,
            workers,
            run,
            false,
        )
        .await;
        let raw_id = raw_phase("raw + msg id (R3):", sync, via_follower, workers, run, true).await;
        (Some(raw), Some(raw_id))
    } else {
        (None, None)
    };
    if runs("http") {
        http_phases(
            sync,
            via_follower,
            workers,
            batch_size,
            run,
            raw.zip(raw_id),
        )
        .await;
    }
    if runs("channel") {
        channel_phase(sync, via_follower, workers, run, raw.zip(raw_id)).await;
    }
}

/// talk-server over HTTP: one message per request, batches, and the open loop.
async fn http_phases(
    sync: SyncPolicy,
    via_follower: bool,
    workers: usize,
    batch_size: usize,
    run: Duration,
    raw: Option<(f64, f64)>,
) {
    // Each phase gets a new cluster: JetStream's duplicate-tracking map and the stream's
    // files then start empty for every phase, not full of the phase before.
    let lab = Lab::start(sync, via_follower).await;
    let (http_server, base) = talk_server(&lab).await;

    let cpu = CpuMeter::start(&lab.nats_pids, Some(http_server.0.id()));
    let talk_max = talk_closed_loop(&base, workers, 1, run).await;
    println!(
        "talk-server send (R3):       {talk_max:>10.0} msg/s   {}",
        cpu.per_message(talk_max, run)
    );
    // The same number of messages in flight as the other phases, in batches.
    let batch = batch_size.min(workers);
    let cpu = CpuMeter::start(&lab.nats_pids, Some(http_server.0.id()));
    let talk_batched = talk_closed_loop(&base, workers / batch, batch, run).await;
    println!(
        "talk-server batch send (R3): {talk_batched:>10.0} msg/s   {}  ({} requests of {batch} in flight)",
        cpu.per_message(talk_batched, run),
        workers / batch
    );
    let met = |ratio: f64| if ratio >= 0.7 { "met" } else { "NOT met" };
    if let Some((raw, raw_id)) = raw {
        for (name, talk) in [("send", talk_max), ("batch send", talk_batched)] {
            println!(
                "ratio talk {name:<10} / raw: {:>5.1} %  (target >= 70 %: {}); / (raw + msg id): {:.1} % ({})",
                talk / raw * 100.0,
                met(talk / raw),
                talk / raw_id * 100.0,
                met(talk / raw_id),
            );
        }
    }

    let cpu = CpuMeter::start(&lab.nats_pids, Some(http_server.0.id()));
    open_loop(&base, Transport::Http, talk_max, workers, run, cpu).await;
}

/// talk-server's send channel: closed loop, its ratio to raw, and the open loop.
async fn channel_phase(
    sync: SyncPolicy,
    via_follower: bool,
    workers: usize,
    run: Duration,
    raw: Option<(f64, f64)>,
) {
    // On a cluster of its own like the raw phases.
    let lab = Lab::start(sync, via_follower).await;
    let (server, base) = talk_server(&lab).await;
    let channels: usize = env_or("TALK_BENCH_CHANNELS", 4).clamp(1, workers);
    let cpu = CpuMeter::start(&lab.nats_pids, Some(server.0.id()));
    let (channel_max, latency) = channel_closed_loop(&base, channels, workers, run).await;
    println!(
        "talk-server channel (R3):    {channel_max:>10.0} msg/s   {}  ({channels} channels, {workers} in flight; p50 {:.2} ms, p99 {:.2} ms)",
        cpu.per_message(channel_max, run),
        latency.0,
        latency.1,
    );
    let target = |ratio: f64| if ratio >= 0.9 { "met" } else { "NOT met" };
    if let Some((raw, raw_id)) = raw {
        println!(
            "ratio talk channel    / raw: {:>5.1} %; / (raw + msg id): {:.1} % (target >= 90 % or >= 45k msg/s: {})",
            channel_max / raw * 100.0,
            channel_max / raw_id * 100.0,
            if channel_max >= 45_000.0 {
                "met"
            } else {
                target(channel_max / raw_id)
            },
        );
    }
    let cpu = CpuMeter::start(&lab.nats_pids, Some(server.0.id()));
    open_loop(&base, Transport::Channel, channel_max, workers, run, cpu).await;
}

/// talk-server on `lab`'s server, ready.
async fn talk_server(lab: &Lab) -> (Guard, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Guard(
        Command::new(env!("CARGO_BIN_EXE_talk-server"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--nats-url", &lab.url])
            .args(["--replicas", "3"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    (server, base)
}

/// talk-load (open loop, `workers` producers over `transport`) at half of `max`: prints
/// its p50/p99, and the CPU it took (`cpu` started just before): an open loop whose
/// processes want both cores queues, and its latency says so.
async fn open_loop(
    base: &str,
    transport: Transport,
    max: f64,
    workers: usize,
    run: Duration,
    cpu: CpuMeter,
) {
    let half = (max / 2.0).max(1.0);
    let mut config = LoadConfig::for_targets(vec![base.to_owned()]);
    config.profile = Profile::Steady;
    config.transport = transport;
    config.rate = half;
    config.connections = env_or("TALK_BENCH_OPEN_PRODUCERS", workers).max(1);
    config.duration = run;
    config.sli_window = run + Duration::from_secs(5);
    config.sli_listen = "127.0.0.1:0".into();
    config.report = "-".into();
    if let Ok(v) = std::env::var("TALK_BENCH_CHECK_INTERVAL") {
        config.check_interval = talk::duration::parse_duration(&v).unwrap();
    }
    let slice = std::env::var("TALK_BENCH_TIMELINE").unwrap_or_else(|_| "500ms".into());
    let (bound_tx, bound) = tokio::sync::oneshot::channel();
    let timeline = tokio::spawn(timeline(bound, slice.clone(), run));
    let publishes_before = publish_buckets(base).await;
    let started = Instant::now();
    let producers = config.connections;
    let report = talk::load::run(config, std::future::pending(), |addr| {
        let _ = bound_tx.send(addr);
    })
    .await
    .unwrap();
    let slices = timeline.await.unwrap_or_default();
    let s = report.sli;
    let transport = format!("{transport:?}").to_lowercase();
    println!(
        "open loop ({transport}) at {half:.0} msg/s (half max): p50 {:.2} ms, p99 {:.2} ms  (target p99 < 50 ms: {}); acked {}, failed {}, lost {}",
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
    println!(
        "open loop ({transport}) {producers} producers; p99 ms per {slice}: {}",
        slices.join(" ")
    );
    // talk-server's own view of the same sends (publish to JetStream ack): when it is fast
    // while talk-load's p99 is not, the time goes outside the store.
    let publishes = publish_buckets(base).await;
    let delta: Vec<(f64, u64)> = publishes
        .iter()
        .zip(&publishes_before)
        .map(|((le, n), (_, before))| (*le, n.saturating_sub(*before)))
        .collect();
    let total = delta.last().map_or(0, |(_, n)| *n).max(1);
    let over = |ms: f64| {
        let within = delta
            .iter()
            .filter(|(le, _)| *le * 1e3 <= ms)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0);
        (total - within) as f64 / total as f64 * 100.0
    };
    let p99_bucket = delta
        .iter()
        .find(|(_, n)| *n as f64 >= 0.99 * total as f64)
        .map_or(f64::INFINITY, |(le, _)| le * 1e3);
    println!(
        "open loop ({transport}) talk-server publish -> ack: p99 <= {p99_bucket} ms (bucket); over 16 ms {:.2} %, over 32 ms {:.2} %, over 64 ms {:.2} % of {total}",
        over(16.0),
        over(32.0),
        over(64.0),
    );
    // The run plus its drain: what talk-load read back is part of the cost.
    let took = started.elapsed();
    println!(
        "open loop ({transport}) CPU over {:.1} s: {}; {:.2} of 2 cores busy",
        took.as_secs_f64(),
        cpu.per_message(report.check.total.acked as f64 / took.as_secs_f64(), took),
        cpu.cores(took),
    );
}

/// talk-server's `talk_server_publish_seconds` histogram: cumulative (le seconds, count),
/// ascending, `+Inf` last.
async fn publish_buckets(base: &str) -> Vec<(f64, u64)> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut out: Vec<(f64, u64)> = text
        .lines()
        .filter_map(|line| line.strip_prefix("talk_server_publish_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// talk-load's p99 over each `slice` of a `run`-long open loop, read from its
/// `/sli?window=<slice>` once it is bound.
async fn timeline(
    bound: tokio::sync::oneshot::Receiver<std::net::SocketAddr>,
    slice: String,
    run: Duration,
) -> Vec<String> {
    let Ok(addr) = bound.await else {
        return Vec::new();
    };
    if slice == "off" {
        return Vec::new();
    }
    let every = talk::duration::parse_duration(&slice).unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/sli?window={slice}");
    let mut out = Vec::new();
    let start = tokio::time::Instant::now();
    let mut next = start + every;
    while next <= start + run {
        tokio::time::sleep_until(next).await;
        next += every;
        let p99 = match http.get(&url).send().await {
            Ok(reply) => match reply.json::<talk::load::sli::SliSnapshot>().await {
                Ok(s) => format!("{:.0}", s.p99_latency_ms),
                Err(_) => "?".to_owned(),
            },
            Err(_) => "?".to_owned(),
        };
        out.push(p99);
    }
    out
}

/// `workers` sends kept in flight over `channels` send channels until `run` is over:
/// returns the rate of acknowledged messages and their (p50, p99) latency in ms.
async fn channel_closed_loop(
    base: &str,
    channels: usize,
    workers: usize,
    run: Duration,
) -> (f64, (f64, f64)) {
    let start = Instant::now();
    let until = start + run;
    let tasks: Vec<_> = (0..channels)
        .map(|c| {
            let base = base.to_owned();
            // The workers' messages in flight, spread over the channels.
            let depth = workers / channels + usize::from(c < workers % channels);
            tokio::spawn(async move {
                let conn = ChannelConn::connect(&base, Duration::from_secs(5))
                    .await
                    .unwrap();
                let room = format!("bench-{}", c % 8);
                let producer = format!("bench-channel-{c}");
                let mut counter = 0u64;
                let mut latencies = Vec::new();
                let mut in_flight = FuturesUnordered::new();
                let send = |counter: u64| {
                    let conn = conn.clone();
                    let frame = ChannelSend {
                        room: room.clone(),
                        producer: producer.clone(),
                        counter,
                        body: "x".repeat(64),
                        sent_at_ms: None,
                    };
                    async move {
                        let sent = Instant::now();
                        let acked = match conn.send(&frame).await {
                            Ok(reply) => matches!(reply.await, Ok(Ok(_))),
                            Err(_) => false,
                        };
                        (acked, sent.elapsed())
                    }
                };
                for _ in 0..depth {
                    counter += 1;
                    in_flight.push(send(counter));
                }
                while let Some((acked, latency)) = in_flight.next().await {
                    if acked {
                        latencies.push(latency.as_secs_f64() * 1e3);
                    }
                    if Instant::now() < until {
                        counter += 1;
                        in_flight.push(send(counter));
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let rate = latencies.len() as f64 / start.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let p = |q: f64| talk::load::sli::percentile(&latencies, q);
    (rate, (p(0.5), p(0.99)))
}

/// Runs `workers` closed-loop clients until `run` is over and returns the rate of
/// acknowledged messages. `worker(w, until)` is client `w`: it sends until `until` and
/// returns how many of its messages were acknowledged.
async fn closed_loop<F, Fut>(workers: usize, run: Duration, worker: F) -> f64
where
    F: Fn(usize, Instant) -> Fut,
    Fut: Future<Output = u64> + Send + 'static,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| tokio::spawn(worker(w, start + run)))
        .collect();
    let mut acked = 0;
    for t in tasks {
        acked += t.await.unwrap();
    }
    acked as f64 / start.elapsed().as_secs_f64()
}

/// One raw phase on a new cluster: prints its rate and CPU per message, returns the rate.
async fn raw_phase(
    name: &str,
    sync: SyncPolicy,
    via_follower: bool,
    workers: usize,
    run: Duration,
    msg_id: bool,
) -> f64 {
    let lab = Lab::start(sync, via_follower).await;
    let cpu = CpuMeter::start(&lab.nats_pids, None);
    let rate = raw_jetstream(lab.store.client(), workers, run, msg_id).await;
    println!(
        "{name:<27}  {rate:>10.0} msg/s   {}",
        cpu.per_message(rate, run)
    );
    rate
}

async fn raw_jetstream(
    client: &async_nats::Client,
    workers: usize,
    run: Duration,
    msg_id: bool,
) -> f64 {
    let js = async_nats::jetstream::new(client.clone());
    closed_loop(workers, run, |w, until| {
        let js = js.clone();
        async move {
            // Same payload shape and size as talk stores.
            let payload = serde_json::to_vec(&serde_json::json!({
                "room": "bench", "producer": format!("raw-{w}-{msg_id}"), "counter": 0,
                "body": "x".repeat(64), "receivedAtMs": 0
            }))
            .unwrap();
            let (mut counter, mut acked) = (0u64, 0);
            while Instant::now() < until {
                counter += 1;
                let subject = format!("talk.rooms.raw-{}", w % 8);
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
                    acked += 1;
                }
            }
            acked
        }
    })
    .await
}

/// talk-server sends, `batch` messages per request (1: the single-send endpoint), from
/// talk-load's own client, one per worker as talk-load has one per producer.
async fn talk_closed_loop(base: &str, workers: usize, batch: usize, run: Duration) -> f64 {
    closed_loop(workers, run, |w, until| {
        let base = base.to_owned();
        async move {
            let http = TalkClient::new(Duration::from_secs(5)).unwrap();
            let room = format!("bench-{}", w % 8);
            let (mut counter, mut acked) = (0, 0);
            let timeout = Duration::from_secs(5);
            while Instant::now() < until {
                let mut messages: Vec<SendRequest> = (0..batch)
                    .map(|_| {
                        counter += 1;
                        SendRequest {
                            producer: format!("bench-{batch}-{w}"),
                            counter,
                            body: "x".repeat(64),
                            sent_at_ms: None,
                        }
                    })
                    .collect();
                acked += if batch == 1 {
                    let req = messages.pop().unwrap();
                    let sent = http.send_within(&base, &room, &req, timeout).await;
                    u64::from(sent.is_ok())
                } else {
                    let req = SendBatchRequest { messages };
                    match http.send_batch_within(&base, &room, &req, timeout).await {
                        Ok(reply) => (reply.results.len() - reply.failed) as u64,
                        Err(_) => 0,
                    }
                };
            }
            acked
        }
    })
    .await
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

/// A new three-server cluster with talk's stream, and a connection to the server that
/// both sides of a phase use: the stream's leader, as talk-server has when it shares its
/// zone (TALK_BENCH_VIA_FOLLOWER=1: a follower, through which every publish and ack is
/// routed).
struct Lab {
    store: MessageStore,
    url: String,
    nats_pids: Vec<u32>,
    _cluster: LocalCluster,
    _dir: tempfile::TempDir,
}

impl Lab {
    async fn start(sync: SyncPolicy, via_follower: bool) -> Self {
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
        let leader = connect_store(&urls[0])
            .await
            .stream_leader()
            .await
            .unwrap()
            .unwrap();
        let leader_index = cluster.index_of(&leader).unwrap();
        let server = if via_follower {
            (leader_index + 1) % urls.len()
        } else {
            leader_index
        };
        let url = urls[server].clone();
        println!(
            "  (new cluster; this phase connects to {}, stream TALK is led by {leader})",
            cluster.specs()[server].name
        );
        Self {
            store: connect_store(&url).await,
            url,
            nats_pids: cluster.pids(),
            _cluster: cluster,
            _dir: dir,
        }
    }
}

/// Connects to `url` and creates talk's stream (the JetStream meta leader may still be
/// electing right after start).
async fn connect_store(url: &str) -> MessageStore {
    let store = MessageStore::connect(
        &[url.to_owned()],
        StreamSpec::default(),
        Duration::from_secs(5),
        true,
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = store.ensure_stream().await {
        assert!(Instant::now() < deadline, "creating stream TALK: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    store
}

/// CPU time that the nats-servers, talk-server and this process (the client) spend
/// during a phase, per message: where a phase's two cores go.
struct CpuMeter {
    nats: Vec<u32>,
    server: Option<u32>,
    start: [f64; 3],
}

impl CpuMeter {
    fn start(nats: &[u32], server: Option<u32>) -> Self {
        let mut meter = Self {
            nats: nats.to_vec(),
            server,
            start: [0.0; 3],
        };
        meter.start = meter.now();
        meter
    }

    fn now(&self) -> [f64; 3] {
        [
            self.nats.iter().map(|p| cpu_seconds(&p.to_string())).sum(),
            self.server.map_or(0.0, |p| cpu_seconds(&p.to_string())),
            cpu_seconds("self"),
        ]
    }

    /// Cores the measured processes kept busy on average over `run`.
    fn cores(&self, run: Duration) -> f64 {
        let now = self.now();
        let used: f64 = now.iter().zip(self.start).map(|(n, s)| n - s).sum();
        used / run.as_secs_f64().max(f64::EPSILON)
    }

    fn per_message(&self, rate: f64, run: Duration) -> String {
        let now = self.now();
        let messages = (rate * run.as_secs_f64()).max(1.0);
        let us = |i: usize| (now[i] - self.start[i]) / messages * 1e6;
        let server = match self.server {
            Some(_) => format!(", talk-server {:.0}", us(1)),
            None => String::new(),
        };
        format!("CPU µs/msg: nats {:.0}{server}, client {:.0}", us(0), us(2))
    }
}

/// User plus system CPU seconds of /proc/<pid>, 0 when it cannot be read.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" that ends the command name: utime and stime are the 12th and
    // 13th, in USER_HZ (100 per second on Linux).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
