//! talk-load's client of talk-server's send channel (`GET /channel`): sends are written
//! without waiting for the acks of those before them, and each is answered by the ack
//! frame that names its message id.
//!
//! A send counts as acknowledged only when its ack frame arrives. When the channel closes
//! or breaks first, every send still waiting gets [`ClientError::Closed`]: indeterminate,
//! as a failed HTTP send is, never acknowledged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
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

type Reply = Result<u64, ClientError>;

/// The sends written to the channel and not answered yet, by message id (producer,
/// counter), with whoever waits for the answer (nobody, once that attempt gave up).
#[derive(Debug, Default)]
struct Waiting {
    /// Set once the channel is gone: no send may wait on it any more.
    closed: bool,
    sends: HashMap<(String, u64), Option<oneshot::Sender<Reply>>>,
}

/// One channel to one talk-server. Cheap to clone; the connection ends when the last clone
/// is dropped (after the server answered what it was sent).
#[derive(Debug, Clone)]
pub struct ChannelConn {
    frames: mpsc::Sender<String>,
    waiting: Arc<Mutex<Waiting>>,
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
        let waiting = Arc::new(Mutex::new(Waiting::default()));

        let on_write_error = waiting.clone();
        tokio::spawn(async move {
            // Everything that has gathered, then one flush.
            let written = async {
                while let Some(first) = outbox.recv().await {
                    sink.feed(Message::Text(first.into())).await?;
                    while let Ok(next) = outbox.try_recv() {
                        sink.feed(Message::Text(next.into())).await?;
                    }
                    sink.flush().await?;
                }
                // Every handle dropped: the server answers what it has, then closes.
                sink.close().await
            };
            if let Err(e) = written.await {
                close(&on_write_error, &format!("writing to the channel: {e}"));
            }
        });

        let on_reply = waiting.clone();
        tokio::spawn(async move {
            let why = loop {
                match replies.next().await {
                    Some(Ok(Message::Text(text))) => answer(&on_reply, text.as_bytes()),
                    Some(Ok(Message::Binary(bytes))) => answer(&on_reply, &bytes),
                    Some(Ok(Message::Close(frame))) => {
                        break format!("channel closed by the server ({frame:?})");
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break format!("channel broken: {e}"),
                    None => break "channel ended".to_owned(),
                }
            };
            close(&on_reply, &why);
            // Reading on sends the reply to a close frame and ends the connection cleanly.
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                while replies.next().await.is_some() {}
            })
            .await;
        });
        Ok(Self { frames, waiting })
    }

    /// Whether the channel is gone (a new one is needed).
    pub fn is_closed(&self) -> bool {
        self.frames.is_closed() || lock(&self.waiting).closed
    }

    /// Writes one send; the receiver gets its stream sequence once its ack frame arrives,
    /// or the error frame's error, or [`ClientError::Closed`].
    pub async fn send(&self, send: &ChannelSend) -> Result<oneshot::Receiver<Reply>, ClientError> {
        let text = serde_json::to_string(send).map_err(|e| ClientError::Decode(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = lock(&self.waiting);
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
    pub async fn send_within(
        &self,
        room: &str,
        req: &SendRequest,
        timeout: Duration,
    ) -> Result<u64, ClientError> {
        let send = ChannelSend::new(room, req.clone());
        let answered = tokio::time::timeout(timeout, async {
            let reply = self.send(&send).await?;
            reply
                .await
                .map_err(|_| ClientError::Closed("channel dropped the send".into()))?
        })
        .await;
        match answered {
            Ok(reply) => reply,
            Err(_) => {
                // Nobody waits for its answer now, unless a retry has taken its place; the
                // frame stays known until answered, so that a retry does not write it again.
                let mut waiting = lock(&self.waiting);
                let key = (send.producer, send.counter);
                if let Some(waiter) = waiting.sends.get_mut(&key)
                    && waiter.as_ref().is_some_and(|tx| tx.is_closed())
                {
                    *waiter = None;
                }
                Err(ClientError::Timeout)
            }
        }
    }
}

/// Hands a reply frame to the send it names.
fn answer(waiting: &Mutex<Waiting>, frame: &[u8]) {
    let reply = match serde_json::from_slice::<ChannelReply>(frame) {
        Ok(reply) => reply,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable channel reply; ignored");
            return;
        }
    };
    let (key, outcome) = match reply {
        ChannelReply::Ack {
            producer,
            counter,
            seq,
            ..
        } => ((producer, counter), Ok(seq)),
        ChannelReply::Error {
            producer: Some(producer),
            counter: Some(counter),
            status,
            error,
            ..
        } => (
            (producer, counter),
            Err(ClientError::Status {
                status,
                code: error.code,
                message: error.message,
            }),
        ),
        ChannelReply::Error { error, .. } => {
            tracing::warn!(code = %error.code, message = %error.message, "channel error naming no send");
            return;
        }
    };
    if let Some(Some(tx)) = lock(waiting).sends.remove(&key) {
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

/// One producer's channels, one per talk-server it has sent to; a channel that closed is
/// opened again on the next send.
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

    type ServerSide = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

    /// The next send a fake server reads (other frames skipped); `None` once the channel
    /// ends.
    async fn next_send(ws: &mut ServerSide) -> Option<ChannelSend> {
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
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
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
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                while let Some(s) = next_send(&mut ws).await {
                    let seq = s.counter;
                    if ws.send(ack_of(s, seq)).await.is_err() {
                        return;
                    }
                }
            });
        }
    }

    /// A server that holds its answers until told, then acks every frame it read, and
    /// reports what it read when it reads counter 99.
    async fn acks_when_told(
        listener: TcpListener,
        go: oneshot::Receiver<()>,
        read: oneshot::Sender<Vec<u64>>,
    ) {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let mut go = Some(go);
        let mut seen = Vec::new();
        let mut read = Some(read);
        loop {
            let s = next_send(&mut ws).await.unwrap();
            seen.push(s.counter);
            if s.counter == 99 {
                if let Some(read) = read.take() {
                    let _ = read.send(seen.clone());
                }
                continue;
            }
            if let Some(go) = go.take() {
                go.await.unwrap();
            }
            ws.send(ack_of(s, 7)).await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_retry_on_the_channel_still_carrying_the_send_waits_for_its_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (go_tx, go) = oneshot::channel();
        let (read_tx, read) = oneshot::channel();
        tokio::spawn(acks_when_told(listener, go, read_tx));
        let conn = ChannelConn::connect(&base, Duration::from_secs(30))
            .await
            .unwrap();
        // The first attempt gives up before talk-server answers.
        let first = conn
            .send_within("general", &req(1), Duration::from_millis(50))
            .await;
        assert!(matches!(first, Err(ClientError::Timeout)), "{first:?}");
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
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_base = format!("http://{}", dead.local_addr().unwrap());
        let (accepted_tx, accepted) = oneshot::channel();
        tokio::spawn(never_answers(dead, accepted_tx));
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_base = format!("http://{}", live.local_addr().unwrap());
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
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
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
