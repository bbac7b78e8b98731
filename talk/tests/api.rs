//! talk-server's HTTP contract against a real single-server JetStream.

#![allow(clippy::unwrap_used)] // test harness: a panic is the failure report

mod common;

use common::*;
use talk::nats::SyncPolicy;
use talk::wire::{HistoryPage, SendResponse};

async fn post(base: &str, room: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/rooms/{room}/messages"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_read_and_reject_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(dir.path(), 1, SyncPolicy::ServerDefault);
    let (_server, base) = start_talk_server(dir.path(), &cluster.client_urls(), 1).await;

    let mut seqs = Vec::new();
    for counter in 1..=3u64 {
        let (status, body) = post(
            &base,
            "general",
            serde_json::json!({"producer": "t1", "counter": counter, "body": "hi"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let resp: SendResponse = serde_json::from_value(body).unwrap();
        seqs.push(resp.seq);
    }
    let page: HistoryPage = reqwest::get(format!(
        "{base}/rooms/general/messages?after={}&limit=10",
        seqs[0]
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let counters: Vec<u64> = page.messages.iter().map(|m| m.payload.counter).collect();
    assert_eq!(counters, vec![2, 3]);
    assert!(!page.more);

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
