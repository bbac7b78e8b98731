//! talk-server configuration: CLI flags, each also readable from the environment.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::duration::parse_duration;
use crate::store::StreamSpec;

/// `--channel-window`'s default, for whatever launches talk-server (the lab): 256 is the
/// batch endpoint's limit, and about what one channel needs in flight to carry the seed's
/// 45k msg/s at a few milliseconds per replicated ack.
pub const DEFAULT_CHANNEL_WINDOW: usize = 256;

/// talk-server: a miniature messenger backed by NATS JetStream.
///
/// A send is acknowledged (200 with the stream sequence) only after
/// JetStream acknowledged the publish, so an acknowledged message is as
/// durable as the stream's replication and fsync settings make it.
///
/// API:
///   POST /rooms/{room}/messages  {"producer","counter","body","sentAtMs"?}
///   POST /rooms/{room}/messages/batch  {"messages":[...]}   one result per message
///   GET  /rooms/{room}/messages?after=SEQ&limit=N   history
///   GET  /rooms/{room}/stream?after=SEQ              live (Server-Sent Events)
///   GET  /channel   WebSocket: pipelined sends {"room",...} -> one ack/error frame each
///   GET  /healthz  /readyz  /metrics
///
/// Room names are [a-z0-9-]{1,64}. Every error is JSON:
/// {"error":{"code":"bad_room","message":"..."}}.
#[derive(Debug, Clone, Parser)]
#[command(name = "talk-server", version, verbatim_doc_comment)]
pub struct ServerConfig {
    /// Address to listen on.
    #[arg(long, env = "TALK_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// NATS servers, comma-separated; the client fails over between them.
    #[arg(
        long = "nats-url",
        env = "TALK_NATS_URL",
        value_delimiter = ',',
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_urls: Vec<String>,

    /// JetStream stream holding all rooms.
    #[arg(long, env = "TALK_STREAM", default_value = "TALK")]
    pub stream: String,

    /// Subject prefix; room R is stored on `<prefix>.R`.
    #[arg(long, env = "TALK_SUBJECT_PREFIX", default_value = "talk.rooms")]
    pub subject_prefix: String,

    /// Replicas for the stream when talk-server creates it. 3 survives a
    /// zone loss; 1 is the weak setting that loses data with its server.
    #[arg(long, env = "TALK_REPLICAS", default_value_t = 3)]
    pub replicas: usize,

    /// Server tags the stream must be placed on when talk-server creates it
    /// (e.g. `zone:zone-a`), comma-separated; empty lets JetStream choose.
    #[arg(
        long = "placement-tag",
        env = "TALK_PLACEMENT_TAGS",
        value_delimiter = ','
    )]
    pub placement_tags: Vec<String>,

    /// How long to wait for JetStream (publish ack, reads) before answering 504.
    #[arg(long, env = "TALK_NATS_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub nats_timeout: Duration,

    /// Largest accepted message body, in bytes (413 above it).
    #[arg(long, env = "TALK_MAX_BODY_BYTES", default_value_t = 4096)]
    pub max_body_bytes: usize,

    /// Largest accepted HTTP request body, in bytes (413 above it).
    #[arg(long, env = "TALK_MAX_REQUEST_BYTES", default_value_t = 16384)]
    pub max_request_bytes: usize,

    /// Most messages in one batch send (413 above it).
    #[arg(long, env = "TALK_MAX_BATCH_MESSAGES", default_value_t = 256)]
    pub max_batch_messages: usize,

    /// Largest accepted batch request body, in bytes (413 above it).
    #[arg(long, env = "TALK_MAX_BATCH_REQUEST_BYTES", default_value_t = 1 << 20)]
    pub max_batch_request_bytes: usize,

    /// Sends one channel may have in flight (publishes awaiting their JetStream ack);
    /// beyond it talk-server stops reading that channel until acks come back.
    #[arg(long, env = "TALK_CHANNEL_WINDOW", default_value_t = DEFAULT_CHANNEL_WINDOW)]
    pub channel_window: usize,

    /// Largest `limit` a history request may ask for.
    #[arg(long, env = "TALK_HISTORY_MAX_LIMIT", default_value_t = 1000)]
    pub history_max_limit: usize,

    /// Zone this instance runs in; reported by /healthz.
    #[arg(long, env = "TALK_ZONE", default_value = "")]
    pub zone: String,
}

impl ServerConfig {
    pub fn stream_spec(&self) -> StreamSpec {
        StreamSpec {
            name: self.stream.clone(),
            subject_prefix: self.subject_prefix.clone(),
            replicas: self.replicas,
            placement_tags: self.placement_tags.clone(),
            ..StreamSpec::default()
        }
    }

    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.nats_urls.is_empty() {
            return Err("--nats-url needs at least one server".into());
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(format!("--replicas must be 1-5, got {}", self.replicas));
        }
        if self.max_body_bytes >= self.max_request_bytes {
            return Err("--max-body-bytes must be smaller than --max-request-bytes".into());
        }
        if self.max_batch_messages == 0 {
            return Err("--max-batch-messages must be at least 1".into());
        }
        if self.max_batch_request_bytes < self.max_request_bytes {
            return Err("--max-batch-request-bytes must be at least --max-request-bytes".into());
        }
        if self.channel_window == 0 {
            return Err("--channel-window must be at least 1".into());
        }
        if self.history_max_limit == 0 {
            return Err("--history-max-limit must be at least 1".into());
        }
        Ok(())
    }

    /// Defaults with the given NATS servers (for tests and benchmarks).
    pub fn for_nats(urls: Vec<String>, replicas: usize) -> Self {
        let mut config = Self::parse_from(["talk-server"]);
        config.nats_urls = urls;
        config.replicas = replicas;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        ServerConfig::command().debug_assert();
    }

    #[test]
    fn validates() {
        let mut c = ServerConfig::for_nats(vec!["nats://127.0.0.1:4222".into()], 3);
        assert!(c.validate().is_ok());
        c.replicas = 0;
        assert!(c.validate().is_err());
    }
}
