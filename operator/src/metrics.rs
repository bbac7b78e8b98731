//! Prometheus metrics, and the HTTP server for `/metrics` and `/healthz`.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::Utc;
use firedrill_core::api::ExperimentStatus;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::Error;
use crate::inventory::{Figures, Inventory, PHASES, STATES};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabels {
    pub category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

/// How many completed Experiments' UIDs are remembered so each is counted once: a
/// reconciliation from a cache that has not seen the verdict's status write yet (an
/// Injection's deletion wakes the Experiment within milliseconds) steps to the same verdict
/// again. Seconds of completions are enough; a thousand experiments' worth is plenty.
const REMEMBERED_COMPLETIONS: usize = 4096;

/// The UIDs of the Experiments whose outcome was counted, oldest first.
#[derive(Debug, Default)]
struct Completions {
    order: VecDeque<String>,
    seen: HashSet<String>,
}

impl Completions {
    /// Whether `uid` is new (and remembers it).
    fn first(&mut self, uid: &str) -> bool {
        if !self.seen.insert(uid.to_owned()) {
            return false;
        }
        self.order.push_back(uid.to_owned());
        if self.order.len() > REMEMBERED_COMPLETIONS
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        true
    }
}

/// The gauges counted at scrape time from the [`Inventory`] (nothing until it is set).
#[derive(Debug, Default)]
struct InventoryGauges {
    inventory: Arc<RwLock<Option<Inventory>>>,
}

/// Encodes one gauge family: `name{label=value} gauge` per entry.
fn gauge_family<L: EncodeLabelSet, N: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    entries: impl IntoIterator<Item = (L, N)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in entries {
        ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Encodes `figures` as the inventory's gauges.
fn encode_figures(
    figures: &Figures,
    mut encoder: DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    gauge_family(
        &mut encoder,
        "experiments",
        "Experiments by phase",
        PHASES.iter().zip(figures.experiments).map(|(p, n)| {
            let phase = format!("{p:?}");
            (PhaseLabels { phase }, n)
        }),
    )?;
    gauge_family(
        &mut encoder,
        "injections",
        "Injections by state (Applied: faults on the system)",
        STATES.iter().zip(figures.injections).map(|(s, n)| {
            let state = format!("{s:?}");
            (StateLabels { state }, n)
        }),
    )?;
    let past = ConstGauge::new(figures.past_expiry_seconds);
    past.encode(encoder.encode_descriptor(
        "injection_past_expiry_seconds",
        "Seconds the oldest Applied Injection is past its spec.expiresAt (0 when none is)",
        None,
        MetricType::Gauge,
    )?)?;
    gauge_family(
        &mut encoder,
        "injection_pending_seconds",
        "Per node: age of the oldest Injection its agent has not reported on (absent when none)",
        figures
            .pending_seconds
            .iter()
            .map(|(node, s)| (NodeLabels { node: node.clone() }, *s)),
    )
}

impl Collector for InventoryGauges {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let figures = match self.inventory.read() {
            Ok(inventory) => inventory.as_ref().map(|i| i.figures(Utc::now())),
            Err(_) => None,
        };
        match figures {
            Some(figures) => encode_figures(&figures, encoder),
            None => Ok(()),
        }
    }
}

/// The operator's metrics, registered under the `firedrill_operator` prefix.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub failures: Family<CategoryLabels, Counter>,
    pub duration: Histogram,
    pub verdicts: Family<VerdictLabels, Counter>,
    pub time_to_impact: Histogram,
    pub time_to_recover: Histogram,
    pub messages_lost: Counter,
    pub injections_created: Counter,
    pub echoes_skipped: Counter,
    pub status_writes_held_back: Counter,
    pub stale_copies_skipped: Counter,
    pub leader: Gauge,
    completions: Mutex<Completions>,
    inventory: Arc<RwLock<Option<Inventory>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("firedrill_operator");
        let reconciles = Counter::default();
        let failures = Family::<CategoryLabels, Counter>::default();
        let duration = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]);
        let verdicts = Family::<VerdictLabels, Counter>::default();
        let time_to_impact =
            Histogram::new([1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0]);
        let time_to_recover = Histogram::new([
            1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
        ]);
        let messages_lost = Counter::default();
        let inventory = InventoryGauges::default();
        let injections_created = Counter::default();
        let echoes_skipped = Counter::default();
        let status_writes_held_back = Counter::default();
        let stale_copies_skipped = Counter::default();
        let leader = Gauge::default();
        registry.register("reconciles", "Reconciliations run", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciliations that failed, by error category",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long a reconciliation took",
            duration.clone(),
        );
        registry.register(
            "experiments_completed",
            "Experiments that reached a verdict, by verdict",
            verdicts.clone(),
        );
        registry.register(
            "time_to_impact_seconds",
            "Per completed Experiment: fault effective to the first sample outside tolerance",
            time_to_impact.clone(),
        );
        registry.register(
            "time_to_recover_seconds",
            "Per completed Experiment: revert to every SLI back within tolerance (the RTO)",
            time_to_recover.clone(),
        );
        registry.register(
            "messages_lost",
            "Acknowledged messages the completed Experiments lost (the RPO; must stay 0)",
            messages_lost.clone(),
        );
        registry.register(
            "injections_created",
            "Injections created for node agents",
            injections_created.clone(),
        );
        registry.register(
            "reconcile_echoes_skipped",
            "Reconciliations that found only their own status write come back (counted in \
             reconciles too) and called no API",
            echoes_skipped.clone(),
        );
        registry.register(
            "status_writes_held_back",
            "Experiment status changes of routine sampling (passing samples) not written at \
             once; the next change beyond sampling, or 30 s, writes them",
            status_writes_held_back.clone(),
        );
        registry.register(
            "reconcile_stale_copies_skipped",
            "Reconciliations that met a copy of the Experiment older than their last status \
             write and waited for the watch instead (counted in reconciles too)",
            stale_copies_skipped.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        let shared = inventory.inventory.clone();
        registry.register_collector(Box::new(inventory));
        Self {
            registry,
            reconciles,
            failures,
            duration,
            verdicts,
            time_to_impact,
            time_to_recover,
            messages_lost,
            injections_created,
            echoes_skipped,
            status_writes_held_back,
            stale_copies_skipped,
            leader,
            completions: Mutex::default(),
            inventory: shared,
        }
    }
}

