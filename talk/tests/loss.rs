//! The checker against real JetStream clusters: a durable configuration
//! loses nothing when a server dies; a weak one visibly loses messages.

#![allow(clippy::unwrap_used)] // test harness: a panic is the failure report

mod common;

use std::time::Duration;

use common::*;
use talk::nats::SyncPolicy;

/// Replication 3, fsync always: kill the stream leader mid-load (talk-load at `rate` with
/// `extra` flags); no acknowledged message may be lost or stored twice.
async fn leader_killed_under_load(rate: u32, extra: &[&str], min_acked: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = start_cluster(dir.path(), 3, SyncPolicy::Always);
    let urls = cluster.client_urls();
    let (_server, base) = start_talk_server(dir.path(), &urls, 3).await;
    let report_path = dir.path().join("report.json");
    let mut load = start_load(&[base], "12s", rate, &report_path, extra);

    tokio::time::sleep(Duration::from_secs(4)).await;
    let leader = stream_leader(&urls).await;
    let victim = cluster.index_of(&leader).unwrap();
    cluster.kill(victim).unwrap();
    eprintln!("killed stream leader {leader}");

    let report = drained_report(&mut load, &report_path, &cluster);
    assert!(
        total(&report, "acked") > min_acked,
        "too little load to mean anything"
    );
    assert_eq!(total(&report, "lost"), 0, "acknowledged messages lost");
    assert_eq!(total(&report, "duplicated"), 0);
    assert_eq!(total(&report, "unexpected"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_cluster_loses_nothing_when_a_server_dies() {
    leader_killed_under_load(150, &["--transport", "http"], 500).await;
}

/// The same over send channels (talk-load's default, named here all the same): every
/// message acknowledged by an ack frame is read back, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_cluster_loses_nothing_under_channel_load_when_a_server_dies() {
    leader_killed_under_load(300, &["--transport", "channel"], 1000).await;
}

/// Replication 1: kill the stream's only server, remove its data
/// directory, restart it. The checker must report the loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreplicated_stream_loses_acked_messages_with_its_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = start_cluster(dir.path(), 3, SyncPolicy::ServerDefault);
    let urls = cluster.client_urls();
    let (_server, base) = start_talk_server(dir.path(), &urls, 1).await;
    let report_path = dir.path().join("report.json");
    let mut load = start_load(&[base], "12s", 150, &report_path, &[]);

    tokio::time::sleep(Duration::from_secs(4)).await;
    let leader = stream_leader(&urls).await;
    let victim = cluster.index_of(&leader).unwrap();
    cluster.kill(victim).unwrap();
    cluster.wipe_data(victim).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.restart(victim).unwrap();
    eprintln!("wiped and restarted stream leader {leader}");

    let report = drained_report(&mut load, &report_path, &cluster);
    assert!(
        total(&report, "lost") > 0,
        "the checker did not see the loss of a wiped R1 stream"
    );
}

/// GETs talk-load's `path` as JSON, retrying while it is not up yet.
async fn get_json(base: &str, path: &str) -> serde_json::Value {
    let http = reqwest::Client::new();
    let start = std::time::Instant::now();
    loop {
        match http.get(format!("{base}{path}")).send().await {
            Ok(r) if r.status().is_success() => return r.json().await.unwrap(),
            Ok(r) if start.elapsed() > Duration::from_secs(60) => {
                panic!(
                    "{path}: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                )
            }
            Err(e) if start.elapsed() > Duration::from_secs(60) => panic!("{path}: {e}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Replication 1, its disk wiped mid-run: the live count misses every message its reader
/// had already read, a verification read (`GET /verify`) finds them, and one taken before
/// the wipe found nothing, so the difference is the loss of the interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_read_finds_what_was_read_and_then_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = start_cluster(dir.path(), 3, SyncPolicy::ServerDefault);
    let urls = cluster.client_urls();
    let (_server, base) = start_talk_server(dir.path(), &urls, 1).await;
    let sli = format!("127.0.0.1:{}", free_port());
    let report_path = dir.path().join("report.json");
    let _load = start_load(
        &[base],
        "60s",
        150,
        &report_path,
        &["--sli-listen", &sli, "--check-interval", "500ms"],
    );
    let sli = format!("http://{sli}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = get_json(&sli, "/verify").await;
    eprintln!("before the wipe: {before}");
    assert_eq!(before["lostMessages"], 0, "{before}");
    assert!(
        before["checkedMessages"].as_u64().unwrap() > 100,
        "{before}"
    );

    let leader = stream_leader(&urls).await;
    let victim = cluster.index_of(&leader).unwrap();
    cluster.kill(victim).unwrap();
    cluster.wipe_data(victim).unwrap();
    cluster.restart(victim).unwrap();
    eprintln!("wiped and restarted stream leader {leader}");
    tokio::time::sleep(Duration::from_secs(5)).await;

    let live = get_json(&sli, "/sli").await["lostMessages"]
        .as_u64()
        .unwrap();
    let after = get_json(&sli, "/verify").await;
    eprintln!("after the wipe: live lost {live}, verification {after}");
    let verified = after["lostMessages"].as_u64().unwrap();
    let read_before = before["checkedMessages"].as_u64().unwrap();
    assert!(
        verified >= read_before,
        "the verification found {verified} lost, fewer than the {read_before} stored before \
         the wipe: {after}"
    );
    assert!(
        verified > live,
        "the verification ({verified}) saw no more than the live count ({live})"
    );
}
