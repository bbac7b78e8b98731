//! `talk` probes: one indicator from talk-load's `GET /sli` JSON document.

use firedrill_core::api::{HttpMethod, TalkProbe, TalkSli, WorkloadCounters};
use reqwest::Client;
use serde_json::Value;
use tokio::time::Instant;

use crate::error::Error;
use crate::http::{read_body, send, status_expected};
use crate::route::{self, Routes};

/// The SLI document is small; anything bigger is not it.
const MAX_BODY: usize = 64 * 1024;

pub(crate) async fn read(
    client: &Client,
    routes: &Routes,
    probe: &TalkProbe,
    deadline: Instant,
) -> Result<f64, Error> {
    let url = route::parse(&probe.url)?;
    let (response, _) = send(client, routes, HttpMethod::Get, &url, deadline).await?;
    let status = response.status().as_u16();
    if !status_expected(status, &[]) {
        return Err(Error::Status {
            status,
            url: url.to_string(),
            expected: "2xx".into(),
        });
    }
    let body = read_body(response, &url, MAX_BODY, deadline).await?;
    let document: Value = serde_json::from_slice(&body).map_err(|e| Error::Body {
        url: url.to_string(),
        reason: format!("not JSON: {e}"),
    })?;
    indicator(&document, probe.sli).map_err(|problem| match problem {
        Problem::NotAnObject => Error::Body {
            url: url.to_string(),
            reason: "not a JSON object".into(),
        },
        Problem::Field(problem) => Error::Field {
            url: url.to_string(),
            field: probe.sli.json_field(),
            problem,
        },
    })
}

/// A verification read of talk-load (`GET /verify`, see
/// [`firedrill_core::api::ExperimentSpec::verification_url`]): what it found missing over
/// the whole run. It reads the whole stream back, so it gets
/// [`VERIFY_READ_TIMEOUT`](firedrill_core::api::VERIFY_READ_TIMEOUT).
pub async fn verification_read(client: &Client, url: &str) -> Result<WorkloadCounters, String> {
    let response = client
        .get(url)
        .timeout(firedrill_core::api::VERIFY_READ_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(format!("{url}: {status}: {}", text.trim()));
    }
    let document: Value = response
        .json()
        .await
        .map_err(|e| format!("{url}: not JSON: {e}"))?;
    WorkloadCounters::from_document(&document)
        .ok_or_else(|| format!("{url}: no lostMessages and duplicatedMessages counts"))
}

#[derive(Debug, PartialEq)]
pub(crate) enum Problem {
    NotAnObject,
    Field(String),
}

/// The indicator's value in the SLI document.
pub(crate) fn indicator(document: &Value, sli: TalkSli) -> Result<f64, Problem> {
    let object = document.as_object().ok_or(Problem::NotAnObject)?;
    match object.get(sli.json_field()) {
        None => Err(Problem::Field("is missing".into())),
        Some(Value::Number(n)) => n
            .as_f64()
            .ok_or_else(|| Problem::Field(format!("is not a finite number: {n}"))),
        Some(other) => Err(Problem::Field(format!("is not a number: {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_each_indicator() {
        let doc = json!({
            "deliverySuccessRatio": 0.995, "p50LatencyMs": 3.5, "p99LatencyMs": 41.0,
            "lostMessages": 0, "duplicatedMessages": 2,
        });
        assert_eq!(indicator(&doc, TalkSli::DeliverySuccessRatio), Ok(0.995));
        assert_eq!(indicator(&doc, TalkSli::P50LatencyMs), Ok(3.5));
        assert_eq!(indicator(&doc, TalkSli::P99LatencyMs), Ok(41.0));
        assert_eq!(indicator(&doc, TalkSli::LostMessages), Ok(0.0));
        assert_eq!(indicator(&doc, TalkSli::DuplicatedMessages), Ok(2.0));
    }

    #[test]
    fn names_what_is_wrong() {
        let doc = json!({"p99LatencyMs": "41", "lostMessages": null});
        assert_eq!(
            indicator(&doc, TalkSli::DeliverySuccessRatio),
            Err(Problem::Field("is missing".into()))
        );
        assert!(matches!(
            indicator(&doc, TalkSli::P99LatencyMs),
            Err(Problem::Field(p)) if p.contains("not a number")
        ));
        assert!(matches!(
            indicator(&doc, TalkSli::LostMessages),
            Err(Problem::Field(p)) if p.contains("null")
        ));
        assert_eq!(
            indicator(&json!([1]), TalkSli::LostMessages),
            Err(Problem::NotAnObject)
        );
    }
}
