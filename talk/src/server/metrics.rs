//! Prometheus metrics of talk-server.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    Acked,
    Duplicate,
    Failed,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub code: String,
}

#[derive(Debug)]
pub struct ServerMetrics {
    registry: Registry,
    pub sends: Family<OutcomeLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub publish_seconds: Histogram,
    pub history_reads: Counter,
    pub live_streams: Gauge,
    pub channels: Gauge,
}

impl ServerMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("talk_server");
        let sends = Family::<OutcomeLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        // 0.5 ms .. ~16 s
        let publish_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let history_reads = Counter::default();
        let live_streams = Gauge::default();
        let channels = Gauge::default();
        registry.register("sends", "Sends (HTTP or channel) by outcome", sends.clone());
        registry.register("errors", "Error replies by code", errors.clone());
        registry.register(
            "publish_seconds",
            "Time from request (or channel frame) to JetStream ack",
            publish_seconds.clone(),
        );
        registry.register(
            "history_reads",
            "History pages served",
            history_reads.clone(),
        );
        registry.register("live_streams", "Open live streams", live_streams.clone());
        registry.register("channels", "Open send channels", channels.clone());
        Self {
            registry,
            sends,
            errors,
            publish_seconds,
            history_reads,
            live_streams,
            channels,
        }
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
