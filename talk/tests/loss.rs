//! The checker against real JetStream clusters: a durable configuration
//! loses nothing when a server dies; a weak one visibly loses messages.

#![allow(clippy::unwrap_used)] // test harness: a panic is the failure report

mod common;

use std::time::Duration;

use common::*;
use talk::nats::SyncPolicy;

/// Replication 3, fsync always: kill the stream leader mid-load; no
/// acknowledged message may be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_cluster_loses_nothing_when_a_server_dies() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = start_cluster(dir.path(), 3, SyncPolicy::Always);
    let urls = cluster.client_urls();
    let (_server, base) = start_talk_server(dir.path(), &urls, 3).await;
    let report_path = dir.path().join("report.json");
    let mut load = start_load(&[base], "12s", 150, &report_path, &[]);

    tokio::time::sleep(Duration::from_secs(4)).await;
    let leader = stream_leader(&urls).await;
    let victim = cluster.index_of(&leader).unwrap();
    cluster.kill(victim).unwrap();
    eprintln!("killed stream leader {leader}");

    let status = load.wait(Duration::from_secs(150));
    assert!(status.success(), "talk-load failed: {status}");
    let report = read_report(&report_path);
    eprintln!("{report:#}");
    assert_eq!(
        report["complete"],
        true,
        "drain incomplete:\n{}",
        cluster.logs()
    );
    assert!(
        total(&report, "acked") > 500,
        "too little load to mean anything"
    );
    assert_eq!(total(&report, "lost"), 0, "acknowledged messages lost");
    assert_eq!(total(&report, "duplicated"), 0);
    assert_eq!(total(&report, "unexpected"), 0);
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

    let status = load.wait(Duration::from_secs(150));
    assert!(status.success(), "talk-load failed: {status}");
    let report = read_report(&report_path);
    eprintln!("{report:#}");
    assert_eq!(
        report["complete"],
        true,
        "drain incomplete:\n{}",
        cluster.logs()
    );
    assert!(
        total(&report, "lost") > 0,
        "the checker did not see the loss of a wiped R1 stream"
    );
}
