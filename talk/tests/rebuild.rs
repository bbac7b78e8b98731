//! History reads while a replica rebuilds from its peers after losing its disk. JetStream
//! places the consumer that reads a page on any replica and reads that replica's copy, so
//! a read can be served by the rebuilding one, which holds a prefix of the stream; a
//! check that counts such a read as the stream's content reports acknowledged messages
//! lost that are not (a cluster game day's disk loss did: 4,214 "lost"). A read
//! `from=leader` is served by the stream leader, which holds every acknowledged message.

#![allow(clippy::unwrap_used)] // test harness: a panic is the failure report

mod common;

use std::time::{Duration, Instant};

use common::*;
use talk::nats::SyncPolicy;
use talk::wire::HistoryPage;

const ROOM: &str = "rebuild";
const BATCH: u64 = 250;
const MESSAGES: u64 = 30_000;

/// Every message of the room, read page by page from `from`; and the servers that served.
async fn read_room(
    http: &reqwest::Client,
    base: &str,
    from: &str,
) -> Result<(Vec<u64>, Vec<String>), String> {
    let (mut counters, mut served_by) = (Vec::new(), Vec::new());
    let mut after = 0;
    loop {
        let resp = http
            .get(format!(
                "{base}/rooms/{ROOM}/messages?after={after}&limit=1000&from={from}"
            ))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(resp.text().await.unwrap_or_default());
        }
        let page: HistoryPage = resp.json().await.map_err(|e| e.to_string())?;
        counters.extend(page.messages.iter().map(|m| m.payload.counter));
        served_by.extend(page.served_by.clone());
        after = page.messages.last().map_or(after, |m| m.seq);
        if !page.more {
            return Ok((counters, served_by));
        }
    }
}

/// The counters of `whole` that `read` lacks, and how many it holds twice. (The order is
/// not checked: a batch's sends are acknowledged one by one, not stored as a block.)
fn compare(read: &[u64], whole: &[u64]) -> (Vec<u64>, usize) {
    let held: std::collections::HashSet<u64> = read.iter().copied().collect();
    let missing = whole
        .iter()
        .copied()
        .filter(|c| !held.contains(c))
        .collect();
    (missing, read.len() - held.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_from_the_leader_is_whole_while_a_wiped_replica_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = start_cluster(dir.path(), 3, SyncPolicy::Always);
    let urls = cluster.client_urls();
    let (_server, base) = start_talk_server(dir.path(), &urls, 3).await;
    let http = reqwest::Client::new();

    for first in (1..=MESSAGES).step_by(BATCH as usize) {
        let messages: Vec<_> = (first..first + BATCH)
            .map(|c| serde_json::json!({"producer": "p", "counter": c, "body": format!("{c:0>2000}")}))
            .collect();
        let resp = http
            .post(format!("{base}/rooms/{ROOM}/messages/batch"))
            .json(&serde_json::json!({ "messages": messages }))
            .send()
            .await
            .unwrap();
        let reply: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(reply["failed"], 0, "{reply}");
    }
    let whole: Vec<u64> = (1..=MESSAGES).collect();

    // A follower loses its disk and comes back empty.
    let leader = stream_leader(&urls).await;
    let leader_index = cluster.index_of(&leader).unwrap();
    let victim = (0..3).find(|&i| i != leader_index).unwrap();
    cluster.kill(victim).unwrap();
    cluster.wipe_data(victim).unwrap();
    cluster.restart(victim).unwrap();
    let wiped_at = Instant::now();
    eprintln!("server {victim} wiped and restarted; the leader is {leader}");

    // Read the room again and again while the replica rebuilds, from the leader and, for
    // comparison, from whichever replica a consumer lands on.
    let (mut leader_reads, mut any_reads, mut any_short, mut fewest) = (0, 0, 0, MESSAGES);
    while wiped_at.elapsed() < Duration::from_secs(15) {
        if let Ok((counters, _)) = read_room(&http, &base, "any").await {
            any_reads += 1;
            let read = counters.len() as u64;
            if read < MESSAGES {
                any_short += 1;
                fewest = fewest.min(read);
            }
        }
        match read_room(&http, &base, "leader").await {
            Ok((counters, served_by)) => {
                leader_reads += 1;
                let (missing, duplicated) = compare(&counters, &whole);
                assert!(
                    missing.is_empty() && duplicated == 0,
                    "a read from the leader {:.1}s after the wipe: {} read, {} missing \
                     (first {:?}), {duplicated} duplicated; served by {:?}",
                    wiped_at.elapsed().as_secs_f64(),
                    counters.len(),
                    missing.len(),
                    missing.first(),
                    served_by
                );
                assert!(
                    served_by.iter().all(|s| *s == leader),
                    "served by {served_by:?}, not only the leader {leader}"
                );
            }
            // Twelve consumers that all miss the leader: the caller reads again.
            Err(e) => eprintln!("a read from the leader failed: {e}"),
        }
    }
    eprintln!(
        "in 15 s after the wipe: {leader_reads} reads from the leader, all whole; \
         {any_short} of {any_reads} reads from any replica short (fewest {fewest} of {MESSAGES})"
    );
    assert!(leader_reads > 0, "no whole read from the leader in 15 s");
}
