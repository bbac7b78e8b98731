//! talk-load's client of talk-server's send channel (`GET /channel`): sends are written
//! without waiting for the acks of those before them, and each is answered by the ack
//! frame that names its message id.
//!
//! A send counts as acknowledged only when its ack frame arrives. When the channel closes
//! or breaks first, every send still waiting gets [`ClientError::Closed`]: indeterminate,
//! as a failed HTTP send is, never acknowledged.
//!
//! A partition that drops packets without a reset leaves the socket open, and TCP takes
//! minutes to give up on it. So the client also closes a channel on which talk-server has
//! gone silent: pinged after [`PING_AFTER`] without a frame, it is closed after
//! [`SILENCE_LIMIT`], and at once when an attempt times out without any frame (not even
//! the pong of the ping sent halfway through it) arriving since the attempt began. A
//! talk-server that is only slow to ack still answers pings, and keeps its channel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::client::ClientError;
use super::lock;
use crate::wire::{CHANNEL_READ_BUFFER, ChannelReply, ChannelSend, SendRequest};

/// Frames a connection holds for its writer before a send waits: the server's window
/// (256 by default) and as many again on their way.
const OUTBOX: usize = 512;

/// How long a closing channel waits for the server to end the connection.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A channel on which talk-server has sent nothing for this long is pinged, and pinged
/// again as often while it stays silent, whether sends wait on it or not: a busy channel's
/// acks make pings needless, an idle one is found dead before a send needs it.
pub const PING_AFTER: Duration = Duration::from_secs(1);

/// A channel silent for this long (no ack, no pong, no frame at all) is taken for dead and
/// closed. talk-server answers a ping as soon as it reads it, slow JetStream acks or not
/// (it stops reading only while its window is full, until an ack frees a place), and a
/// round trip here takes milliseconds; 3 s gives the ping sent after 1 s of silence 2 s to
/// come back, enough for TCP to resend it three times in a row (200 + 400 + 800 ms), so a
/// few lost packets do not close a channel, while a dead one goes in seconds rather than
/// in the minutes TCP takes.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(3);

/// An attempt shorter than this that hears nothing leaves its channel open: the ping it
/// sends halfway has under 50 ms to come back, and a send's last attempt before its
/// deadline can be a few milliseconds long, too short to tell a dead channel from a live
/// one that has nothing to say.
const MIN_SILENT_ATTEMPT: Duration = Duration::from_millis(100);

type Reply = Result<u64, ClientError>;

/// The sends written to the channel and not answered yet, by message id (producer,
/// counter), with whoever waits for the answer (nobody, once that attempt gave up), and
/// what shows whether the server is still there.
#[derive(Debug)]
struct Waiting {
    /// Set once the channel is gone: no send may wait on it any more.
    closed: bool,
    sends: HashMap<(String, u64), Option<oneshot::Sender<Reply>>>,
    /// When the last frame of any kind arrived (or the channel opened).
    heard: Instant,
    /// When a ping was last asked for.
    pinged: Option<Instant>,
}

