//! Orchestrates a talk-load run: SLI endpoint, generator, reader, drain, report.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::watch;

use super::checker::CheckReport;
use super::client::TalkClient;
use super::config::{LoadConfig, Profile};
use super::error::LoadError;
use super::shared::Shared;
use super::sli::SliSnapshot;
use super::targets::Targets;
use super::verify::Verifier;
use super::{drain, generator, reader};

/// The final JSON report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadReport {
    pub run_id: String,
    pub profile: Profile,
    pub targets: Vec<String>,
    pub duration_seconds: f64,
    /// False when some room could not be drained; `lost` is then unreliable.
    pub complete: bool,
    pub drain_errors: Vec<String>,
    /// Live SLIs at the end of sending.
    pub sli: SliSnapshot,
    #[serde(flatten)]
    pub check: CheckReport,
}

impl LoadReport {
    pub fn passed(&self) -> bool {
        self.complete && self.check.total.is_clean()
    }
}

/// Runs the load until the configured duration passes or `shutdown`
/// completes, then drains and checks. `on_sli_bound` learns the SLI address.
pub async fn run(
    config: LoadConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_sli_bound: impl FnOnce(std::net::SocketAddr),
) -> Result<LoadReport, LoadError> {
    config.validate().map_err(LoadError::Config)?;
    let targets = Arc::new(Targets::parse(&config.targets).map_err(LoadError::Config)?);
    targets.refresh().await;
    let run_id = config.run_id.clone().unwrap_or_else(default_run_id);
    let shared = Arc::new(Shared::new(config.sli_window));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (reader_stop_tx, reader_stop_rx) = watch::channel(false);
    let reader_client = TalkClient::new(config.request_timeout)?;
    let rooms: Vec<Arc<str>> = config.room_names().into_iter().map(Arc::from).collect();

    if let Some(addr) =
        super::config::parse_listen(&config.sli_listen).map_err(LoadError::Config)?
    {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| LoadError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| LoadError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        tracing::info!(%bound, "SLI endpoint listening");
        on_sli_bound(bound);
        let verifier = Arc::new(Verifier {
            shared: shared.clone(),
            client: reader_client.clone(),
            targets: targets.clone(),
            rooms: rooms.clone(),
            timeout: config.drain_timeout,
            busy: tokio::sync::Mutex::new(()),
        });
        let app = sli_router(shared.clone()).merge(verify_router(verifier));
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "SLI endpoint failed");
            }
        });
    }
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    tokio::spawn(targets.clone().keep_fresh(reader_stop_rx.clone()));
    let mut readers = Vec::new();
    for room in &rooms {
        readers.push(tokio::spawn(reader::follow_room(
            reader_client.clone(),
            targets.clone(),
            room.clone(),
            config.check_interval,
            shared.clone(),
            reader_stop_rx.clone(),
        )));
    }
    let checks = tokio::spawn(reader::publish_checks(
        shared.clone(),
        config.check_interval,
        config.loss_grace,
        reader_stop_rx,
    ));

    tracing::info!(%run_id, profile = ?config.profile, rate = config.rate, "sending");
    generator::run_generator(&config, &run_id, targets.clone(), shared.clone(), stop_rx).await?;
    let duration_seconds = shared.start.elapsed().as_secs_f64();
    let sli = shared.sli.snapshot(Instant::now());
    let _ = reader_stop_tx.send(true);
    let mut positions = Vec::with_capacity(readers.len());
    for r in readers {
        positions.push(r.await.unwrap_or(0));
    }
    let _ = checks.await;

    let mut drain_errors = Vec::new();
    if !config.no_drain {
        let deadline = Instant::now() + config.drain_timeout;
        // The live pass reads the rest of every room, so the order check covers the whole
        // run; then the final pass reads every room from its start.
        tracing::info!("reading the rest of every room");
        for (room, pos) in rooms.iter().zip(positions) {
            let result = drain::drain_room(&reader_client, &targets, room, pos, deadline, |m| {
                let mut ledger = shared.ledger();
                ledger.read(room, &m.payload.producer, m.payload.counter, m.seq);
                ledger.advance(room, m.seq);
            })
            .await;
            if let Err(e) = result {
                drain_errors.push(e);
            }
        }
        tracing::info!("draining every room from the start");
        for room in &rooms {
            let result = drain::drain_room(&reader_client, &targets, room, 0, deadline, |m| {
                shared
                    .ledger()
                    .final_read(room, &m.payload.producer, m.payload.counter);
            })
            .await;
            if let Err(e) = result {
                drain_errors.push(e);
            }
        }
    }
    let check = if config.no_drain {
        CheckReport::default()
    } else {
        shared.ledger().report()
    };
    Ok(LoadReport {
        run_id,
        profile: config.profile,
        targets: config.targets.clone(),
        duration_seconds,
        complete: !config.no_drain && drain_errors.is_empty(),
        drain_errors,
        sli,
        check,
    })
}

