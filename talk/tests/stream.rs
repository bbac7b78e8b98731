//! talk-server's live stream (Server-Sent Events) against a real three-server JetStream:
//! messages arrive in order with their stream sequences as event ids, and a reconnect
//! with the last seen id resumes with neither a gap nor a duplicate, also when the
//! server-side consumer is reset before it delivered anything.

#![allow(clippy::unwrap_used)] // test harness: a panic is the failure report

mod common;

use std::time::Duration;

use common::*;
use talk::nats::SyncPolicy;
use talk::wire::{SendResponse, StoredMessage};

/// One parsed SSE event.
#[derive(Debug)]
struct SseEvent {
    id: Option<String>,
    event: String,
    data: String,
}

/// A minimal SSE reader over a streaming reqwest response.
struct SseStream {
    resp: reqwest::Response,
    buf: String,
}

impl SseStream {
    async fn open(base: &str, room: &str, query: &str, last_event_id: Option<u64>) -> Self {
        let mut req = reqwest::Client::new().get(format!("{base}/rooms/{room}/stream{query}"));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "opening the stream");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
        Self {
            resp,
            buf: String::new(),
        }
    }

    /// The next event that is not a keep-alive comment; panics after `timeout`.
    async fn next(&mut self, timeout: Duration) -> SseEvent {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = SseEvent {
                    id: None,
                    event: "message".into(),
                    data: String::new(),
                };
                let mut any = false;
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "" => {} // comment (keep-alive)
                        "id" => (ev.id, any) = (Some(value.to_owned()), true),
                        "event" => (ev.event, any) = (value.to_owned(), true),
                        "data" => {
                            if !ev.data.is_empty() {
                                ev.data.push('\n');
                            }
                            ev.data.push_str(value);
                            any = true;
                        }
                        _ => {}
                    }
                }
                if any {
                    return ev;
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .unwrap_or_else(|_| {
                    panic!("no SSE event within {timeout:?}; buffered {:?}", self.buf)
                })
                .unwrap()
                .expect("stream ended");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next message event, decoded; its id must equal its sequence.
    async fn next_message(&mut self) -> StoredMessage {
        let ev = self.next(Duration::from_secs(15)).await;
        assert_eq!(ev.event, "message", "{ev:?}");
        let msg: StoredMessage = serde_json::from_str(&ev.data).unwrap();
        assert_eq!(ev.id, Some(msg.seq.to_string()), "event id is the sequence");
        msg
    }

    /// No message event arrives within `wait` (keep-alives are fine).
    async fn expect_quiet(&mut self, wait: Duration) {
        if let Ok(ev) = tokio::time::timeout(wait, self.next(wait + Duration::from_secs(1))).await {
            panic!("unexpected event {ev:?}");
        }
    }
}

async fn send(base: &str, room: &str, producer: &str, counter: u64) -> u64 {
    let r = reqwest::Client::new()
        .post(format!("{base}/rooms/{room}/messages"))
        .json(&serde_json::json!({"producer": producer, "counter": counter, "body": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let resp: SendResponse = r.json().await.unwrap();
    assert!(!resp.duplicate);
    resp.seq
}

/// Asserts the next messages on `stream` are exactly `(counter, seq)` of `want`, in order.
async fn expect_messages(stream: &mut SseStream, producer: &str, want: &[(u64, u64)]) {
    for &(counter, seq) in want {
        let m = stream.next_message().await;
        assert_eq!(
            (m.payload.producer.as_str(), m.payload.counter, m.seq),
            (producer, counter, seq),
            "want {producer}:{counter}@{seq} next"
        );
        assert_eq!(m.payload.room, "live");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_stream_is_ordered_and_resumes_without_gaps_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(dir.path(), 3, SyncPolicy::ServerDefault);
    let urls = cluster.client_urls();
    // Two talk-servers: a reconnect may land on another one and must resume the same.
    let (_a, base_a) = start_talk_server(dir.path(), &urls, 3).await;
    let (_b, base_b) = start_talk_server(dir.path(), &urls, 3).await;

    // Something stored before the subscription: a fresh stream shows only what is new.
    send(&base_a, "live", "old", 1).await;
    let mut stream = SseStream::open(&base_a, "live", "", None).await;

    let mut sent = Vec::new();
    for counter in 1..=5 {
        // Another room in between: the stream of "live" must not show it.
        send(&base_a, "elsewhere", "noise", counter).await;
        sent.push((counter, send(&base_a, "live", "p", counter).await));
    }
    assert!(sent.windows(2).all(|w| w[0].1 < w[1].1));
    expect_messages(&mut stream, "p", &sent).await;
    let last_seen = sent[4].1;
    drop(stream);

    // Sent while nobody listens.
    let mut missed = Vec::new();
    for counter in 6..=8 {
        missed.push((counter, send(&base_a, "live", "p", counter).await));
    }

    // Reconnect to the other server the way EventSource does: the original URL (here
    // ?after=0, i.e. "only new") plus Last-Event-ID. The header wins.
    let mut resumed = SseStream::open(&base_b, "live", "?after=0", Some(last_seen)).await;
    expect_messages(&mut resumed, "p", &missed).await;
    let mut live = Vec::new();
    for counter in 9..=10 {
        live.push((counter, send(&base_a, "live", "p", counter).await));
    }
    expect_messages(&mut resumed, "p", &live).await;
    resumed.expect_quiet(Duration::from_secs(2)).await;
    drop(resumed);

    // ?after= resumes the same way without the header.
    let mut by_query =
        SseStream::open(&base_a, "live", &format!("?after={}", missed[2].1), None).await;
    expect_messages(&mut by_query, "p", &live).await;
    by_query.expect_quiet(Duration::from_secs(1)).await;

    // A Last-Event-ID that is not a sequence is refused, not read as "from the start".
    let r = reqwest::Client::new()
        .get(format!("{base_a}/rooms/live/stream"))
        .header("Last-Event-ID", "abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_last_event_id", "{body}");
}

/// async-nats recreates an ordered consumer that has delivered nothing yet from the
/// stream's first message. A stream resumed with `?after=` whose consumer is reset before
/// anything new arrives must still send only what comes after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_reset_before_the_first_message_replays_nothing_old() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(dir.path(), 1, SyncPolicy::ServerDefault);
    let urls = cluster.client_urls();
    let (_server, base) = start_talk_server(dir.path(), &urls, 1).await;

    send(&base, "live", "old", 1).await;
    let last = send(&base, "live", "old", 2).await;
    let mut stream = SseStream::open(&base, "live", &format!("?after={last}"), None).await;

    // Delete the stream's consumers behind the client's back: its ordered consumer
    // notices and recreates itself, having delivered nothing.
    let client = async_nats::connect(urls.join(",")).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let talk = js.get_stream("TALK").await.unwrap();
    let names: Vec<String> = futures_util::TryStreamExt::try_collect(talk.consumer_names())
        .await
        .unwrap();
    assert!(!names.is_empty(), "the stream's consumer should exist");
    for name in &names {
        talk.delete_consumer(name).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let new = send(&base, "live", "p", 1).await;
    expect_messages(&mut stream, "p", &[(1, new)]).await;
}
