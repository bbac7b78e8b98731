//! `http` probes against a real local server.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use firedrill_core::api::Probe;
use firedrill_core::engine::Outcome;
use firedrill_probes::Prober;
use serde_json::json;

async fn serve() -> SocketAddr {
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/unavailable",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route(
            "/moved",
            get(|| async { (StatusCode::MOVED_PERMANENTLY, "") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(700)).await;
                "late"
            }),
        )
        .route(
            "/hang",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "never"
            }),
        )
        .route(
            "/host",
            get(|headers: HeaderMap| async move {
                let host = headers.get("host").and_then(|h| h.to_str().ok());
                if host == Some("web.lab.example:8080") {
                    StatusCode::OK
                } else {
                    StatusCode::MISDIRECTED_REQUEST
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn probe(http: serde_json::Value, timeout: &str) -> Probe {
    serde_json::from_value(json!({"name": "web", "http": http, "timeout": timeout}))
        .expect("a valid probe")
}

fn unhealthy(outcome: Outcome) -> String {
    match outcome {
        Outcome::Unhealthy(why) => why,
        other => panic!("expected Unhealthy, got {other:?}"),
    }
}

#[tokio::test]
async fn expected_status_is_healthy() {
    let addr = serve().await;
    let prober = Prober::builder().build().expect("prober");
    for method in ["GET", "HEAD"] {
        let p = probe(
            json!({"url": format!("http://{addr}/ok"), "method": method}),
            "2s",
        );
        assert_eq!(prober.sample(&p).await, Outcome::Healthy, "{method}");
    }
    let p = probe(
        json!({"url": format!("http://{addr}/unavailable"), "expectStatus": [503]}),
        "2s",
    );
    assert_eq!(prober.sample(&p).await, Outcome::Healthy);
    // Redirects are not followed: the status of the URL itself is what counts.
    let p = probe(
        json!({"url": format!("http://{addr}/moved"), "expectStatus": [301]}),
        "2s",
    );
    assert_eq!(prober.sample(&p).await, Outcome::Healthy);
}

#[tokio::test]
async fn unexpected_status_names_status_and_url() {
    let addr = serve().await;
    let prober = Prober::builder().build().expect("prober");
    let url = format!("http://{addr}/unavailable");
    let why = unhealthy(prober.sample(&probe(json!({"url": url}), "2s")).await);
    assert_eq!(why, format!("status 503 from {url} (expected 2xx)"));
    let url = format!("http://{addr}/moved");
    let why = unhealthy(prober.sample(&probe(json!({"url": url}), "2s")).await);
    assert!(why.starts_with("status 301 from"), "{why}");
    let p = probe(
        json!({"url": format!("http://{addr}/ok"), "expectStatus": [204]}),
        "2s",
    );
    let why = unhealthy(prober.sample(&p).await);
    assert!(
        why.contains("status 200") && why.contains("expected 204"),
        "{why}"
    );
}

#[tokio::test]
async fn slower_than_max_latency_is_unhealthy() {
    let addr = serve().await;
    let prober = Prober::builder().build().expect("prober");
    let url = format!("http://{addr}/slow");
    let p = probe(json!({"url": url, "maxLatency": "300ms"}), "3s");
    let why = unhealthy(prober.sample(&p).await);
    let took: u64 = why
        .strip_prefix(&format!("GET {url} took "))
        .and_then(|rest| rest.strip_suffix("ms, max 300ms"))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("unexpected reason: {why}"));
    assert!((700..3000).contains(&took), "took {took}ms");
    // The same endpoint is fine with a looser bound.
    let p = probe(json!({"url": url, "maxLatency": "2s"}), "3s");
    assert_eq!(prober.sample(&p).await, Outcome::Healthy);
}

#[tokio::test]
async fn a_hanging_server_is_cut_off_at_the_timeout() {
    let addr = serve().await;
    let prober = Prober::builder().build().expect("prober");
    let url = format!("http://{addr}/hang");
    let start = Instant::now();
    let why = unhealthy(prober.sample(&probe(json!({"url": url}), "500ms")).await);
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed <= Duration::from_millis(600),
        "took {elapsed:?}"
    );
    assert!(
        why.contains("no answer from") && why.contains(&url),
        "{why}"
    );
}

#[tokio::test]
async fn connection_refused_is_unhealthy_with_the_cause() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let prober = Prober::builder().build().expect("prober");
    let url = format!("http://{closed}/ok");
    let why = unhealthy(prober.sample(&probe(json!({"url": url}), "2s")).await);
    assert!(why.starts_with(&format!("GET {url} failed")), "{why}");
    assert!(why.to_lowercase().contains("refused"), "{why}");
}

#[tokio::test]
async fn host_override_sends_cluster_urls_to_the_lab() {
    let addr = serve().await;
    let prober = Prober::builder()
        .resolve("web.lab.example", addr)
        .build()
        .expect("prober");
    // The server only answers 200 when Host still names the URL written in the probe.
    let p = probe(json!({"url": "http://web.lab.example:8080/host"}), "2s");
    assert_eq!(prober.sample(&p).await, Outcome::Healthy);
    let p = probe(
        json!({"url": "http://web.lab.example:8080/unavailable"}),
        "2s",
    );
    let why = unhealthy(prober.sample(&p).await);
    assert!(
        why.contains("status 503 from http://web.lab.example:8080/unavailable"),
        "{why}"
    );
}

#[tokio::test]
async fn https_is_refused_with_a_reason_not_a_panic() {
    let prober = Prober::builder().build().expect("prober");
    let p = probe(json!({"url": "https://127.0.0.1:1/"}), "1s");
    let why = unhealthy(prober.sample(&p).await);
    assert!(why.contains("https is not supported"), "{why}");
}