/// What a channel's handles and its two tasks share.
#[derive(Debug)]
struct Shared {
    waiting: Mutex<Waiting>,
    /// Asks the writer for a ping; one pending request is enough.
    pings: mpsc::Sender<()>,
    /// The writer and the reader, aborted when the channel is found dead: the socket goes
    /// with them instead of lingering until TCP gives up.
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Shared {
    /// Marks the server as heard from now.
    fn heard(&self) {
        lock(&self.waiting).heard = Instant::now();
    }

    /// Asks for a ping unless the server has been heard from since `since` or a ping asked
    /// for since then is still unanswered (its pong is the next frame anyway).
    fn ping_unless_heard_since(&self, since: Instant) {
        let mut waiting = lock(&self.waiting);
        let unanswered = waiting.pinged.is_some_and(|at| at > waiting.heard);
        if waiting.heard >= since || unanswered {
            return;
        }
        waiting.pinged = Some(Instant::now());
        // Full: a ping is already on its way to the writer.
        let _ = self.pings.try_send(());
    }

    /// The keepalive's check at `now`: pings a channel silent for [`PING_AFTER`] (again
    /// every [`PING_AFTER`] while it stays silent); returns when to check next, or why the
    /// channel is dead once silent for [`SILENCE_LIMIT`].
    fn keep_alive(&self, now: Instant) -> Result<Instant, String> {
        let mut waiting = lock(&self.waiting);
        let silent = now.saturating_duration_since(waiting.heard);
        if silent >= SILENCE_LIMIT {
            return Err(format!(
                "talk-server silent for {silent:?}, pings unanswered"
            ));
        }
        if silent < PING_AFTER {
            return Ok(waiting.heard + PING_AFTER);
        }
        // Silent for PING_AFTER, so a ping asked for less than PING_AFTER ago is unanswered.
        let pinged = match waiting.pinged {
            Some(at) if now.saturating_duration_since(at) < PING_AFTER => at,
            _ => {
                waiting.pinged = Some(now);
                let _ = self.pings.try_send(());
                now
            }
        };
        Ok((pinged + PING_AFTER).min(waiting.heard + SILENCE_LIMIT))
    }

    /// The channel is dead: every send still waiting is indeterminate, and the connection
    /// is dropped.
    fn abandon(&self, why: &str) {
        tracing::debug!(%why, "abandoning a silent channel");
        close(&self.waiting, why);
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

/// One channel to one talk-server. Cheap to clone; the connection ends when the last clone
/// is dropped (after the server answered what it was sent), or once the channel is found
/// dead.
#[derive(Debug, Clone)]
pub struct ChannelConn {
    frames: mpsc::Sender<String>,
    shared: Arc<Shared>,
}

/// `http://host:port` -> `ws://host:port/channel`.
pub fn channel_url(base: &str) -> Result<String, ClientError> {
    let rest = base
        .strip_prefix("http://")
        .map(|r| format!("ws://{r}"))
        .or_else(|| base.strip_prefix("https://").map(|r| format!("wss://{r}")))
        .ok_or_else(|| ClientError::Transport(format!("{base:?} is not an http(s) URL")))?;
    Ok(format!("{}/channel", rest.trim_end_matches('/')))
}

impl ChannelConn {
    /// Opens a channel to the talk-server at `base` (`http://host:port`).
    pub async fn connect(base: &str, timeout: Duration) -> Result<Self, ClientError> {
        let url = channel_url(base)?;
        // Acks are small writes: without TCP_NODELAY, Nagle holds each back.
        let config = WebSocketConfig::default().read_buffer_size(CHANNEL_READ_BUFFER);
        let connect = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
        let (socket, _) = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|e| ClientError::Transport(format!("opening channel to {base}: {e}")))?;
        let (mut sink, mut replies) = socket.split();
        let (frames, mut outbox) = mpsc::channel::<String>(OUTBOX);
        let (pings, mut ping_requests) = mpsc::channel::<()>(1);
        let shared = Arc::new(Shared {
            waiting: Mutex::new(Waiting {
                closed: false,
                sends: HashMap::new(),
                heard: Instant::now(),
                pinged: None,
            }),
            pings,
            tasks: Mutex::default(),
        });

        let on_write_error = shared.clone();
        let writer = tokio::spawn(async move {
            let written = async {
                loop {
                    tokio::select! {
                        first = outbox.recv() => {
                            // Every handle dropped: the server answers what it has, then
                            // closes.
                            let Some(first) = first else { break };
                            // Everything that has gathered, then one flush.
                            sink.feed(Message::Text(first.into())).await?;
                            while let Ok(next) = outbox.try_recv() {
                                sink.feed(Message::Text(next.into())).await?;
                            }
                            sink.flush().await?;
                        }
                        Some(()) = ping_requests.recv() => {
                            sink.send(Message::Ping(Default::default())).await?;
                        }
                    }
                }
                sink.close().await
            };
            if let Err(e) = written.await {
                close(
                    &on_write_error.waiting,
                    &format!("writing to the channel: {e}"),
                );
            }
        });

        let watched = shared.clone();
        let reader = tokio::spawn(async move {
            let mut check = std::pin::pin!(tokio::time::sleep(PING_AFTER));
            let why = loop {
                tokio::select! {
                    reply = replies.next() => match reply {
                        Some(Ok(Message::Text(text))) => answer(&watched.waiting, text.as_bytes()),
                        Some(Ok(Message::Binary(bytes))) => answer(&watched.waiting, &bytes),
                        Some(Ok(Message::Close(frame))) => {
                            break format!("channel closed by the server ({frame:?})");
                        }
                        // A pong, or any other frame: the server is there.
                        Some(Ok(_)) => watched.heard(),
                        Some(Err(e)) => break format!("channel broken: {e}"),
                        None => break "channel ended".to_owned(),
                    },
                    () = &mut check => match watched.keep_alive(Instant::now()) {
                        Ok(next) => check.as_mut().reset(next.into()),
                        Err(why) => {
                            watched.abandon(&why);
                            return;
                        }
                    },
                }
            };
            close(&watched.waiting, &why);
            // Reading on sends the reply to a close frame and ends the connection cleanly.
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                while replies.next().await.is_some() {}
            })
            .await;
        });
        lock(&shared.tasks).extend([writer.abort_handle(), reader.abort_handle()]);
        Ok(Self { frames, shared })
    }