/// Measures one reconciliation from creation to drop.
#[derive(Debug)]
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .observe(self.start.elapsed().as_secs_f64());
    }
}

impl Metrics {
    /// Counts a reconciliation and times it until the returned guard is dropped.
    pub fn reconcile(&self) -> ReconcileTimer<'_> {
        self.reconciles.inc();
        ReconcileTimer {
            metrics: self,
            start: Instant::now(),
        }
    }

    pub fn failure(&self, error: &Error) {
        self.failures
            .get_or_create(&CategoryLabels {
                category: error.category().as_str().to_owned(),
            })
            .inc();
    }

    /// Counts an Experiment that reached its verdict: the verdict, and the figures the
    /// engine measured (time to impact and to recover, acknowledged messages lost). Once per
    /// Experiment `uid`; a status without a verdict counts nothing. Returns whether it counted.
    pub fn completed(&self, uid: &str, status: &ExperimentStatus) -> bool {
        let Some(verdict) = status.verdict else {
            return false;
        };
        let first = self
            .completions
            .lock()
            .map(|mut c| c.first(uid))
            .unwrap_or(true);
        if !first {
            return false;
        }
        self.verdicts
            .get_or_create(&VerdictLabels {
                verdict: format!("{verdict:?}"),
            })
            .inc();
        if let Some(s) = status.time_to_impact_seconds {
            self.time_to_impact.observe(s);
        }
        if let Some(s) = status.time_to_recover_seconds {
            self.time_to_recover.observe(s);
        }
        if let Some(lost) = status.messages_lost {
            self.messages_lost.inc_by(lost);
        }
        true
    }

    /// Counts the experiment and injection gauges from `inventory` from now on.
    pub fn watch(&self, inventory: Inventory) {
        if let Ok(mut slot) = self.inventory.write() {
            *slot = Some(inventory);
        }
    }

    /// The stores the gauges count from, once both have listed (`None` before).
    pub fn inventory(&self) -> Option<Inventory> {
        self.inventory.read().ok()?.clone()
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

async fn metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

/// The HTTP routes: `/metrics` and `/healthz`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(self::metrics))
        .route("/healthz", get(healthz))
        .with_state(metrics)
}

