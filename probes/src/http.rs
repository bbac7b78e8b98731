//! `http` probes: a GET or HEAD that must answer with an expected status in time. Also the
//! one place requests are sent, so every probe kind times out and reports alike.

use std::time::Duration;

use firedrill_core::api::{HttpMethod, HttpProbe};
use reqwest::{Client, Response};
use tokio::time::Instant;
use url::Url;

use crate::error::{Error, describe};
use crate::route::{self, Routes};

/// Sends one request, giving up at `deadline`. Returns the response (headers read) and how
/// long it took to arrive.
pub(crate) async fn send(
    client: &Client,
    routes: &Routes,
    method: HttpMethod,
    url: &Url,
    deadline: Instant,
) -> Result<(Response, Duration), Error> {
    let (name, method) = match method {
        HttpMethod::Get => ("GET", reqwest::Method::GET),
        HttpMethod::Head => ("HEAD", reqwest::Method::HEAD),
    };
    let request = routes.request(client, method, url)?;
    let start = Instant::now();
    match tokio::time::timeout_at(deadline, request.send()).await {
        Ok(Ok(response)) => Ok((response, start.elapsed())),
        Ok(Err(e)) => Err(Error::Request {
            method: name,
            url: url.to_string(),
            reason: describe(e),
        }),
        Err(_) => Err(Error::Timeout {
            url: url.to_string(),
            ms: deadline.saturating_duration_since(start).as_millis(),
        }),
    }
}

/// Reads a body of at most `max` bytes before `deadline`.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    url: &Url,
    max: usize,
    deadline: Instant,
) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .map_err(|_| Error::Body {
                url: url.to_string(),
                reason: "the body did not arrive before the deadline".into(),
            })?
            .map_err(|e| Error::Body {
                url: url.to_string(),
                reason: describe(e),
            })?;
        let Some(chunk) = chunk else {
            return Ok(body);
        };
        if body.len() + chunk.len() > max {
            return Err(Error::Body {
                url: url.to_string(),
                reason: format!("longer than {max} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
}

/// Healthy when the status is expected and the answer came within `maxLatency`.
pub(crate) async fn check(
    client: &Client,
    routes: &Routes,
    probe: &HttpProbe,
    deadline: Instant,
) -> Result<(), Error> {
    let url = route::parse(&probe.url)?;
    let (response, took) = send(client, routes, probe.method, &url, deadline).await?;
    let status = response.status().as_u16();
    if !status_expected(status, &probe.expect_status) {
        return Err(Error::Status {
            status,
            url: url.to_string(),
            expected: expected_text(&probe.expect_status),
        });
    }
    if let Some(max) = probe.max_latency.map(|m| m.as_std())
        && took > max
    {
        return Err(Error::TooSlow {
            method: method_name(probe.method),
            url: url.to_string(),
            took_ms: took.as_millis(),
            max_ms: max.as_millis(),
        });
    }
    Ok(())
}

fn method_name(method: HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "GET",
        HttpMethod::Head => "HEAD",
    }
}

/// An empty list means any 2xx.
pub(crate) fn status_expected(status: u16, expected: &[u16]) -> bool {
    if expected.is_empty() {
        (200..300).contains(&status)
    } else {
        expected.contains(&status)
    }
}

fn expected_text(expected: &[u16]) -> String {
    if expected.is_empty() {
        return "2xx".into();
    }
    let codes: Vec<String> = expected.iter().map(u16::to_string).collect();
    codes.join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_any_2xx() {
        assert!(status_expected(200, &[]));
        assert!(status_expected(204, &[]));
        assert!(!status_expected(199, &[]));
        assert!(!status_expected(301, &[]));
        assert!(!status_expected(503, &[]));
    }

    #[test]
    fn explicit_list_is_exact() {
        assert!(status_expected(301, &[301, 302]));
        assert!(!status_expected(200, &[301, 302]));
        assert_eq!(expected_text(&[301, 302]), "301 or 302");
        assert_eq!(expected_text(&[]), "2xx");
    }
}