    /// Whether the channel is gone (a new one is needed).
    pub fn is_closed(&self) -> bool {
        self.frames.is_closed() || lock(&self.shared.waiting).closed
    }

    /// Writes one send; the receiver gets its stream sequence once its ack frame arrives,
    /// or the error frame's error, or [`ClientError::Closed`].
    pub async fn send(&self, send: &ChannelSend) -> Result<oneshot::Receiver<Reply>, ClientError> {
        let text = serde_json::to_string(send).map_err(|e| ClientError::Decode(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = lock(&self.shared.waiting);
            if waiting.closed {
                return Err(ClientError::Closed("channel already closed".into()));
            }
            // A retry of a send this channel already carries and talk-server has not
            // answered waits for that frame's answer instead of writing a second one: the
            // first is still in talk-server's window, being published, and a copy behind it
            // only doubles the work of a server already too slow to answer in time (in the
            // throughput bench's open loop, every send retried after a second turned a
            // slow patch into a collapse that never recovered).
            let key = (send.producer.clone(), send.counter);
            if let Some(waiter) = waiting.sends.get_mut(&key) {
                *waiter = Some(tx);
                return Ok(rx);
            }
            waiting.sends.insert(key, Some(tx));
        }
        self.frames
            .send(text)
            .await
            .map_err(|_| ClientError::Closed("channel writer gone".into()))?;
        Ok(rx)
    }

    /// Sends `req` to `room` and waits up to `timeout` for its ack; returns its sequence.
    /// An attempt that times out without a frame from talk-server since it began closes the
    /// channel (unless shorter than [`MIN_SILENT_ATTEMPT`]): every send still waiting on it
    /// gets [`ClientError::Closed`].
    pub async fn send_within(
        &self,
        room: &str,
        req: &SendRequest,
        timeout: Duration,
    ) -> Result<u64, ClientError> {
        let began = Instant::now();
        let send = ChannelSend::new(room, req.clone());
        let answered = tokio::time::timeout(timeout, async {
            let mut reply = self.send(&send).await?;
            // Half the attempt without a word from talk-server: a ping now gives a live one
            // the other half to show itself, so that only a dead channel stays silent
            // through the whole attempt.
            let halfway = (timeout / 2).saturating_sub(began.elapsed());
            let reply = match tokio::time::timeout(halfway, &mut reply).await {
                Ok(reply) => reply,
                Err(_) => {
                    self.shared.ping_unless_heard_since(began);
                    reply.await
                }
            };
            reply.map_err(|_| ClientError::Closed("channel dropped the send".into()))?
        })
        .await;
        match answered {
            Ok(reply) => reply,
            Err(_) => {
                let silent = {
                    // Nobody waits for its answer now, unless a retry has taken its place;
                    // the frame stays known until answered, so that a retry does not write
                    // it again.
                    let mut waiting = lock(&self.shared.waiting);
                    let key = (send.producer, send.counter);
                    if let Some(waiter) = waiting.sends.get_mut(&key)
                        && waiter.as_ref().is_some_and(|tx| tx.is_closed())
                    {
                        *waiter = None;
                    }
                    waiting.heard < began
                };
                if silent && timeout >= MIN_SILENT_ATTEMPT {
                    // Reused, it would fail every attempt until TCP gives up.
                    self.shared
                        .abandon(&format!("talk-server silent through a {timeout:?} attempt"));
                }
                Err(ClientError::Timeout)
            }
        }
    }
}

/// Hands a reply frame to the send it names.
fn answer(waiting: &Mutex<Waiting>, frame: &[u8]) {
    let answered = match serde_json::from_slice::<ChannelReply>(frame) {
        Ok(ChannelReply::Ack {
            producer,
            counter,
            seq,
            ..
        }) => Some(((producer, counter), Ok(seq))),
        Ok(ChannelReply::Error {
            producer: Some(producer),
            counter: Some(counter),
            status,
            error,
            ..
        }) => Some((
            (producer, counter),
            Err(ClientError::Status {
                status,
                code: error.code,
                message: error.message,
            }),
        )),
        Ok(ChannelReply::Error { error, .. }) => {
            tracing::warn!(code = %error.code, message = %error.message, "channel error naming no send");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "unreadable channel reply; ignored");
            None
        }
    };
    let tx = {
        let mut waiting = lock(waiting);
        // Any frame shows the server is there, even one naming no send.
        waiting.heard = Instant::now();
        match &answered {
            Some((key, _)) => waiting.sends.remove(key).flatten(),
            None => None,
        }
    };
    if let (Some(tx), Some((_, outcome))) = (tx, answered) {
        let _ = tx.send(outcome);
    }
}

