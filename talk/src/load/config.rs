//! talk-load configuration: CLI flags, each also readable from the environment.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::duration::parse_duration;

/// Load shapes modelled on KakaoTalk's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Constant `--rate` over `--connections` producers.
    Steady,
    /// New Year's midnight: 3x `--rate` between `--surge-start` and
    /// `--surge-start + --surge-length`.
    NewYear,
    /// A big event: 10x `--connections` (producers, each with its own
    /// connections: an HTTP pool, or its send channels) at `--rate`.
    BigEvent,
}

impl Profile {
    /// Messages per second at `elapsed` into the run.
    pub fn rate_at(self, base: f64, elapsed: Duration, surge: (Duration, Duration)) -> f64 {
        match self {
            Self::NewYear if elapsed >= surge.0 && elapsed < surge.0 + surge.1 => base * 3.0,
            _ => base,
        }
    }

    pub fn connections(self, base: usize) -> usize {
        match self {
            Self::BigEvent => base * 10,
            _ => base,
        }
    }
}

/// How talk-load sends.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// One HTTP request per message (`POST /rooms/{room}/messages`).
    Http,
    /// One send channel (`GET /channel`, a WebSocket) per producer and talk-server, sends
    /// pipelined on it. The default: it is how a chat app's client sends (one connection it
    /// keeps), and it costs far less CPU per message (throughput bench, 2026-12-07:
    /// talk-server 14-15 us and its client 6, against 35-40 and 33-35 per HTTP request).
    #[default]
    Channel,
}

impl Transport {
    /// Its `--transport` value, for whatever launches talk-load.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Channel => "channel",
        }
    }
}

/// talk-load: open-loop load generator, SLI prober and loss checker for talk.
///
/// Sends messages at a fixed schedule (open loop: a slow server does not slow
/// the sender), each with a unique producer id and counter. A background
/// reader follows every room and counts acknowledged messages that are
/// missing behind its read position. At the end it drains every room and
/// reports, per room and in total: acked, lost (acked, never read back),
/// duplicated, unexpected (read, never sent) and out-of-order, the way
/// Jepsen's queue checker does. A send that failed or timed out is
/// indeterminate, never lost.
///
/// Live SLIs: GET /sli (JSON, read by firedrill's `talk` probe) and /metrics.
///
/// Weak-setting drills: run it against a talk deployed with --replicas 1 and
/// default fsync, kill the stream leader's disk, and watch `lostMessages`.
#[derive(Debug, Clone, Parser)]
#[command(name = "talk-load", version, verbatim_doc_comment)]
pub struct LoadConfig {
    /// talk-server base URLs, comma-separated; producers are spread over them and fail
    /// over between them. dns+http://NAME:PORT stands for every address NAME resolves to,
    /// looked up again every 5 s: give a headless Service's name, so that each pod is a
    /// target of its own and one that stops being ready drops out.
    #[arg(
        long = "target",
        env = "TALK_TARGETS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    pub targets: Vec<String>,

    /// Load shape.
    #[arg(long, env = "TALK_PROFILE", value_enum, default_value = "steady")]
    pub profile: Profile,

    /// How sends travel: `channel` pipelines each producer's sends on one send channel
    /// (WebSocket) per talk-server; `http` makes one request per send. Either way a send
    /// counts as acknowledged only on talk-server's ack (over a channel: its ack frame). A
    /// send whose channel closes before its ack is retried with the same message id, on a
    /// new channel or the next talk-server, while --request-timeout lasts, and is
    /// indeterminate if none acknowledges it, as a failed HTTP send is.
    #[arg(long, env = "TALK_TRANSPORT", value_enum, default_value_t = Transport::default())]
    pub transport: Transport,

    /// Base send rate, messages per second (all producers together).
    #[arg(long, env = "TALK_RATE", default_value_t = 200.0)]
    pub rate: f64,

    /// Base number of producers (connections).
    #[arg(long, env = "TALK_CONNECTIONS", default_value_t = 4)]
    pub connections: usize,

    /// Number of rooms, named `<room-prefix>-<n>`.
    #[arg(long, env = "TALK_ROOMS", default_value_t = 8)]
    pub rooms: usize,

    /// Room name prefix ([a-z0-9-]).
    #[arg(long, env = "TALK_ROOM_PREFIX", default_value = "load")]
    pub room_prefix: String,

    /// How long to send; 0 = until SIGTERM/SIGINT. Then it drains and reports.
    #[arg(long, env = "TALK_DURATION", default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,

    /// new-year: when the 3x surge starts.
    #[arg(long, env = "TALK_SURGE_START", default_value = "10s", value_parser = parse_duration)]
    pub surge_start: Duration,

    /// new-year: how long the surge lasts.
    #[arg(long, env = "TALK_SURGE_LENGTH", default_value = "20s", value_parser = parse_duration)]
    pub surge_length: Duration,

