//! `talk` probes against a local server serving talk-load's SLI document.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use firedrill_core::api::{Probe, TalkSli};
use firedrill_core::engine::Outcome;
use firedrill_probes::Prober;
use serde_json::{Value, json};

/// Serves `/sli` whose `sent` and `acked` grow with every request, so a test that passes
/// must really have read the document.
async fn serve() -> SocketAddr {
    let requests = Arc::new(AtomicU64::new(0));
    let sli = move || {
        let requests = Arc::clone(&requests);
        async move {
            let n = requests.fetch_add(1, Ordering::Relaxed) + 1;
            axum::Json(json!({
                "deliverySuccessRatio": 0.9875,
                "p50LatencyMs": 3.25,
                "p99LatencyMs": 48.5,
                "lostMessages": 0,
                "duplicatedMessages": 7,
                "sent": 1000 * n,
                "acked": 990 * n,
                "failed": 10 * n,
                "windowSeconds": 30.0,
            }))
        }
    };
    let app = Router::new()
        .route("/sli", get(sli))
        .route(
            "/partial",
            get(|| async { axum::Json(json!({"p99LatencyMs": "48.5", "lostMessages": null})) }),
        )
        .route("/list", get(|| async { axum::Json(json!([1, 2])) }))
        .route("/text", get(|| async { "not json" }))
        .route(
            "/down",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "{}") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn probe(url: &str, sli: TalkSli) -> Probe {
    let sli: Value = serde_json::to_value(sli).expect("sli");
    serde_json::from_value(json!({
        "name": "talk",
        "talk": {"url": url, "sli": sli},
        "tolerance": {"op": ">=", "value": 0.0},
        "timeout": "2s",
    }))
    .expect("a valid probe")
}

fn unhealthy(outcome: Outcome) -> String {
    match outcome {
        Outcome::Unhealthy(why) => why,
        other => panic!("expected Unhealthy, got {other:?}"),
    }
}

#[tokio::test]
async fn each_indicator_is_measured() {
    let addr = serve().await;
    let prober = Prober::builder().build().expect("prober");
    let url = format!("http://{addr}/sli");
    for (sli, want) in [
        (TalkSli::DeliverySuccessRatio, 0.9875),
        (TalkSli::P50LatencyMs, 3.25),
        (TalkSli::P99LatencyMs, 48.5),
        (TalkSli::LostMessages, 0.0),
        (TalkSli::DuplicatedMessages, 7.0),
    ] {
        assert_eq!(
            prober.sample(&probe(&url, sli)).await,
            Outcome::Measured(want),
            "{sli:?}"
        );
    }
}

#[tokio::test]
async fn lab_host_override_reaches_the_sli_endpoint() {
    let addr = serve().await;
    let prober = Prober::builder()
        .resolve("talk-load.talk", addr)
        .build()
        .expect("prober");
    let p = probe("http://talk-load.talk:8080/sli", TalkSli::P99LatencyMs);
    assert_eq!(prober.sample(&p).await, Outcome::Measured(48.5));
}

#[tokio::test]
async fn a_bad_document_names_the_field_or_the_problem() {
    let addr = serve().await;
    let prober = Prober::builder().build().expect("prober");
    let partial = format!("http://{addr}/partial");
    let why = unhealthy(
        prober
            .sample(&probe(&partial, TalkSli::DeliverySuccessRatio))
            .await,
    );
    assert_eq!(
        why,
        format!("{partial}: field \"deliverySuccessRatio\" is missing")
    );
    let why = unhealthy(prober.sample(&probe(&partial, TalkSli::P99LatencyMs)).await);
    assert!(why.contains("\"p99LatencyMs\" is not a number"), "{why}");
    let why = unhealthy(prober.sample(&probe(&partial, TalkSli::LostMessages)).await);
    assert!(
        why.contains("\"lostMessages\" is not a number: null"),
        "{why}"
    );

    let why = unhealthy(
        prober
            .sample(&probe(
                &format!("http://{addr}/list"),
                TalkSli::LostMessages,
            ))
            .await,
    );
    assert!(why.contains("not a JSON object"), "{why}");
    let why = unhealthy(
        prober
            .sample(&probe(
                &format!("http://{addr}/text"),
                TalkSli::LostMessages,
            ))
            .await,
    );
    assert!(why.contains("not JSON"), "{why}");
    let down = format!("http://{addr}/down");
    let why = unhealthy(prober.sample(&probe(&down, TalkSli::LostMessages)).await);
    assert_eq!(why, format!("status 503 from {down} (expected 2xx)"));
}
