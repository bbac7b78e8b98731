//! The JetStream-backed message store: one stream, one subject per room.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use futures_util::{Stream, StreamExt, TryStreamExt};

use crate::room::RoomName;
use crate::wire::{HistoryPage, MessagePayload, ReadFrom, StoredMessage};

/// The stream that holds every room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// Stream name, e.g. `TALK`.
    pub name: String,
    /// Subjects are `<prefix>.<room>`; the stream captures `<prefix>.>`.
    pub subject_prefix: String,
    /// Replication factor (1 is the weak setting).
    pub replicas: usize,
    /// Window in which JetStream drops a re-sent (producer, counter).
    pub duplicate_window: Duration,
    /// Server tags the stream's replicas must carry; empty lets JetStream choose.
    pub placement_tags: Vec<String>,
}

impl Default for StreamSpec {
    fn default() -> Self {
        Self {
            name: "TALK".to_owned(),
            subject_prefix: "talk.rooms".to_owned(),
            replicas: 3,
            duplicate_window: Duration::from_secs(120),
            placement_tags: Vec::new(),
        }
    }
}

impl StreamSpec {
    pub fn subject(&self, room: &RoomName) -> String {
        format!("{}.{}", self.subject_prefix, room)
    }

    fn config(&self) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            subjects: vec![format!("{}.>", self.subject_prefix)],
            num_replicas: self.replicas,
            storage: stream::StorageType::File,
            duplicate_window: self.duplicate_window,
            allow_direct: true,
            placement: (!self.placement_tags.is_empty()).then(|| stream::Placement {
                tags: self.placement_tags.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// How long to wait before publishing again after a duplicate-at-sequence-0 answer: six
/// tries within about 0.75 s, inside the one-second attempt a client gives a send.
const UNCOMMITTED_DUPLICATE_PAUSES: [Duration; 5] = [
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(150),
    Duration::from_millis(200),
    Duration::from_millis(250),
];

/// JetStream's error "duplicate message id is in process" (nats-server 2.11+): a retry
/// arrived while the first copy is still being replicated.
const DUPLICATE_IN_PROCESS: jetstream::ErrorCode = jetstream::ErrorCode(10158);

/// What one publish attempt established.
enum Published {
    /// Stored (or already stored, `duplicate`) at `seq`: committed.
    Stored { seq: u64, duplicate: bool },
    /// A copy with this message id is in flight and not committed yet.
    Uncommitted,
}

fn duplicate_in_process(e: &jetstream::context::PublishError) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<jetstream::Error>())
        .is_some_and(|e| e.error_code() == DUPLICATE_IN_PROCESS)
}

/// Errors talking to JetStream.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("connect to NATS: {0}")]
    Connect(String),
    #[error("ensure stream {stream}: {message}")]
    Stream { stream: String, message: String },
    #[error("publish: {0}")]
    Publish(String),
    /// JetStream has no stream for the subject: it was deleted, or lost with what a
    /// power cut took from unsynced disks.
    #[error("publish: no stream holds {0}")]
    NoStream(String),
    #[error("timed out waiting for JetStream ({0})")]
    Timeout(String),
    /// The store answered a send as a duplicate of a copy it has not committed.
    #[error("not committed yet: {0}")]
    Uncommitted(String),
    #[error("read: {0}")]
    Read(String),
    #[error("corrupt message at seq {seq}: {message}")]
    Corrupt { seq: u64, message: String },
}

impl StoreError {
    /// Stable category for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::Stream { .. } => "stream",
            Self::Publish(_) => "publish",
            Self::NoStream(_) => "no_stream",
            Self::Timeout(_) => "timeout",
            Self::Uncommitted(_) => "uncommitted",
            Self::Read(_) => "read",
            Self::Corrupt { .. } => "corrupt",
        }
    }
}

/// A room's read position kept between history pages: the ephemeral consumer that served
/// the last page, positioned after it. A reader that asks for the next page (talk-load's
/// checker polls every room that way) reuses it instead of creating a consumer per page —
/// a consumer create and delete are each a proposal through the JetStream meta group,
/// which all servers write, and their churn is what stretched the send p99.
#[derive(Debug)]
struct Cursor {
    consumer: consumer::PullConsumer,
    /// The `after` of the page this cursor serves next.
    after: u64,
    /// The server whose copy of the stream it reads.
    server: Option<String>,
    used: std::time::Instant,
}

/// Cursors older than this are not reused (the server drops the consumer after
/// [`CURSOR_INACTIVE`] without requests).
const CURSOR_IDLE: Duration = Duration::from_secs(20);
const CURSOR_INACTIVE: Duration = Duration::from_secs(30);