    /// Per-request timeout; a send that times out is indeterminate.
    #[arg(long, env = "TALK_REQUEST_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Sends allowed in flight; beyond it a send is counted failed (not sent).
    #[arg(long, env = "TALK_MAX_IN_FLIGHT", default_value_t = 20000)]
    pub max_in_flight: usize,

    /// Message body size in bytes.
    #[arg(long, env = "TALK_BODY_BYTES", default_value_t = 64)]
    pub body_bytes: usize,

    /// Where to serve /sli and /metrics ("off" disables).
    #[arg(long, env = "TALK_SLI_LISTEN", default_value = "0.0.0.0:9090")]
    pub sli_listen: String,

    /// Sliding window for delivery ratio and latency percentiles.
    #[arg(long, env = "TALK_SLI_WINDOW", default_value = "10s", value_parser = parse_duration)]
    pub sli_window: Duration,

    /// How often the continuous checker polls each room.
    #[arg(long, env = "TALK_CHECK_INTERVAL", default_value = "500ms", value_parser = parse_duration)]
    pub check_interval: Duration,

    /// An acked message counts as lost by the continuous check only when it
    /// is this old and behind the reader's position.
    #[arg(long, env = "TALK_LOSS_GRACE", default_value = "3s", value_parser = parse_duration)]
    pub loss_grace: Duration,

    /// Longest time the final drain may take.
    #[arg(long, env = "TALK_DRAIN_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Skip the final drain and check (live SLIs only).
    #[arg(long, env = "TALK_NO_DRAIN")]
    pub no_drain: bool,

    /// Where to write the final JSON report ("-" = stdout).
    #[arg(long, env = "TALK_REPORT", default_value = "-")]
    pub report: String,

    /// Run id, the prefix of every producer id (default: time and pid).
    #[arg(long, env = "TALK_RUN_ID")]
    pub run_id: Option<String>,

    /// Exit with status 2 if any acknowledged message was lost, duplicated,
    /// unexpected or reordered, or the drain was incomplete.
    #[arg(long, env = "TALK_FAIL_ON_LOSS")]
    pub fail_on_loss: bool,
}

/// Parses an SLI listen address; "off" means none.
pub fn parse_listen(raw: &str) -> Result<Option<SocketAddr>, String> {
    if raw == "off" {
        return Ok(None);
    }
    raw.parse()
        .map(Some)
        .map_err(|e| format!("{raw:?}: {e} (use host:port or off)"))
}

impl LoadConfig {
    pub fn validate(&self) -> Result<(), String> {
        super::targets::Targets::parse(&self.targets)?;
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(format!("--rate must be > 0, got {}", self.rate));
        }
        if self.connections == 0 || self.rooms == 0 || self.max_in_flight == 0 {
            return Err("--connections, --rooms and --max-in-flight must be >= 1".into());
        }
        crate::room::RoomName::parse(&format!("{}-{}", self.room_prefix, self.rooms))
            .map_err(|e| format!("--room-prefix: {e}"))?;
        parse_listen(&self.sli_listen).map_err(|e| format!("--sli-listen: {e}"))?;
        if self.sli_window.is_zero() || self.check_interval.is_zero() {
            return Err("--sli-window and --check-interval must be > 0".into());
        }
        Ok(())
    }

    pub fn room_names(&self) -> Vec<String> {
        (0..self.rooms)
            .map(|i| format!("{}-{i}", self.room_prefix))
            .collect()
    }

    /// Defaults against `targets` (for tests and benchmarks).
    pub fn for_targets(targets: Vec<String>) -> Self {
        let mut c = Self::parse_from(["talk-load"]);
        c.targets = targets;
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        LoadConfig::command().debug_assert();
    }

    #[test]
    fn profiles() {
        let surge = (Duration::from_secs(10), Duration::from_secs(5));
        let p = Profile::NewYear;
        assert_eq!(p.rate_at(100.0, Duration::from_secs(1), surge), 100.0);
        assert_eq!(p.rate_at(100.0, Duration::from_secs(12), surge), 300.0);
        assert_eq!(p.rate_at(100.0, Duration::from_secs(15), surge), 100.0);
        assert_eq!(Profile::BigEvent.connections(4), 40);
        assert_eq!(Profile::Steady.connections(4), 4);
    }

    #[test]
    fn sends_go_over_channels_unless_told_http() {
        let c = LoadConfig::for_targets(vec!["http://127.0.0.1:1".into()]);
        assert_eq!(c.transport, Transport::Channel);
        let c = LoadConfig::parse_from(["talk-load", "--transport", "http"]);
        assert_eq!(c.transport, Transport::Http);
        // The lab passes it by name.
        for t in Transport::value_variants() {
            let name = t.to_possible_value().unwrap();
            assert_eq!(t.as_str(), name.get_name());
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
    }

    #[test]
    fn validates_rooms() {
        let mut c = LoadConfig::for_targets(vec!["http://127.0.0.1:1".into()]);
        assert!(c.validate().is_ok());
        c.room_prefix = "Bad.Prefix".into();
        assert!(c.validate().is_err());
    }
}
