//! talk-server against a real three-server JetStream whose server it is attached to stops
//! answering without closing the connection, as a server does when its node loses power or
//! its network (a zone blackout, a partition): no reset ever arrives. talk-server must
//! notice and go on through another server, not fail every send until the connection
//! times out.

#![allow(clippy::unwrap_used)] // test harness: a panic is the failure report

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use talk::nats::SyncPolicy;

/// Sends t1:`counter` to room general with a 3 s deadline; true when acknowledged.
async fn sent(http: &reqwest::Client, base: &str, counter: u64) -> bool {
    let reply = http
        .post(format!("{base}/rooms/general/messages"))
        .json(&serde_json::json!({"producer": "t1", "counter": counter, "body": "hi"}))
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    matches!(reply, Ok(r) if r.status().is_success())
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// Resumes a stopped server when the test ends, so that the cluster's drop can stop it.
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_gone_silent_is_left_for_another_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(dir.path(), 3, SyncPolicy::Always);
    // Attached to the first server only: it learns the others from the cluster.
    let urls = cluster.client_urls();
    let (_server, base) = start_talk_server(dir.path(), &urls[..1], 3).await;
    let http = reqwest::Client::new();
    let mut counter = 1;
    assert!(sent(&http, &base, counter).await, "the first send failed");

    let silent = cluster.pids()[0];
    signal(silent, "-STOP");
    let _resume = Resume(silent);
    let stopped = Instant::now();
    // Without pings the connection to a silent server is only given up after about two
    // minutes; the bound leaves room for the stream's leader election (up to ~10 s).
    let bound = Duration::from_secs(30);
    loop {
        counter += 1;
        if sent(&http, &base, counter).await {
            break;
        }
        assert!(
            stopped.elapsed() < bound,
            "no send acknowledged in the {bound:?} after the attached server went silent\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "BENCH a_server_gone_silent_is_left_for_another_within_seconds: sends acknowledged \
         again {:.1} s after the attached server went silent",
        stopped.elapsed().as_secs_f64()
    );
}