fn default_run_id() -> String {
    format!("r{}-{}", crate::wire::now_ms(), std::process::id())
}

fn sli_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/sli", get(sli))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(shared)
}

fn verify_router(verifier: Arc<Verifier>) -> Router {
    Router::new()
        .route("/verify", get(verify))
        .with_state(verifier)
}

/// A verification read of every room (see [`Verifier`]); 503 when the stream could not be
/// read to its end in time.
async fn verify(State(verifier): State<Arc<Verifier>>) -> axum::response::Response {
    match verifier.verify().await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("verification read incomplete: {e}\n"),
        )
            .into_response(),
    }
}

#[derive(Debug, serde::Deserialize)]
struct SliQuery {
    /// A window shorter than `--sli-window`, e.g. `1s`: a probe that samples every second
    /// reads each second on its own instead of a sliding average over the longer window.
    window: Option<String>,
    /// How long a send may stay unanswered before it counts as not delivered (default: the
    /// window). A probe reading short windows sets it to what "not delivered" means to it,
    /// so that a send a failover merely delays is slow, not lost.
    deadline: Option<String>,
}

/// The longest `deadline` a query may ask for.
const MAX_DEADLINE: Duration = Duration::from_secs(3600);

async fn sli(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<SliQuery>,
) -> axum::response::Response {
    let now = Instant::now();
    let retention = shared.sli.retention();
    let window = match duration_param(
        "window",
        query.window.as_deref(),
        retention,
        retention,
        &format!("talk-load's --sli-window ({})", seconds_text(retention)),
    ) {
        Ok(window) => window,
        Err(message) => return bad_query(message),
    };
    let deadline = match duration_param(
        "deadline",
        query.deadline.as_deref(),
        window,
        MAX_DEADLINE,
        &seconds_text(MAX_DEADLINE),
    ) {
        Ok(deadline) => deadline,
        Err(message) => return bad_query(message),
    };
    axum::Json(shared.sli.snapshot_over(now, window, deadline)).into_response()
}

/// A duration query parameter `name`: `default` when absent, otherwise above zero and at
/// most `max` (described as `max_text` in the error, which is the 400 answer's text).
fn duration_param(
    name: &str,
    raw: Option<&str>,
    default: Duration,
    max: Duration,
    max_text: &str,
) -> Result<Duration, String> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    match crate::duration::parse_duration(raw) {
        Ok(d) if !d.is_zero() && d <= max => Ok(d),
        Ok(_) => Err(format!(
            "{name}={raw}: must be above zero and at most {max_text}"
        )),
        Err(e) => Err(format!("{name}={raw}: {e}")),
    }
}

fn bad_query(message: String) -> axum::response::Response {
    (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
}

fn seconds_text(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

async fn metrics(State(shared): State<Arc<Shared>>) -> axum::response::Response {
    let s = shared.sli.snapshot(Instant::now());
    let mut registry = Registry::with_prefix("talk_load");
    let gauges: [(&str, &str, f64); 9] = [
        (
            "delivery_success_ratio",
            "Acked / (ended + overdue) sends over the window",
            s.delivery_success_ratio,
        ),
        (
            "p50_latency_ms",
            "Median send-to-ack latency over the window",
            s.p50_latency_ms,
        ),
        (
            "p99_latency_ms",
            "p99 send-to-ack latency over the window",
            s.p99_latency_ms,
        ),
        (
            "lost_messages",
            "Acked messages missing behind the reader",
            s.lost_messages as f64,
        ),
        (
            "duplicated_messages",
            "Messages read more than once",
            s.duplicated_messages as f64,
        ),
        ("sent", "Sends attempted", s.sent as f64),
        ("acked", "Sends acknowledged", s.acked as f64),
        ("failed", "Sends failed or timed out", s.failed as f64),
        ("window_seconds", "SLI window length", s.window_seconds),
    ];
    for (name, help, value) in gauges {
        let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        g.set(value);
        registry.register(name, help, g);
    }
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &registry) {
        Ok(()) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        )
            .into_response(),
        Err(e) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}"),
        )
            .into_response(),
    }
}

/// Writes `report` as pretty JSON to `path` ("-" = stdout).
pub fn write_report(report: &LoadReport, path: &str) -> Result<(), LoadError> {
    let text = serde_json::to_string_pretty(report)?;
    if path == "-" {
        println!("{text}");
        Ok(())
    } else {
        std::fs::write(path, text + "\n").map_err(|source| LoadError::Report {
            path: path.to_owned(),
            source,
        })
    }
}