/// The channel is gone: every send still waiting is indeterminate.
fn close(waiting: &Mutex<Waiting>, why: &str) {
    let sends = {
        let mut waiting = lock(waiting);
        waiting.closed = true;
        std::mem::take(&mut waiting.sends)
    };
    if !sends.is_empty() {
        tracing::debug!(waiting = sends.len(), %why, "channel closed before these acks");
    }
    for tx in sends.into_values().flatten() {
        let _ = tx.send(Err(ClientError::Closed(why.to_owned())));
    }
}

/// One producer's channels, one per talk-server it has sent to; a channel that closed, or
/// that was found silent and closed here, is replaced by a new connection on the next send.
#[derive(Debug, Default)]
pub struct ChannelPool {
    /// Each target's channel behind a lock of its own: opening a channel to a server that
    /// does not answer (a blacked-out zone drops the SYN) takes the whole attempt, and under
    /// one lock for every target the producer's sends to the healthy servers waited for it,
    /// timed out and got those servers ejected too.
    conns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<ChannelConn>>>>>,
}

impl ChannelPool {
    /// One attempt: sends over the channel to `target` (opening it if needed) and waits
    /// for the ack, all within `timeout`.
    pub async fn send_within(
        &self,
        target: &str,
        room: &str,
        req: &SendRequest,
        timeout: Duration,
    ) -> Result<u64, ClientError> {
        let started = Instant::now();
        let slot = lock(&self.conns)
            .entry(target.to_owned())
            .or_default()
            .clone();
        let conn = tokio::time::timeout(timeout, async {
            let mut slot = slot.lock().await;
            match slot.as_ref() {
                Some(conn) if !conn.is_closed() => Ok::<_, ClientError>(conn.clone()),
                _ => {
                    let conn = ChannelConn::connect(target, timeout).await?;
                    *slot = Some(conn.clone());
                    Ok(conn)
                }
            }
        })
        .await
        .map_err(|_| ClientError::Timeout)??;
        conn.send_within(room, req, timeout.saturating_sub(started.elapsed()))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    #[test]
    fn urls() {
        assert_eq!(
            channel_url("http://127.0.0.1:8080/").unwrap(),
            "ws://127.0.0.1:8080/channel"
        );
        assert_eq!(channel_url("https://a:1").unwrap(), "wss://a:1/channel");
        assert!(channel_url("ftp://a").is_err());
    }

    fn req(counter: u64) -> SendRequest {
        SendRequest {
            producer: "p1".into(),
            counter,
            body: "x".into(),
            sent_at_ms: None,
        }
    }

    /// The next send a fake server reads (other frames skipped, pings answered); `None`
    /// once the channel ends.
    async fn next_send<S>(ws: &mut S) -> Option<ChannelSend>
    where
        S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
            + Unpin,
    {
        while let Some(Ok(frame)) = ws.next().await {
            if let Message::Text(t) = frame {
                return Some(serde_json::from_str(&t).unwrap());
            }
        }
        None
    }

    /// The ack frame of `s`, with sequence `seq`.
    fn ack_of(s: ChannelSend, seq: u64) -> Message {
        let ack = ChannelReply::Ack {
            room: s.room,
            producer: s.producer,
            counter: s.counter,
            seq,
            duplicate: false,
        };
        Message::Text(serde_json::to_string(&ack).unwrap().into())
    }

    /// A server that reads `n` sends, acks the odd counters (even ones after the odd),
    /// answers counter 2 with an error, and then drops the connection without a word.
    async fn ack_odd_then_drop(listener: TcpListener, n: usize) {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < n {
            match ws.next().await.unwrap().unwrap() {
                Message::Text(t) => seen.push(serde_json::from_str::<ChannelSend>(&t).unwrap()),
                _ => continue,
            }
        }
        for s in seen.iter().rev() {
            let reply = match s.counter {
                c if c % 2 == 1 => ChannelReply::Ack {
                    room: s.room.clone(),
                    producer: s.producer.clone(),
                    counter: c,
                    seq: 100 + c,
                    duplicate: false,
                },
                2 => ChannelReply::Error {
                    room: Some(s.room.clone()),
                    producer: Some(s.producer.clone()),
                    counter: Some(2),
                    status: 503,
                    error: crate::wire::ErrorDetail {
                        code: "store_error".into(),
                        message: "no".into(),
                    },
                },
                _ => continue,
            };
            ws.send(Message::Text(serde_json::to_string(&reply).unwrap().into()))
                .await
                .unwrap();
        }
        // Dropped without a close frame: as a crashed server or a cut cable.
        drop(ws);
    }

    #[tokio::test]
    async fn sends_whose_channel_drops_before_their_ack_are_indeterminate() {
        let (listener, base) = listen().await;
        let n = 20u64;
        let server = tokio::spawn(ack_odd_then_drop(listener, n as usize));
        let conn = ChannelConn::connect(&base, Duration::from_secs(30))
            .await
            .unwrap();
        let mut replies = Vec::new();
        for c in 1..=n {
            let reply = conn
                .send(&ChannelSend::new("general", req(c)))
                .await
                .unwrap();
            replies.push((c, reply));
        }
        server.await.unwrap();
        for (c, reply) in replies {
            // No timeout anywhere: every send is answered by a frame or by the close.
            match (c, reply.await.unwrap()) {
                (c, Ok(seq)) => assert!(c % 2 == 1 && seq == 100 + c, "{c} acked at {seq}"),
                (2, Err(ClientError::Status { status, code, .. })) => {
                    assert_eq!((status, code.as_str()), (503, "store_error"));
                }
                (c, Err(ClientError::Closed(_))) => assert!(c % 2 == 0, "{c} was acked"),
                (c, Err(e)) => panic!("{c}: unexpected {e}"),
            }
        }
        assert!(conn.is_closed());
        let late = conn.send(&ChannelSend::new("general", req(99))).await;
        assert!(matches!(late, Err(ClientError::Closed(_))), "{late:?}");
    }

    /// A server that accepts TCP connections and never answers the WebSocket handshake (as
    /// one whose zone went dark mid-connect): says when the first connection is in.
    async fn never_answers(listener: TcpListener, accepted: oneshot::Sender<()>) {
        let mut held = Vec::new();
        let mut accepted = Some(accepted);
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
            if let Some(tx) = accepted.take() {
                let _ = tx.send(());
            }
        }
    }

