//! talk-server's HTTP contract against a real single-server JetStream.

#![allow(clippy::unwrap_used)] // test harness: a panic is the failure report

mod common;

use common::*;
use talk::nats::SyncPolicy;
use talk::wire::{BatchItem, HistoryPage, SendBatchResponse, SendResponse};

/// POSTs `body` to `url`; returns the status and the JSON reply.
async fn post_json(url: String, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn post(base: &str, room: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    post_json(format!("{base}/rooms/{room}/messages"), body).await
}

async fn history(base: &str, room: &str, after: u64, limit: usize) -> HistoryPage {
    reqwest::get(format!(
        "{base}/rooms/{room}/messages?after={after}&limit={limit}"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap()
}

/// Sends t1:`counter` to room general; returns its sequence.
async fn send_general(base: &str, counter: u64) -> u64 {
    let (status, body) = post(
        base,
        "general",
        serde_json::json!({"producer": "t1", "counter": counter, "body": "hi"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let resp: SendResponse = serde_json::from_value(body).unwrap();
    resp.seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_read_and_reject_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(dir.path(), 1, SyncPolicy::ServerDefault);
    let (_server, base) = start_talk_server(dir.path(), &cluster.client_urls(), 1).await;

    let mut seqs = Vec::new();
    for counter in 1..=3u64 {
        seqs.push(send_general(&base, counter).await);
    }
    // (counters, more, last seq) of the page of general after `after`.
    let page_of = |after: u64, limit: usize| {
        let base = base.clone();
        async move {
            let page = history(&base, "general", after, limit).await;
            let counters: Vec<u64> = page.messages.iter().map(|m| m.payload.counter).collect();
            (counters, page.more, page.messages.last().map(|m| m.seq))
        }
    };
    let (c, more, _) = page_of(seqs[0], 10).await;
    assert_eq!((c, more), (vec![2, 3], false));

    // Paging: talk-server keeps a room's read position between pages; every page must be
    // exactly what follows `after`, whether it continues the last page or not.
    assert_eq!(page_of(seqs[2], 10).await, (vec![], false, None));
    for counter in 4..=6u64 {
        send_general(&base, counter).await;
    }
    let (c, more, last) = page_of(seqs[2], 10).await;
    assert_eq!(
        (c, more),
        (vec![4, 5, 6], false),
        "continues after an empty page"
    );
    assert_eq!(page_of(last.unwrap(), 10).await, (vec![], false, None));
    let (c, more, mut at) = page_of(seqs[0], 2).await;
    assert_eq!((c, more), (vec![2, 3], true), "an earlier position");
    let mut rest = Vec::new();
    loop {
        let (c, more, last) = page_of(at.unwrap(), 1).await;
        rest.extend(c);
        at = last.or(at);
        if !more {
            break;
        }
    }
    assert_eq!(rest, vec![4, 5, 6], "one-message pages");
    let (c, _, _) = page_of(0, 100).await;
    assert_eq!(c, vec![1, 2, 3, 4, 5, 6], "from the start again");

    let cases = [
        (
            "Bad.Room",
            serde_json::json!({"producer": "p", "counter": 1, "body": ""}),
            400,
            "bad_room",
        ),
        (
            "ok",
            serde_json::json!({"counter": 1, "body": ""}),
            400,
            "bad_json",
        ),
        (
            "ok",
            serde_json::json!({"producer": "", "counter": 1, "body": ""}),
            400,
            "bad_producer",
        ),
        (
            "ok",
            serde_json::json!({"producer": "p", "counter": 1, "body": "x".repeat(5000)}),
            413,
            "body_too_large",
        ),
        (
            "ok",
            serde_json::json!({"producer": "p", "counter": 1, "body": "x".repeat(20000)}),
            413,
            "request_too_large",
        ),
    ];
    for (room, body, want_status, want_code) in cases {
        let (status, reply) = post(&base, room, body).await;
        assert_eq!(status, want_status, "{reply}");
        assert_eq!(reply["error"]["code"], want_code, "{reply}");
    }
    let r = reqwest::get(format!("{base}/rooms/general/messages?limit=0"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("talk_server_sends_total"), "{metrics}");
}

async fn post_batch(
    base: &str,
    room: &str,
    messages: serde_json::Value,
) -> (u16, serde_json::Value) {
    let body = serde_json::json!({ "messages": messages });
    post_json(format!("{base}/rooms/{room}/messages/batch"), body).await
}

fn batch_of(producer: &str, counters: std::ops::RangeInclusive<u64>) -> serde_json::Value {
    counters
        .map(|c| serde_json::json!({"producer": producer, "counter": c, "body": format!("m{c}")}))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_stored_in_order_answered_per_message_and_rejected_whole_when_bad() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(dir.path(), 1, SyncPolicy::ServerDefault);
    let (_server, base) = start_talk_server(dir.path(), &cluster.client_urls(), 1).await;

    let (status, reply) = post_batch(&base, "batch", batch_of("b1", 1..=50)).await;
    assert_eq!(status, 200, "{reply}");
    let reply: SendBatchResponse = serde_json::from_value(reply).unwrap();
    assert_eq!((reply.failed, reply.results.len()), (0, 50));
    let seqs: Vec<u64> = reply
        .results
        .iter()
        .map(|r| match r {
            BatchItem::Stored {
                seq,
                duplicate: false,
            } => *seq,
            other => panic!("not stored once: {other:?}"),
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // Sent again, the batch is recognised message by message: nothing is stored twice.
    let (status, again) = post_batch(&base, "batch", batch_of("b1", 41..=60)).await;
    assert_eq!(status, 200, "{again}");
    let again: SendBatchResponse = serde_json::from_value(again).unwrap();
    let duplicates: Vec<bool> = again
        .results
        .iter()
        .map(|r| {
            matches!(
                r,
                BatchItem::Stored {
                    duplicate: true,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(duplicates, [vec![true; 10], vec![false; 10]].concat());
    let page = history(&base, "batch", 0, 1000).await;
    let counters: Vec<u64> = page.messages.iter().map(|m| m.payload.counter).collect();
    assert_eq!(
        counters,
        (1..=60).collect::<Vec<_>>(),
        "in order, each once"
    );

    // One bad message rejects the whole batch, with its own error, and stores nothing.
    let mut bad = batch_of("b2", 1..=3);
    bad[1]["producer"] = serde_json::json!("");
    let (status, reply) = post_batch(&base, "batch", bad).await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["error"]["code"], "bad_producer", "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("message 1 of the batch"),
        "{reply}"
    );
    let (status, reply) = post_batch(&base, "batch", batch_of("b3", 1..=257)).await;
    assert_eq!(status, 413, "{reply}");
    assert_eq!(reply["error"]["code"], "batch_too_large", "{reply}");
    let page = history(&base, "batch", seqs[49], 1000).await;
    assert!(
        page.messages.iter().all(|m| m.payload.producer == "b1"),
        "a rejected batch stored {:?}",
        page.messages
    );
}

/// A stream lost under a running server (deleted here; a power cut on unsynced disks does
/// the same) is created again by the first send that finds it gone: the server does not
/// fail every later send, and readers see a stream of a new creation time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_lost_under_the_server_is_created_again() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(dir.path(), 1, SyncPolicy::ServerDefault);
    let (_server, base) = start_talk_server(dir.path(), &cluster.client_urls(), 1).await;
    for counter in 1..=3u64 {
        send_general(&base, counter).await;
    }
    let before = history(&base, "general", 0, 10).await;
    assert_eq!(before.messages.len(), 3);

    let nats = async_nats::connect(cluster.client_urls().join(","))
        .await
        .unwrap();
    assert!(
        async_nats::jetstream::new(nats)
            .delete_stream("TALK")
            .await
            .unwrap()
            .success
    );

    // The first send finds no stream; it fails (the client retries) and sets off the
    // re-creation. Later sends are stored again, from sequence 1 of the new stream.
    let start = std::time::Instant::now();
    let mut statuses = Vec::new();
    let seq = loop {
        let (status, body) = post(
            &base,
            "general",
            serde_json::json!({"producer": "t1", "counter": 4, "body": "hi"}),
        )
        .await;
        statuses.push(status);
        if status == 200 {
            break serde_json::from_value::<SendResponse>(body).unwrap().seq;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "the stream was not created again in 20 s: statuses {statuses:?}, last {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(seq, 1, "statuses {statuses:?}");
    assert_eq!(statuses[0], 503, "the first send found the stream gone");
    let after = history(&base, "general", 0, 10).await;
    assert_eq!(after.messages.len(), 1);
    assert_ne!(after.stream_created, before.stream_created);
}