/// How many consumers a read from the leader makes before giving up: each lands on the
/// leader with probability 1/replicas, so twelve miss a three-replica leader about once in
/// 130 reads, and the caller reads again.
const PLACEMENT_TRIES: usize = 12;

/// How often the client pings its server when the connection is quiet. A server whose
/// node lost power or its network sends no reset, so the connection looks open until
/// more than two pings go unanswered: at the library's default of 60 s, a talk-server
/// attached to a blacked-out zone's server failed every send for minutes while the other
/// two servers kept the stream's quorum (a cluster game day aborted on it, delivery 0).
/// At 1 s it goes on through another server in seconds (tests/failover.rs: 4.4 s).
const PING_INTERVAL: Duration = Duration::from_secs(1);

/// A connection to the message store.
#[derive(Debug, Clone)]
pub struct MessageStore {
    client: async_nats::Client,
    js: jetstream::Context,
    spec: StreamSpec,
    cursors: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Cursor>>>,
}

impl MessageStore {
    /// Connects to any of `urls`. With `wait`, waits for the first
    /// connection; without it, connects in the background (a pod may start
    /// before NATS does; readiness reports the difference).
    pub async fn connect(
        urls: &[String],
        spec: StreamSpec,
        timeout: Duration,
        wait: bool,
    ) -> Result<Self, StoreError> {
        let addrs = urls
            .iter()
            .map(|u| u.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Connect(e.to_string()))?;
        let mut options = async_nats::ConnectOptions::new()
            .ping_interval(PING_INTERVAL)
            .connection_timeout(timeout)
            .request_timeout(Some(timeout))
            .max_reconnects(None);
        if !wait {
            options = options.retry_on_initial_connect();
        }
        let client = options
            .connect(addrs)
            .await
            .map_err(|e| StoreError::Connect(e.to_string()))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(timeout);
        Ok(Self {
            client,
            js,
            spec,
            cursors: Default::default(),
        })
    }

    pub fn spec(&self) -> &StreamSpec {
        &self.spec
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Creates the stream if missing (idempotent; an existing stream keeps
    /// its replica count).
    pub async fn ensure_stream(&self) -> Result<(), StoreError> {
        self.js
            .get_or_create_stream(self.spec.config())
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Stream {
                stream: self.spec.name.clone(),
                message: e.to_string(),
            })
    }

    /// Readiness: the stream answers an info request.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.stream_info().await.map(|_| ())
    }

    async fn stream_info(&self) -> Result<stream::Info, StoreError> {
        let stream = self
            .js
            .get_stream(&self.spec.name)
            .await
            .map_err(|e| StoreError::Read(e.to_string()))?;
        Ok(stream.cached_info().clone())
    }

    /// Name of the server leading the stream (for fault injection in tests).
    pub async fn stream_leader(&self) -> Result<Option<String>, StoreError> {
        Ok(self.stream_info().await?.cluster.and_then(|c| c.leader))
    }

    /// Publishes and waits for the JetStream ack; returns (seq, duplicate).
    ///
    /// A retry of a send whose first copy is still being replicated is answered by the
    /// stream leader as a duplicate at sequence 0: nothing is committed yet, and if the
    /// leader loses its term (a healed partition often does that) the first copy is
    /// dropped and never stored. Acknowledging that would lose an acknowledged message, so
    /// the publish is repeated until the copy is committed (a duplicate with its real
    /// sequence) or stored anew; when neither happens in time the send fails, which the
    /// client sees as indeterminate and retries. nats-server 2.11 and later answer such a
    /// retry with the error "duplicate message id is in process" instead; it is the same
    /// case and handled the same way.
    pub async fn publish(
        &self,
        room: &RoomName,
        payload: &MessagePayload,
    ) -> Result<(u64, bool), StoreError> {
        // Encoded once; every attempt sends the same bytes with the same message id.
        let body: axum::body::Bytes = serde_json::to_vec(payload)
            .map_err(|e| StoreError::Publish(e.to_string()))?
            .into();
        let subject = self.spec.subject(room);
        let mut headers = HeaderMap::new();
        // Lets a client retry a send without storing it twice.
        headers.insert(
            "Nats-Msg-Id",
            format!("{}:{}", payload.producer, payload.counter).as_str(),
        );
        let mut pauses = UNCOMMITTED_DUPLICATE_PAUSES.iter();
        loop {
            match self
                .publish_once(&subject, headers.clone(), body.clone())
                .await?
            {
                Published::Uncommitted => match pauses.next() {
                    Some(pause) => {
                        tracing::warn!(
                            producer = %payload.producer,
                            counter = payload.counter,
                            "JetStream answered a duplicate of an uncommitted copy; publishing again"
                        );
                        tokio::time::sleep(*pause).await;
                    }
                    None => {
                        return Err(StoreError::Uncommitted(format!(
                            "{}:{} is a duplicate of a copy JetStream has not committed",
                            payload.producer, payload.counter
                        )));
                    }
                },
                Published::Stored { seq, duplicate } => return Ok((seq, duplicate)),
            }
        }
    }

