//! A thin HTTP client for the talk API.

use std::time::Duration;

use crate::wire::{
    ErrorBody, HistoryPage, ReadFrom, SendBatchRequest, SendBatchResponse, SendRequest,
    SendResponse,
};

/// Errors calling talk-server. Any of them makes a send indeterminate.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("building HTTP client: {0}")]
    Build(String),
    #[error("request timed out")]
    Timeout,
    #[error("transport: {0}")]
    Transport(String),
    #[error("HTTP {status}: {code}: {message}")]
    Status {
        status: u16,
        code: String,
        message: String,
    },
    #[error("bad reply: {0}")]
    Decode(String),
    /// The send channel closed before the send's ack frame arrived.
    #[error("channel closed before the ack: {0}")]
    Closed(String),
}

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            Self::Timeout
        } else if e.is_decode() {
            Self::Decode(e.to_string())
        } else {
            Self::Transport(e.to_string())
        }
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// One connection pool to talk-server (talk-load uses one per producer).
#[derive(Debug, Clone)]
pub struct TalkClient {
    http: reqwest::Client,
}

impl TalkClient {
    pub fn new(timeout: Duration) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            // Peers are on one LAN: a connect that takes longer is to a node that is gone.
            .connect_timeout(timeout.min(CONNECT_TIMEOUT))
            .pool_max_idle_per_host(1024)
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(Self { http })
    }

    /// Sends one message; `timeout` bounds this attempt (the client's own timeout applies
    /// to everything else).
    pub async fn send_within(
        &self,
        base: &str,
        room: &str,
        req: &SendRequest,
        timeout: Duration,
    ) -> Result<SendResponse, ClientError> {
        self.post_within(format!("{base}/rooms/{room}/messages"), req, timeout)
            .await
    }

    /// Sends several messages to one room in one request; each has its own result.
    pub async fn send_batch_within(
        &self,
        base: &str,
        room: &str,
        batch: &SendBatchRequest,
        timeout: Duration,
    ) -> Result<SendBatchResponse, ClientError> {
        self.post_within(
            format!("{base}/rooms/{room}/messages/batch"),
            batch,
            timeout,
        )
        .await
    }

    async fn post_within<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        url: String,
        body: &B,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let resp = self
            .http
            .post(url)
            .timeout(timeout)
            .json(body)
            .send()
            .await?;
        decode(resp).await
    }

    pub async fn history(
        &self,
        base: &str,
        room: &str,
        after: u64,
        limit: usize,
        from: ReadFrom,
    ) -> Result<HistoryPage, ClientError> {
        let from = from.as_str();
        let resp = self
            .http
            .get(format!(
                "{base}/rooms/{room}/messages?after={after}&limit={limit}&from={from}"
            ))
            .send()
            .await?;
        decode(resp).await
    }
}

async fn decode<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, ClientError> {
    let status = resp.status();
    let bytes = resp.bytes().await?;
    if status.is_success() {
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    } else {
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => (b.error.code, b.error.message),
            Err(_) => (
                "unknown".to_owned(),
                String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            ),
        };
        Err(ClientError::Status {
            status: status.as_u16(),
            code,
            message,
        })
    }
}
