//! `prometheus` probes: a PromQL instant query over the HTTP API, with failover.
//!
//! Endpoints are tried in order, starting with the one that answered last. An endpoint that
//! neither answers nor fails within its share of the remaining time is not abandoned: the
//! next one is started alongside it and the first usable number wins. So a blackholed
//! replica (a zone outage drops packets, it does not refuse them) costs a fraction of the
//! timeout once, and from the next sample on the live replica is asked first, with all of
//! it. The names of the endpoints not asked are looked up in the background, so that a
//! standby replica never needs its first DNS answer while a zone (and its CoreDNS) is dark.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use firedrill_core::api::{HttpMethod, PrometheusProbe};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use reqwest::Client;
use serde_json::Value;
use tokio::time::{Instant, sleep_until};
use url::Url;

use crate::dns::{Resolver, SystemLookup};
use crate::error::Error;
use crate::http::{read_body, send};
use crate::route::{self, Routes};

/// Query results worth comparing are small; a huge one means a wrong query.
const MAX_BODY: usize = 1024 * 1024;

/// What a prober remembers between samples: per endpoint list, the endpoint that gave the
/// last number.
#[derive(Debug, Default)]
pub(crate) struct Failover(Mutex<HashMap<Vec<String>, String>>);

impl Failover {
    /// The indexes of `endpoints` in the order to ask them: the last one that answered,
    /// then the rest as written.
    fn order(&self, endpoints: &[String]) -> Vec<usize> {
        let remembered = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let first = remembered
            .get(endpoints)
            .and_then(|answered| endpoints.iter().position(|e| e == answered));
        first
            .into_iter()
            .chain((0..endpoints.len()).filter(|i| Some(*i) != first))
            .collect()
    }

    fn answered(&self, endpoints: &[String], endpoint: &str) {
        let mut remembered = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if remembered.get(endpoints).map(String::as_str) != Some(endpoint) {
            remembered.insert(endpoints.to_vec(), endpoint.to_owned());
        }
    }
}

/// How a prober reaches Prometheus: its client, host overrides, failover memory and DNS.
pub(crate) struct Reach<'a> {
    pub client: &'a Client,
    pub routes: &'a Routes,
    pub failover: &'a Failover,
    pub resolver: &'a Resolver<SystemLookup>,
}

pub(crate) async fn query(
    reach: &Reach<'_>,
    probe: &PrometheusProbe,
    deadline: Instant,
) -> Result<f64, Error> {
    let endpoints = &probe.endpoints;
    let count = endpoints.len();
    let order = reach.failover.order(endpoints);
    for &i in order.iter().skip(1) {
        warm_name(reach, &endpoints[i]);
    }
    let mut said: Vec<Option<String>> = vec![None; count];
    let mut launched: Vec<Option<Instant>> = vec![None; count];
    let (client, routes) = (reach.client, reach.routes);
    let ask = |i: usize| async move {
        let result = ask_one(client, routes, &endpoints[i], &probe.query, deadline).await;
        (i, result)
    };
    let mut running = FuturesUnordered::new();
    let mut next = 0;
    loop {
        if running.is_empty() {
            if next == count {
                break;
            }
            launched[order[next]] = Some(Instant::now());
            running.push(ask(order[next]));
            next += 1;
            continue;
        }
        // Give the running endpoint(s) a fair share before starting the next one too.
        let hedge_at = (next < count).then(|| {
            let left = deadline.saturating_duration_since(Instant::now());
            let waiting = u32::try_from(count - next + 1).unwrap_or(u32::MAX);
            Instant::now() + left / waiting
        });
        tokio::select! {
            Some((i, result)) = running.next() => match result {
                Ok(value) => {
                    reach.failover.answered(endpoints, &endpoints[i]);
                    return Ok(value);
                }
                Err(why) => said[i] = Some(why),
            },
            () = sleep_until(hedge_at.unwrap_or(deadline)), if hedge_at.is_some() => {
                launched[order[next]] = Some(Instant::now());
                running.push(ask(order[next]));
                next += 1;
            }
            () = sleep_until(deadline) => break,
        }
    }
    let attempts = endpoints
        .iter()
        .zip(said)
        .zip(launched)
        .map(|((endpoint, said), launched)| {
            let said = said.unwrap_or_else(|| match launched {
                Some(at) => format!(
                    "no answer within {}ms",
                    deadline.saturating_duration_since(at).as_millis()
                ),
                None => "not tried: out of time".into(),
            });
            (endpoint.clone(), said)
        })
        .collect();
    Err(Error::Prometheus { attempts })
}