/// Serves [`router`] on `addr` until the task is dropped.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(metrics)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_category_and_reconciles_timed() {
        let metrics = Metrics::default();
        {
            let _timer = metrics.reconcile();
        }
        metrics.failure(&Error::Lease("x".into()));
        metrics.failure(&Error::MissingField("uid"));
        metrics.leader.set(1);
        let text = metrics.render();
        assert!(
            text.contains("firedrill_operator_reconciles_total 1"),
            "{text}"
        );
        assert!(
            text.contains("firedrill_operator_reconcile_failures_total{category=\"lease\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("firedrill_operator_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("firedrill_operator_leader 1"), "{text}");
    }

    /// The value of the sample `series` (name and labels as rendered) in `text`.
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn a_completed_experiment_is_counted_once_with_the_figures_the_engine_measured() {
        use firedrill_core::api::Verdict;
        let metrics = Metrics::default();
        let status = ExperimentStatus {
            verdict: Some(Verdict::Failed),
            time_to_impact_seconds: Some(3.5),
            time_to_recover_seconds: Some(42.0),
            messages_lost: Some(5),
            ..Default::default()
        };
        assert!(metrics.completed("uid-1", &status));
        // A reconciliation from a stale cache steps to the same verdict again.
        assert!(!metrics.completed("uid-1", &status));
        let passed = ExperimentStatus {
            verdict: Some(Verdict::Passed),
            time_to_impact_seconds: None,
            time_to_recover_seconds: Some(8.0),
            messages_lost: Some(0),
            ..Default::default()
        };
        assert!(metrics.completed("uid-2", &passed));
        assert!(!metrics.completed("uid-3", &ExperimentStatus::default()));
        let text = metrics.render();
        let completed = "firedrill_operator_experiments_completed_total";
        assert_eq!(
            value(&text, &format!("{completed}{{verdict=\"Failed\"}}")),
            Some(1.0)
        );
        assert_eq!(
            value(&text, &format!("{completed}{{verdict=\"Passed\"}}")),
            Some(1.0)
        );
        let impact = "firedrill_operator_time_to_impact_seconds";
        assert_eq!(
            value(&text, &format!("{impact}_count")),
            Some(1.0),
            "{text}"
        );
        assert_eq!(value(&text, &format!("{impact}_sum")), Some(3.5));
        assert_eq!(
            value(&text, &format!("{impact}_bucket{{le=\"5.0\"}}")),
            Some(1.0),
            "{text}"
        );
        let recover = "firedrill_operator_time_to_recover_seconds";
        assert_eq!(value(&text, &format!("{recover}_count")), Some(2.0));
        assert_eq!(value(&text, &format!("{recover}_sum")), Some(50.0));
        assert_eq!(
            value(&text, "firedrill_operator_messages_lost_total"),
            Some(5.0),
            "{text}"
        );
    }

    #[test]
    fn each_completion_is_remembered_until_thousands_more_came() {
        let mut completions = Completions::default();
        assert!(completions.first("a"));
        assert!(!completions.first("a"));
        for i in 0..REMEMBERED_COMPLETIONS {
            assert!(completions.first(&i.to_string()));
        }
        assert_eq!(completions.order.len(), REMEMBERED_COMPLETIONS);
        assert_eq!(completions.seen.len(), REMEMBERED_COMPLETIONS);
        assert!(completions.first("a"), "forgotten, the oldest");
    }

    #[test]
    fn the_inventory_gauges_count_what_the_stores_hold_and_a_deleted_object_stops_counting() {
        use crate::inventory::tests::{experiment, injection};
        use firedrill_core::api::{InjectionState, Phase};
        use kube::runtime::reflector;
        use kube::runtime::watcher::Event;

        let metrics = Metrics::default();
        let text = metrics.render();
        assert!(
            !text.contains("firedrill_operator_experiments{"),
            "nothing before the stores have listed: {text}"
        );
        let (experiments, mut experiment_writer) = reflector::store();
        let (injections, mut injection_writer) = reflector::store();
        let holding = experiment("a", Some(Phase::Holding));
        experiment_writer.apply_watcher_event(&Event::Apply((*holding).clone()));
        experiment_writer.apply_watcher_event(&Event::Apply(
            (*experiment("b", Some(Phase::Completed))).clone(),
        ));
        let late = injection("late", "n1", Some(InjectionState::Applied), 0, 10, false);
        let waiting = injection("waiting", "n2", None, 20, 1_000_000_000, false);
        injection_writer.apply_watcher_event(&Event::Apply((*late).clone()));
        injection_writer.apply_watcher_event(&Event::Apply((*waiting).clone()));
        metrics.watch(Inventory {
            experiments,
            injections,
        });

        let past = (Utc::now() - crate::testing::at(10)).as_seconds_f64();
        let text = metrics.render();
        let phase = |p: &str| format!("firedrill_operator_experiments{{phase=\"{p}\"}}");
        assert_eq!(value(&text, &phase("Holding")), Some(1.0), "{text}");
        assert_eq!(value(&text, &phase("Completed")), Some(1.0));
        assert_eq!(value(&text, &phase("Reverting")), Some(0.0));
        let state = |s: &str| format!("firedrill_operator_injections{{state=\"{s}\"}}");
        assert_eq!(value(&text, &state("Applied")), Some(1.0), "{text}");
        assert_eq!(value(&text, &state("Pending")), Some(1.0));
        assert_eq!(value(&text, &state("Refused")), Some(0.0));
        let expiry = "firedrill_operator_injection_past_expiry_seconds";
        let seconds = value(&text, expiry).unwrap_or_else(|| panic!("{text}"));
        assert!(
            (past..past + 60.0).contains(&seconds),
            "{seconds} vs {past}"
        );
        let pending = "firedrill_operator_injection_pending_seconds{node=\"n2\"}";
        let waited = value(&text, pending).unwrap_or_else(|| panic!("{text}"));
        assert!(waited >= past - 10.0, "{waited}");
        assert!(!text.contains("node=\"n1\""), "{text}");

        experiment_writer.apply_watcher_event(&Event::Delete((*holding).clone()));
        injection_writer.apply_watcher_event(&Event::Delete((*late).clone()));
        injection_writer.apply_watcher_event(&Event::Delete((*waiting).clone()));
        let text = metrics.render();
        assert_eq!(value(&text, &phase("Holding")), Some(0.0), "{text}");
        assert_eq!(value(&text, &phase("Completed")), Some(1.0));
        assert_eq!(value(&text, &state("Applied")), Some(0.0));
        assert_eq!(value(&text, expiry), Some(0.0), "{text}");
        assert!(
            !text.contains("firedrill_operator_injection_pending_seconds{"),
            "{text}"
        );
    }

    /// The `firedrill_operator_*` names in `text` (a dashboard's JSON, a rules file).
    fn operator_names(text: &str) -> std::collections::BTreeSet<&str> {
        let prefix = "firedrill_operator_";
        text.match_indices(prefix)
            .map(|(at, _)| {
                let rest = &text[at..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .collect()
    }

    #[test]
    fn every_operator_metric_the_dashboard_and_alerts_name_is_exported() {
        use crate::inventory::tests::{experiment, injection};
        use kube::runtime::reflector;
        use kube::runtime::watcher::Event;

        // Every family with a sample: a completion, a failure, an Injection waiting.
        let metrics = Metrics::default();
        let status = ExperimentStatus {
            verdict: Some(firedrill_core::api::Verdict::Passed),
            ..Default::default()
        };
        metrics.completed("uid", &status);
        metrics.failure(&Error::MissingField("uid"));
        let (experiments, mut experiment_writer) = reflector::store();
        let (injections, mut injection_writer) = reflector::store();
        experiment_writer.apply_watcher_event(&Event::Apply((*experiment("a", None)).clone()));
        let waiting = injection("w", "n1", None, 0, 10, false);
        injection_writer.apply_watcher_event(&Event::Apply((*waiting).clone()));
        metrics.watch(Inventory {
            experiments,
            injections,
        });
        let text = metrics.render();
        let exported: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();

        let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/firedrill");
        for file in ["dashboards/firedrill.json", "rules/firedrill.rules.yaml"] {
            let path = format!("{chart}/{file}");
            let used = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let names = operator_names(&used);
            assert!(names.len() >= 3, "{file}: {names:?}");
            let missing: Vec<_> = names.difference(&exported).collect();
            assert!(
                missing.is_empty(),
                "{file} names {missing:?}, not in:\n{text}"
            );
        }
    }

    #[tokio::test]
    async fn the_http_server_answers_metrics_and_healthz() {
        let metrics = Arc::new(Metrics::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(axum::serve(listener, router(metrics.clone())).into_future());
        let get = |path: &'static str| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.expect("write");
            let mut response = String::new();
            stream.read_to_string(&mut response).await.expect("read");
            response
        };
        let health = get("/healthz").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        let text = get("/metrics").await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            text.contains("firedrill_operator_reconciles_total"),
            "{text}"
        );
        server.abort();
    }
}
