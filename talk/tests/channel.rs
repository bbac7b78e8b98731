//! The send channel (`GET /channel`) against real JetStream: bad frames are answered, not
//! fatal; a talk-server killed or stopped under channel load loses no acknowledged message.
//! (A nats-server killed under channel load: tests/loss.rs.)

#![allow(clippy::unwrap_used)] // test harness: a panic is the failure report

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use talk::nats::SyncPolicy;
use talk::wire::{ChannelReply, HistoryPage};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next reply frame (30 s at most).
async fn reply(ws: &mut Socket) -> ChannelReply {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("no reply within 30 s")
            .expect("channel ended")
            .unwrap();
        match frame {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Close(c) => panic!("channel closed: {c:?}"),
            _ => {}
        }
    }
}

fn error_code(reply: &ChannelReply) -> (Option<u64>, u16, String) {
    match reply {
        ChannelReply::Error {
            counter,
            status,
            error,
            ..
        } => (*counter, *status, error.code.clone()),
        ChannelReply::Ack { .. } => panic!("expected an error frame, got {reply:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_are_answered_and_the_channel_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(dir.path(), 1, SyncPolicy::ServerDefault);
    let (_server, base) = start_talk_server(dir.path(), &cluster.client_urls(), 1).await;
    let url = talk::load::channel::channel_url(&base).unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();

    let send = |frame: String| Message::Text(frame.into());
    ws.send(send("not json".into())).await.unwrap();
    let (counter, status, code) = error_code(&reply(&mut ws).await);
    assert_eq!((counter, status, code.as_str()), (None, 400, "bad_json"));

    ws.send(send(
        r#"{"room":"No.Room","producer":"t1","counter":1,"body":"hi"}"#.into(),
    ))
    .await
    .unwrap();
    let (counter, status, code) = error_code(&reply(&mut ws).await);
    assert_eq!((counter, status, code.as_str()), (Some(1), 400, "bad_room"));

    // Over --max-request-bytes (16 KiB), under the channel's hard limit.
    let big = "x".repeat(20_000);
    ws.send(send(format!(
        r#"{{"room":"general","producer":"t1","counter":2,"body":"{big}"}}"#
    )))
    .await
    .unwrap();
    let (counter, status, code) = error_code(&reply(&mut ws).await);
    assert_eq!(
        (counter, status, code.as_str()),
        (Some(2), 413, "request_too_large")
    );

    // Still open: a good send is stored, and sent again it is the same message.
    let good = r#"{"room":"general","producer":"t1","counter":3,"body":"hi"}"#;
    ws.send(send(good.into())).await.unwrap();
    let first = reply(&mut ws).await;
    let ChannelReply::Ack {
        seq,
        duplicate: false,
        counter: 3,
        ..
    } = first
    else {
        panic!("expected an ack of t1:3, got {first:?}");
    };
    ws.send(send(good.into())).await.unwrap();
    let again = reply(&mut ws).await;
    assert!(
        matches!(again, ChannelReply::Ack { seq: s, duplicate: true, .. } if s == seq),
        "{again:?}"
    );

    let page: HistoryPage = reqwest::get(format!("{base}/rooms/general/messages"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 1, "{page:?}");
    assert_eq!(page.messages[0].seq, seq);

    // Counted as HTTP sends are.
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"talk_server_sends_total{outcome="Acked"} 1"#,
        r#"talk_server_sends_total{outcome="Duplicate"} 1"#,
        r#"talk_server_errors_total{code="bad_json"} 1"#,
        r#"talk_server_errors_total{code="request_too_large"} 1"#,
        "talk_server_channels 1",
    ] {
        assert!(metrics.contains(line), "no {line:?} in\n{metrics}");
    }
    ws.close(None).await.unwrap();

    // A plain GET is told what the endpoint is, in the API's error shape.
    let plain = reqwest::get(format!("{base}/channel")).await.unwrap();
    assert_eq!(plain.status().as_u16(), 426);
    let body: serde_json::Value = plain.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_websocket", "{body}");
}

/// talk-load's keepalive closes a channel silent for `SILENCE_LIMIT`: a live talk-server's
/// channel must stay open through a longer idle spell, its pongs proving it alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_channel_to_a_live_talk_server_stays_open_on_its_pongs() {
    use talk::load::channel::{ChannelConn, PING_AFTER, SILENCE_LIMIT};
    use talk::wire::SendRequest;

    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(dir.path(), 1, SyncPolicy::ServerDefault);
    let (_server, base) = start_talk_server(dir.path(), &cluster.client_urls(), 1).await;
    let conn = ChannelConn::connect(&base, Duration::from_secs(30))
        .await
        .unwrap();
    let req = |counter: u64| SendRequest {
        producer: "idle".into(),
        counter,
        body: "hi".into(),
        sent_at_ms: None,
    };
    let long = Duration::from_secs(30);
    conn.send_within("general", &req(1), long).await.unwrap();
    tokio::time::sleep(SILENCE_LIMIT + PING_AFTER).await;
    assert!(
        !conn.is_closed(),
        "a live talk-server's idle channel was closed"
    );
    conn.send_within("general", &req(2), long).await.unwrap();
    assert!(!conn.is_closed());
}

/// Two talk-servers; the one half the producers' channels lead to is killed mid-pipeline.
/// Its channels break with sends unanswered: each ends indeterminate or acknowledged by a
/// retry (same message id) on the other server, and nothing acknowledged is lost or stored
/// twice. (That a send cut off is never counted acknowledged without its ack frame is
/// shown exactly, against a fake server, in talk-load's generator tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_talk_server_killed_mid_pipeline_loses_no_acknowledged_send() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(dir.path(), 3, SyncPolicy::Always);
    let urls = cluster.client_urls();
    let (mut doomed, first) = start_talk_server(dir.path(), &urls, 3).await;
    let (_other, second) = start_talk_server(dir.path(), &urls, 3).await;
    let report_path = dir.path().join("report.json");
    let mut load = start_load(
        &[first, second],
        "10s",
        300,
        &report_path,
        &["--transport", "channel"],
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    doomed.child.kill().unwrap();
    eprintln!("killed a talk-server");

    let report = drained_report(&mut load, &report_path, &cluster);
    let (sent, acked) = (total(&report, "sent"), total(&report, "acked"));
    assert!(acked > 1000, "too little load to mean anything");
    assert_eq!(
        acked + total(&report, "indeterminate"),
        sent,
        "every send ends acknowledged or indeterminate"
    );
    assert_eq!(total(&report, "lost"), 0, "acknowledged messages lost");
    assert_eq!(total(&report, "duplicated"), 0);
    assert_eq!(total(&report, "unexpected"), 0);
}

/// SIGTERM with sends in flight on a channel: talk-server answers every send it read and
/// closes the channel with a close frame (a client can tell that from a crash), and every
/// ack it gave is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_talk_server_answers_what_it_read_and_closes_the_channel() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(dir.path(), 1, SyncPolicy::ServerDefault);
    let (mut server, base) = start_talk_server(dir.path(), &cluster.client_urls(), 1).await;
    let url = talk::load::channel::channel_url(&base).unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let frame = |counter: u64| {
        Message::Text(
            format!(r#"{{"room":"general","producer":"t1","counter":{counter},"body":"hi"}}"#)
                .into(),
        )
    };
    // One round trip first, so that the channel is surely open in talk-server.
    ws.send(frame(1)).await.unwrap();
    assert!(matches!(reply(&mut ws).await, ChannelReply::Ack { .. }));
    let n = 300;
    for counter in 2..=n {
        ws.feed(frame(counter)).await.unwrap();
    }
    ws.flush().await.unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let mut acked = vec![1];
    let mut errors = 0;
    let closed_cleanly = loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => match serde_json::from_str(&text).unwrap() {
                ChannelReply::Ack { counter, .. } => acked.push(counter),
                ChannelReply::Error { .. } => errors += 1,
            },
            Ok(Some(Ok(Message::Close(_)))) => break true,
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => {
                eprintln!("channel broke: {e}");
                break false;
            }
            Ok(None) => break false,
            Err(_) => panic!("talk-server neither answered nor closed in 30 s"),
        }
    };
    assert!(closed_cleanly, "the channel ended without a close frame");
    server.wait(Duration::from_secs(30));
    eprintln!("{} acked, {errors} errors before the close", acked.len());

    // Every ack is in the room, once (read through another talk-server).
    let (_reader, base) = start_talk_server(dir.path(), &cluster.client_urls(), 1).await;
    let page: HistoryPage = reqwest::get(format!("{base}/rooms/general/messages?limit=1000"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut stored: Vec<u64> = page.messages.iter().map(|m| m.payload.counter).collect();
    stored.sort_unstable();
    let before = stored.len();
    stored.dedup();
    assert_eq!(before, stored.len(), "stored twice");
    for counter in acked {
        assert!(
            stored.binary_search(&counter).is_ok(),
            "t1:{counter} acked, not stored"
        );
    }
}