/// Starts a background lookup of `endpoint`'s host when it is a name the client resolves
/// (not an address, not a lab override).
fn warm_name(reach: &Reach<'_>, endpoint: &str) {
    let Ok(url) = route::parse(endpoint) else {
        return;
    };
    if let Some(url::Host::Domain(host)) = url.host()
        && !reach.routes.overrides(host)
    {
        reach.resolver.warm(host);
    }
}

/// One endpoint's number, or what it said instead.
async fn ask_one(
    client: &Client,
    routes: &Routes,
    endpoint: &str,
    promql: &str,
    deadline: Instant,
) -> Result<f64, String> {
    let url = query_url(endpoint, promql).map_err(|e| match e {
        Error::BadUrl { reason, .. } => reason,
        other => other.to_string(),
    })?;
    let (response, _) = send(client, routes, HttpMethod::Get, &url, deadline)
        .await
        .map_err(|e| match e {
            // The endpoint is already named by the caller; the URL with the query is noise.
            Error::Request { reason, .. } | Error::BadUrl { reason, .. } => reason,
            Error::Timeout { ms, .. } => format!("no answer within {ms}ms"),
            other => other.to_string(),
        })?;
    let status = response.status().as_u16();
    let body = read_body(response, &url, MAX_BODY, deadline)
        .await
        .map_err(|e| format!("HTTP {status}, {e}"))?;
    parse_response(status, &body)
}