    /// Acks every send on every channel.
    async fn acks_everything(listener: TcpListener) {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(ack_all(tcp));
        }
    }

    /// Acks every send on one channel, with its counter as its sequence.
    async fn ack_all(tcp: tokio::net::TcpStream) {
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        while let Some(s) = next_send(&mut ws).await {
            let seq = s.counter;
            if ws.send(ack_of(s, seq)).await.is_err() {
                return;
            }
        }
    }

    /// A server whose first channel acks one send and then falls silent, as behind a
    /// partition that drops packets without a reset: its socket stays open and nothing more
    /// is read or written on it. Every later channel acks everything. Counts the connections
    /// it accepts.
    async fn first_channel_falls_silent(listener: TcpListener, accepted: Arc<AtomicUsize>) {
        while let Ok((tcp, _)) = listener.accept().await {
            if accepted.fetch_add(1, Ordering::SeqCst) > 0 {
                tokio::spawn(ack_all(tcp));
                continue;
            }
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                let s = next_send(&mut ws).await.unwrap();
                let seq = s.counter;
                ws.send(ack_of(s, seq)).await.unwrap();
                // Held open, never read again: no pong, no ack, no close.
                std::future::pending::<()>().await;
                drop(ws);
            });
        }
    }

    /// A server slow to publish but alive: it reads on (answering pings as it reads them,
    /// as talk-server does) and acks each send `delay` after reading it. Counts the
    /// connections it accepts.
    async fn acks_late(listener: TcpListener, delay: Duration, accepted: Arc<AtomicUsize>) {
        while let Ok((tcp, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                let (mut sink, mut stream) = ws.split();
                let (due, mut acks) = mpsc::unbounded_channel();
                tokio::spawn(async move {
                    while let Some(ack) = acks.recv().await {
                        if sink.send(ack).await.is_err() {
                            return;
                        }
                    }
                });
                while let Some(s) = next_send(&mut stream).await {
                    let due = due.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let seq = s.counter;
                        let _ = due.send(ack_of(s, seq));
                    });
                }
            });
        }
    }

    /// A listener on 127.0.0.1 and its base URL.
    async fn listen() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        (listener, base)
    }

    /// A channel to a server that acked counter 1 on it and then fell silent.
    async fn channel_gone_silent() -> ChannelConn {
        let (listener, base) = listen().await;
        tokio::spawn(first_channel_falls_silent(listener, Arc::default()));
        let conn = ChannelConn::connect(&base, Duration::from_secs(30))
            .await
            .unwrap();
        let acked = conn
            .send_within("general", &req(1), Duration::from_secs(30))
            .await;
        assert_eq!(acked.unwrap(), 1);
        conn
    }

    #[tokio::test]
    async fn sends_waiting_on_a_channel_gone_silent_end_unacknowledged_within_the_silence_limit() {
        let conn = channel_gone_silent().await;
        let silent_since = Instant::now();
        let mut waiting = Vec::new();
        for c in 2..=10 {
            let reply = conn.send(&ChannelSend::new("general", req(c))).await;
            waiting.push(reply.unwrap());
        }
        // No attempt timeout here: only the keepalive can end them.
        for reply in waiting {
            let ended = tokio::time::timeout(SILENCE_LIMIT + Duration::from_secs(2), reply)
                .await
                .expect("a send still waits on a channel silent past the limit");
            assert!(
                matches!(ended, Ok(Err(ClientError::Closed(_)))),
                "{ended:?}"
            );
        }
        let took = silent_since.elapsed();
        assert!(
            took < SILENCE_LIMIT + Duration::from_millis(500),
            "{took:?}"
        );
        assert!(conn.is_closed());
        let late = conn.send(&ChannelSend::new("general", req(11))).await;
        assert!(matches!(late, Err(ClientError::Closed(_))), "{late:?}");
    }

    #[tokio::test]
    async fn an_idle_channel_gone_silent_is_closed_before_a_send_needs_it() {
        let conn = channel_gone_silent().await;
        tokio::time::sleep(SILENCE_LIMIT + Duration::from_millis(500)).await;
        assert!(conn.is_closed(), "a silent idle channel is kept");
    }

    #[tokio::test]
    async fn an_attempt_that_hears_nothing_closes_the_channel_and_ends_every_send_on_it() {
        let conn = channel_gone_silent().await;
        let mut waiting = Vec::new();
        for c in 2..=5 {
            let reply = conn.send(&ChannelSend::new("general", req(c))).await;
            waiting.push(reply.unwrap());
        }
        // Too short to tell anything: the channel stays.
        let short = conn
            .send_within("general", &req(6), MIN_SILENT_ATTEMPT / 2)
            .await;
        assert!(matches!(short, Err(ClientError::Timeout)), "{short:?}");
        assert!(!conn.is_closed());
        // Shorter than PING_AFTER: the attempt alone must find the channel dead.
        let attempt = conn
            .send_within("general", &req(6), Duration::from_millis(500))
            .await;
        assert!(matches!(attempt, Err(ClientError::Timeout)), "{attempt:?}");
        assert!(
            conn.is_closed(),
            "a channel silent through an attempt is kept"
        );
        for reply in waiting {
            let ended = tokio::time::timeout(Duration::from_millis(200), reply)
                .await
                .expect("a send still waits on a channel found dead");
            assert!(
                matches!(ended, Ok(Err(ClientError::Closed(_)))),
                "{ended:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_pool_replaces_a_channel_gone_silent_with_a_new_connection() {
        let (listener, base) = listen().await;
        let accepted = Arc::new(AtomicUsize::new(0));
        tokio::spawn(first_channel_falls_silent(listener, accepted.clone()));
        let pool = ChannelPool::default();
        let long = Duration::from_secs(30);
        let acked = pool.send_within(&base, "general", &req(1), long).await;
        assert_eq!(acked.unwrap(), 1);
        // The partition: one attempt hears nothing.
        let lost = pool
            .send_within(&base, "general", &req(2), Duration::from_millis(500))
            .await;
        assert!(matches!(lost, Err(ClientError::Timeout)), "{lost:?}");
        // The retry (same id) goes on a new connection and is acked there.
        let retried = tokio::time::timeout(
            Duration::from_secs(10),
            pool.send_within(&base, "general", &req(2), Duration::from_secs(5)),
        )
        .await;
        assert!(matches!(retried, Ok(Ok(2))), "{retried:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "connections accepted");
    }

    #[tokio::test]
    async fn a_channel_whose_server_answers_pings_but_acks_late_stays_open() {
        let (listener, base) = listen().await;
        let accepted = Arc::new(AtomicUsize::new(0));
        let delay = SILENCE_LIMIT + Duration::from_secs(1);
        tokio::spawn(acks_late(listener, delay, accepted.clone()));
        let conn = ChannelConn::connect(&base, Duration::from_secs(30))
            .await
            .unwrap();
        let started = Instant::now();
        // An attempt as long as talk-load's gives up first, having heard its ping's pong.
        let first = conn
            .send_within("general", &req(1), Duration::from_secs(1))
            .await;
        assert!(matches!(first, Err(ClientError::Timeout)), "{first:?}");
        assert!(
            !conn.is_closed(),
            "a live channel closed after one slow attempt"
        );
        // The retry waits on the same channel through more than the silence limit.
        let acked = conn
            .send_within("general", &req(1), Duration::from_secs(30))
            .await;
        assert_eq!(acked.unwrap(), 1);
        assert!(started.elapsed() >= delay);
        assert!(!conn.is_closed());
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "connections accepted");
    }

    /// A server that holds its answers until told (reading on meanwhile, so that it answers
    /// pings as talk-server does while its publishes are slow), then acks every frame it
    /// read, and reports what it read when it reads counter 99.
    async fn acks_when_told(
        listener: TcpListener,
        mut go: oneshot::Receiver<()>,
        read: oneshot::Sender<Vec<u64>>,
    ) {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let (mut sink, mut stream) = ws.split();
        let mut told = false;
        let mut held = Vec::new();
        let mut seen = Vec::new();
        let mut read = Some(read);
        loop {
            tokio::select! {
                s = next_send(&mut stream) => {
                    let s = s.unwrap();
                    seen.push(s.counter);
                    if s.counter == 99 {
                        if let Some(read) = read.take() {
                            let _ = read.send(seen.clone());
                        }
                    } else if told {
                        sink.send(ack_of(s, 7)).await.unwrap();
                    } else {
                        held.push(s);
                    }
                }
                _ = &mut go, if !told => {
                    told = true;
                    for s in held.drain(..) {
                        sink.send(ack_of(s, 7)).await.unwrap();
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn a_retry_on_the_channel_still_carrying_the_send_waits_for_its_answer() {
        let (listener, base) = listen().await;
        let (go_tx, go) = oneshot::channel();
        let (read_tx, read) = oneshot::channel();
        tokio::spawn(acks_when_told(listener, go, read_tx));
        let conn = ChannelConn::connect(&base, Duration::from_secs(30))
            .await
            .unwrap();
        // The first attempt gives up before talk-server answers (its ping answered: the
        // channel stays).
        let first = conn
            .send_within("general", &req(1), Duration::from_millis(400))
            .await;
        assert!(matches!(first, Err(ClientError::Timeout)), "{first:?}");
        assert!(!conn.is_closed());
        // The retry, on the same channel: answered by the first frame's ack.
        let retry = conn
            .send(&ChannelSend::new("general", req(1)))
            .await
            .unwrap();
        go_tx.send(()).unwrap();
        assert_eq!(retry.await.unwrap().unwrap(), 7);
        // Once answered, a new attempt writes the send again.
        assert_eq!(
            conn.send_within("general", &req(1), Duration::from_secs(30))
                .await
                .unwrap(),
            7
        );
        conn.send(&ChannelSend::new("general", req(99)))
            .await
            .unwrap();
        assert_eq!(
            read.await.unwrap(),
            vec![1, 1, 99],
            "frames talk-server read"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_channel_still_opening_to_one_server_does_not_hold_sends_to_another() {
        let (dead, dead_base) = listen().await;
        let (accepted_tx, accepted) = oneshot::channel();
        tokio::spawn(never_answers(dead, accepted_tx));
        let (live, live_base) = listen().await;
        tokio::spawn(acks_everything(live));

        let pool = Arc::new(ChannelPool::default());
        let opening = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.send_within(&dead_base, "general", &req(1), Duration::from_secs(600))
                    .await
            })
        };
        // The channel to the dead server is being opened (its handshake unanswered).
        accepted.await.unwrap();
        let sent = tokio::time::timeout(
            Duration::from_secs(20),
            pool.send_within(&live_base, "general", &req(2), Duration::from_secs(600)),
        )
        .await;
        assert!(
            matches!(sent, Ok(Ok(2))),
            "the send to the live server waited for the other's handshake: {sent:?}"
        );
        assert!(!opening.is_finished());
        opening.abort();
    }

    #[tokio::test]
    async fn a_pool_opens_a_new_channel_after_one_dropped() {
        let (listener, base) = listen().await;
        let server = tokio::spawn(async move {
            // First channel: acks counter 1 and drops. Second: acks counter 3.
            for _ in 0..2 {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                let s = next_send(&mut ws).await.unwrap();
                let seq = s.counter;
                ws.send(ack_of(s, seq)).await.unwrap();
                ws.close(None).await.unwrap();
                // Read to the end so that the close handshake completes.
                while let Some(Ok(_)) = ws.next().await {}
            }
        });
        let pool = ChannelPool::default();
        let long = Duration::from_secs(30);
        assert_eq!(
            pool.send_within(&base, "general", &req(1), long)
                .await
                .unwrap(),
            1
        );
        // Until the close is seen, a send may still go to the old channel and be told so.
        let mut counter = 3;
        loop {
            match pool
                .send_within(&base, "general", &req(counter), long)
                .await
            {
                Ok(seq) => {
                    assert_eq!(seq, counter);
                    break;
                }
                Err(ClientError::Closed(_)) => counter += 2,
                Err(e) => panic!("{e}"),
            }
            assert!(counter < 100, "never reconnected");
        }
        server.await.unwrap();
    }
}
