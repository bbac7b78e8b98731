//! JSON shapes of the talk HTTP API, shared by talk-server and talk-load.

use serde::{Deserialize, Serialize};

/// How much a send channel's WebSocket reads at a time, on both ends. The library's
/// default, 128 KiB, is zeroed before every read, the ones that find nothing included; on a
/// channel that carries one small frame at a time (a client sending a few hundred a second)
/// that memset was the largest single cost per message in talk-server (perf of the throughput
/// bench's open loop, 2026-12-07). A burst of a full window (256 frames of a few hundred
/// bytes) still takes only a few reads, and a larger frame is read whole all the same.
pub const CHANNEL_READ_BUFFER: usize = 16 * 1024;

/// Body of `POST /rooms/{room}/messages`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendRequest {
    /// Unique id of the sender (one per connection in talk-load).
    pub producer: String,
    /// Per-producer counter; (producer, counter) identifies a message.
    pub counter: u64,
    pub body: String,
    /// Sender's wall clock, for end-to-end latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at_ms: Option<u64>,
}

/// Reply to an acknowledged send: the message is in the stream at `seq`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SendResponse {
    pub room: String,
    pub seq: u64,
    pub stream: String,
    /// JetStream saw this (producer, counter) before and did not store it again.
    pub duplicate: bool,
}

/// Body of `POST /rooms/{room}/messages/batch`: several sends in one request, for a
/// client with many messages in hand (a gateway, a bridge, a backlog).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendBatchRequest {
    pub messages: Vec<SendRequest>,
}

/// Reply to a batch: one result per message, in the request's order. Each message is
/// acknowledged on its own, exactly as a single send would be; `failed` counts those that
/// were not (each is indeterminate, and safe to send again with the same counter).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SendBatchResponse {
    pub room: String,
    pub stream: String,
    pub failed: usize,
    pub results: Vec<BatchItem>,
}

/// One message of a batch: stored at `seq`, or the error that a single send would have
/// answered with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum BatchItem {
    Stored { seq: u64, duplicate: bool },
    Failed { error: ErrorDetail },
}

/// One send on the channel (`GET /channel`, a WebSocket text frame): a single send's
/// body plus the room it goes to. (producer, counter) is its message id, as over HTTP.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelSend {
    pub room: String,
    pub producer: String,
    pub counter: u64,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at_ms: Option<u64>,
}

impl ChannelSend {
    pub fn new(room: &str, req: SendRequest) -> Self {
        Self {
            room: room.to_owned(),
            producer: req.producer,
            counter: req.counter,
            body: req.body,
            sent_at_ms: req.sent_at_ms,
        }
    }

    /// The room and the single send it stands for.
    pub fn into_parts(self) -> (String, SendRequest) {
        (
            self.room,
            SendRequest {
                producer: self.producer,
                counter: self.counter,
                body: self.body,
                sent_at_ms: self.sent_at_ms,
            },
        )
    }
}

/// What the server answers on the channel, one frame per send, in the order the sends are
/// stored (not the order they were sent). Each names the send's message id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ChannelReply {
    /// Stored at `seq` (after the JetStream ack), exactly as a 200 to a single send.
    Ack {
        room: String,
        producer: String,
        counter: u64,
        seq: u64,
        duplicate: bool,
    },
    /// Not acknowledged: `error` is what the HTTP API answers the same send with, and
    /// `status` its HTTP status (5xx: indeterminate, safe to send again with the same id).
    /// The id is missing only when the frame was too broken to name one.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        producer: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        counter: Option<u64>,
        status: u16,
        error: ErrorDetail,
    },
}

/// What the store keeps for each message (the JetStream payload).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MessagePayload {
    pub room: String,
    pub producer: String,
    pub counter: u64,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at_ms: Option<u64>,
    /// talk-server's wall clock when it accepted the message.
    pub received_at_ms: u64,
}

/// A message read back from a room, with its stream sequence.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StoredMessage {
    pub seq: u64,
    #[serde(flatten)]
    pub payload: MessagePayload,
}

/// Which replica serves a history read (`GET /rooms/{room}/messages?from=...`).
///
/// JetStream places the consumer that reads a page on any replica of the stream and reads
/// that replica's copy. A replica rebuilding from its peers (a new disk, a long outage)
/// holds only a prefix until it has caught up, so a page it serves can lack messages the
/// stream acknowledged. The leader holds every acknowledged message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// Whichever replica the consumer lands on: cheapest; may be behind.
    #[default]
    Any,
    /// The stream's leader: what a check that counts losses must read.
    Leader,
}

impl ReadFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::Leader => "leader",
        }
    }
}

/// Reply to `GET /rooms/{room}/messages?after=SEQ&limit=N&from=any|leader`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    pub room: String,
    pub messages: Vec<StoredMessage>,
    /// More messages after the last one returned were already stored.
    pub more: bool,
    /// The stream's last sequence (all rooms) observed before reading; every
    /// message of this room up to it is in `messages` unless `more` is set.
    pub stream_last_seq: u64,
    /// When the stream was created: a new value means it was made anew (all its data lost),
    /// which is the only time its sequences start over. A `stream_last_seq` behind what was
    /// already read under the same creation time is only a stale view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_created: Option<String>,
    /// The server whose copy of the stream served the page (the reading consumer's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
}

/// Every 4xx/5xx reply: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    /// Stable machine-readable category, e.g. `bad_room`.
    pub code: String,
    pub message: String,
}

/// Current wall clock in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