/// `{endpoint}/api/v1/query?query=...`, keeping any path prefix of the endpoint.
fn query_url(endpoint: &str, promql: &str) -> Result<Url, Error> {
    let mut url = route::parse(endpoint)?;
    let path = format!("{}/api/v1/query", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(None);
    url.query_pairs_mut().append_pair("query", promql);
    Ok(url)
}

/// The single number in an instant-query response, or why there is none.
pub(crate) fn parse_response(http_status: u16, body: &[u8]) -> Result<f64, String> {
    let document: Value = match serde_json::from_slice(body) {
        Ok(d) => d,
        Err(_) => return Err(format!("HTTP {http_status}: {}", snippet(body))),
    };
    if document.get("status").and_then(Value::as_str) != Some("success") {
        let kind = document
            .get("errorType")
            .and_then(Value::as_str)
            .unwrap_or("error");
        let error = document
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no error message");
        return Err(format!("HTTP {http_status}, {kind}: {error}"));
    }
    if !(200..300).contains(&http_status) {
        return Err(format!("HTTP {http_status}"));
    }
    let data = document.get("data").ok_or("response has no data")?;
    let result = data.get("result").ok_or("response has no result")?;
    let sample = match data.get("resultType").and_then(Value::as_str) {
        Some("scalar") => result,
        Some("vector") => match result.as_array().map(Vec::as_slice) {
            Some([one]) => one.get("value").ok_or("the sample has no value")?,
            Some([]) => return Err("empty result (no series matched)".into()),
            Some(many) => {
                return Err(format!(
                    "{} series, need exactly one (aggregate the query): {}",
                    many.len(),
                    series_names(many)
                ));
            }
            None => return Err("vector result is not a list".into()),
        },
        Some(other) => {
            return Err(format!(
                "result type {other}, need a vector with one sample or a scalar"
            ));
        }
        None => return Err("response has no resultType".into()),
    };
    // A sample is [timestamp, "value"]; Prometheus writes the value as a string.
    let text = sample
        .get(1)
        .and_then(Value::as_str)
        .ok_or("the sample is not [time, \"value\"]")?;
    let value: f64 = text
        .parse()
        .map_err(|_| format!("value {text:?} is not a number"))?;
    if value.is_nan() {
        return Err("value is NaN".into());
    }
    Ok(value)
}

/// The label sets of the first few series, to show why there are several.
fn series_names(series: &[Value]) -> String {
    let mut names: Vec<String> = series
        .iter()
        .take(3)
        .map(|s| {
            s.get("metric")
                .map_or_else(|| "{}".into(), Value::to_string)
        })
        .collect();
    if series.len() > 3 {
        names.push("...".into());
    }
    names.join(", ")
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "empty body".into();
    }
    let cut: String = text.chars().take(200).collect();
    if cut.len() < text.len() {
        format!("{cut}...")
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(status: u16, body: &str) -> Result<f64, String> {
        parse_response(status, body.as_bytes())
    }

    #[test]
    fn one_sample_or_a_scalar_is_a_number() {
        let vector = r#"{"status":"success","data":{"resultType":"vector",
            "result":[{"metric":{"job":"p"},"value":[1700000000.1,"0.25"]}]}}"#;
        assert_eq!(parse(200, vector), Ok(0.25));
        let scalar = r#"{"status":"success","data":{"resultType":"scalar",
            "result":[1700000000.1,"42"]}}"#;
        assert_eq!(parse(200, scalar), Ok(42.0));
        let inf = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"+Inf"]}}"#;
        assert_eq!(parse(200, inf), Ok(f64::INFINITY));
    }

    #[test]
    fn anything_else_says_why() {
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(parse(200, empty).is_err_and(|e| e.contains("empty result")));
        let two = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"instance":"a"},"value":[1,"1"]},
            {"metric":{"instance":"b"},"value":[1,"0"]}]}}"#;
        assert!(parse(200, two).is_err_and(|e| e.contains("2 series") && e.contains("\"b\"")));
        let nan = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#;
        assert_eq!(parse(200, nan), Err("value is NaN".into()));
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(parse(200, matrix).is_err_and(|e| e.contains("matrix")));
        let error = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert_eq!(
            parse(400, error),
            Err("HTTP 400, bad_data: parse error".into())
        );
        assert_eq!(
            parse(502, "<html>Bad Gateway</html>"),
            Err("HTTP 502: <html>Bad Gateway</html>".into())
        );
        assert_eq!(parse(200, ""), Err("HTTP 200: empty body".into()));
    }

    #[test]
    fn the_endpoint_that_answered_last_is_asked_first() {
        let failover = Failover::default();
        let pair = vec!["http://a".to_owned(), "http://b".to_owned()];
        assert_eq!(failover.order(&pair), [0, 1]);
        failover.answered(&pair, "http://b");
        assert_eq!(failover.order(&pair), [1, 0]);
        // Another probe's list is remembered apart.
        let trio = vec![
            "http://c".to_owned(),
            "http://a".to_owned(),
            "http://b".to_owned(),
        ];
        assert_eq!(failover.order(&trio), [0, 1, 2]);
        failover.answered(&trio, "http://a");
        assert_eq!(failover.order(&trio), [1, 0, 2]);
        failover.answered(&pair, "http://a");
        assert_eq!(failover.order(&pair), [0, 1]);
    }

    #[test]
    fn query_url_keeps_prefixes_and_encodes() {
        let url = query_url("http://mon:9090/prom/", "sum(up{job=\"x\"}) > 0").expect("url");
        assert_eq!(
            url.as_str(),
            "http://mon:9090/prom/api/v1/query?query=sum%28up%7Bjob%3D%22x%22%7D%29+%3E+0"
        );
        let url = query_url("http://mon:9090", "up").expect("url");
        assert_eq!(url.as_str(), "http://mon:9090/api/v1/query?query=up");
    }
}