    async fn publish_once(
        &self,
        subject: &str,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> Result<Published, StoreError> {
        let ack = self
            .js
            .publish_with_headers(subject.to_owned(), headers, body)
            .await
            .map_err(|e| StoreError::Publish(e.to_string()))?
            .await;
        match ack {
            // 2.10 says "duplicate" with sequence 0 for a copy still in flight.
            Ok(ack) if ack.duplicate && ack.sequence == 0 => Ok(Published::Uncommitted),
            Ok(ack) => Ok(Published::Stored {
                seq: ack.sequence,
                duplicate: ack.duplicate,
            }),
            // 2.11 and later say so with an error instead.
            Err(e) if duplicate_in_process(&e) => Ok(Published::Uncommitted),
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::TimedOut => {
                Err(StoreError::Timeout("publish ack".into()))
            }
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound => {
                Err(StoreError::NoStream(subject.to_owned()))
            }
            Err(e) => Err(StoreError::Publish(e.to_string())),
        }
    }

    /// Up to `limit` messages of `room` with sequence > `after`, from the replica `from`
    /// asks for.
    pub async fn history(
        &self,
        room: &RoomName,
        after: u64,
        limit: usize,
        from: ReadFrom,
    ) -> Result<HistoryPage, StoreError> {
        let read = |e: &dyn std::fmt::Display| StoreError::Read(e.to_string());
        // The stream's last sequence before reading bounds what this page covers.
        let stream = self
            .js
            .get_stream(&self.spec.name)
            .await
            .map_err(|e| read(&e))?;
        let info = stream.cached_info();
        let stream_last_seq = info.state.last_sequence;
        let stream_created = Some(info.created.to_string());
        // A stream without a cluster (one server) has only one copy to read.
        let wanted = match from {
            ReadFrom::Any => None,
            ReadFrom::Leader => info.cluster.as_ref().and_then(|c| c.leader.clone()),
        };
        let (consumer, server, pending) = match self.take_cursor(room, after, wanted.as_deref()) {
            Some((mut c, server)) => {
                let pending = c.info().await.map_err(|e| read(&e))?.num_pending;
                (c, server, pending)
            }
            None => {
                let (c, server) = self
                    .reading_consumer(&stream, room, after, wanted.as_deref())
                    .await?;
                let pending = c.cached_info().num_pending;
                (c, server, pending)
            }
        };
        let pending = usize::try_from(pending).unwrap_or(usize::MAX);
        let mut messages = Vec::new();
        if pending > 0 && limit > 0 {
            // On an error the consumer's position is unknown: it is dropped, not kept.
            let fetched = async {
                let batch = consumer
                    .fetch()
                    .max_messages(limit.min(pending))
                    .messages()
                    .await
                    .map_err(|e| read(&e))?;
                let raw: Vec<jetstream::Message> =
                    batch.try_collect().await.map_err(|e| read(&e))?;
                raw.iter().map(decode).collect::<Result<Vec<_>, _>>()
            }
            .await;
            match fetched {
                Ok(m) => messages = m,
                Err(e) => {
                    self.delete_consumer(&consumer);
                    return Err(e);
                }
            }
        }
        let next_after = messages.last().map_or(after, |m| m.seq);
        let more = messages.len() < pending;
        // The consumer is now positioned after the last message it delivered.
        self.keep_cursor(room, next_after, consumer, server.clone());
        Ok(HistoryPage {
            room: room.to_string(),
            more,
            messages,
            stream_last_seq,
            stream_created,
            served_by: server,
        })
    }

    /// An ephemeral consumer of `room` from `after`, and the server it reads on. With
    /// `on` set, only one placed on that server: JetStream places a one-replica consumer on
    /// a random replica of the stream, so one placed elsewhere is deleted and made again.
    async fn reading_consumer(
        &self,
        stream: &stream::Stream,
        room: &RoomName,
        after: u64,
        on: Option<&str>,
    ) -> Result<(consumer::PullConsumer, Option<String>), StoreError> {
        let mut placed_on = Vec::new();
        for _ in 0..PLACEMENT_TRIES {
            let c: consumer::PullConsumer = stream
                .create_consumer(consumer::pull::Config {
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: after.saturating_add(1),
                    },
                    ack_policy: consumer::AckPolicy::None,
                    filter_subject: self.spec.subject(room),
                    inactive_threshold: CURSOR_INACTIVE,
                    num_replicas: 1,
                    memory_storage: true,
                    ..Default::default()
                })
                .await
                .map_err(|e| StoreError::Read(e.to_string()))?;
            let server = c
                .cached_info()
                .cluster
                .as_ref()
                .and_then(|c| c.leader.clone());
            match on {
                Some(wanted) if server.as_deref() != Some(wanted) => {
                    self.delete_consumer(&c);
                    placed_on.push(server.unwrap_or_else(|| "?".to_owned()));
                }
                _ => return Ok((c, server)),
            }
        }
        Err(StoreError::Read(format!(
            "no reading consumer landed on the stream leader {} in {PLACEMENT_TRIES} tries (placed on {})",
            on.unwrap_or_default(),
            placed_on.join(", ")
        )))
    }

