//! Why a probe could not observe a healthy system. The `Display` text is the reason shown
//! in `Outcome::Unhealthy`, so it names the URL and what it said.

use std::fmt;

/// A failed observation (or a prober that could not be built).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("{url:?} cannot be probed: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("{method} {url} failed: {reason}")]
    Request {
        method: &'static str,
        url: String,
        reason: String,
    },
    #[error("no answer from {url} within {ms}ms")]
    Timeout { url: String, ms: u128 },
    #[error("status {status} from {url} (expected {expected})")]
    Status {
        status: u16,
        url: String,
        expected: String,
    },
    #[error("{method} {url} took {took_ms}ms, max {max_ms}ms")]
    TooSlow {
        method: &'static str,
        url: String,
        took_ms: u128,
        max_ms: u128,
    },
    #[error("{url} returned an unreadable document: {reason}")]
    Body { url: String, reason: String },
    #[error("{url}: field {field:?} {problem}")]
    Field {
        url: String,
        field: &'static str,
        problem: String,
    },
    #[error("prometheus query failed on every endpoint: {}", Attempts(.attempts))]
    Prometheus {
        /// Each endpoint, in order, with what it said.
        attempts: Vec<(String, String)>,
    },
}

struct Attempts<'a>(&'a [(String, String)]);

impl fmt::Display for Attempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (endpoint, said)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{endpoint}: {said}")?;
        }
        Ok(())
    }
}

/// A transport error with its causes ("connection refused" lives deep in the chain),
/// without the URL, which the caller names itself.
pub(crate) fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut chain = vec![error.to_string()];
    let mut cause = std::error::Error::source(&error);
    while let Some(c) = cause {
        chain.push(c.to_string());
        cause = c.source();
    }
    let root = chain.last().cloned().unwrap_or_default();
    if error.is_connect() {
        return format!("cannot connect: {root}");
    }
    // The outermost message ("error sending request") says nothing the causes do not.
    match chain.as_slice() {
        [only] => only.clone(),
        [_, causes @ ..] => causes.join(": "),
        [] => root,
    }
}