    /// The cursor of `room` if it is positioned at `after`.
    /// With `on` set, only if it reads on that server.
    fn take_cursor(
        &self,
        room: &RoomName,
        after: u64,
        on: Option<&str>,
    ) -> Option<(consumer::PullConsumer, Option<String>)> {
        let mut cursors = self.cursors.lock().unwrap_or_else(|p| p.into_inner());
        let c = cursors.remove(room.as_str())?;
        let placed = on.is_none_or(|wanted| c.server.as_deref() == Some(wanted));
        if c.after == after && placed && c.used.elapsed() < CURSOR_IDLE {
            Some((c.consumer, c.server))
        } else {
            drop(cursors);
            self.delete_consumer(&c.consumer);
            None
        }
    }

    fn keep_cursor(
        &self,
        room: &RoomName,
        after: u64,
        consumer: consumer::PullConsumer,
        server: Option<String>,
    ) {
        let now = std::time::Instant::now();
        let mut stale = Vec::new();
        {
            let mut cursors = self.cursors.lock().unwrap_or_else(|p| p.into_inner());
            let cursor = Cursor {
                consumer,
                after,
                server,
                used: now,
            };
            if let Some(old) = cursors.insert(room.to_string(), cursor) {
                stale.push(old.consumer);
            }
            let idle: Vec<String> = cursors
                .iter()
                .filter(|(_, c)| now.duration_since(c.used) >= CURSOR_IDLE)
                .map(|(k, _)| k.clone())
                .collect();
            for k in idle {
                if let Some(c) = cursors.remove(&k) {
                    stale.push(c.consumer);
                }
            }
        }
        for c in &stale {
            self.delete_consumer(c);
        }
    }

    // Ephemeral consumers expire on their own; deleting early is a courtesy.
    fn delete_consumer(&self, consumer: &consumer::PullConsumer) {
        let name = consumer.cached_info().name.clone();
        let js = self.js.clone();
        let stream_name = self.spec.name.clone();
        tokio::spawn(async move {
            let _ = js.delete_consumer_from_stream(name, stream_name).await;
        });
    }

    /// Follows `room` from sequence > `after` (`after` 0: only what is new), as long as the
    /// stream is polled.
    pub async fn follow(
        &self,
        room: &RoomName,
        after: u64,
    ) -> Result<impl Stream<Item = Result<StoredMessage, StoreError>> + use<>, StoreError> {
        let read = |e: &dyn std::fmt::Display| StoreError::Read(e.to_string());
        let stream = self
            .js
            .get_stream(&self.spec.name)
            .await
            .map_err(|e| read(&e))?;
        // "Only new" is "after the stream's last message now": a number, for the floor below.
        let floor = match after {
            0 => stream.cached_info().state.last_sequence,
            after => after,
        };
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: self.spec.subject(room),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: floor.saturating_add(1),
                },
                ..Default::default()
            })
            .await
            .map_err(|e| read(&e))?;
        let messages = consumer.messages().await.map_err(|e| read(&e))?;
        // async-nats (0.51, `recreate_consumer_stream`) recreates an ordered consumer that
        // has delivered nothing yet with DeliverPolicy::All, so a consumer reset (a missed
        // heartbeat on a busy machine) replays the room from its first message. Only what
        // is past the floor, and past what was already sent, goes out.
        let mut floor = floor;
        Ok(messages.filter_map(move |m| {
            let next = match m.map_err(|e| read(&e)).and_then(|m| decode(&m)) {
                Ok(message) if message.seq <= floor => None,
                Ok(message) => {
                    floor = message.seq;
                    Some(Ok(message))
                }
                Err(e) => Some(Err(e)),
            };
            std::future::ready(next)
        }))
    }
}

fn decode(m: &jetstream::Message) -> Result<StoredMessage, StoreError> {
    let info = m.info().map_err(|e| StoreError::Read(e.to_string()))?;
    let seq = info.stream_sequence;
    let payload: MessagePayload =
        serde_json::from_slice(&m.payload).map_err(|e| StoreError::Corrupt {
            seq,
            message: e.to_string(),
        })?;
    Ok(StoredMessage { seq, payload })
}
