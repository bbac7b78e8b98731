//! HTTP handlers and the JSON error type of talk-server.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::future::join_all;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;

use super::config::ServerConfig;
use super::metrics::{ErrorLabels, Outcome, OutcomeLabels};
use super::state::AppState;
use crate::room::{NameError, RoomName, validate_producer};
use crate::store::StoreError;
use crate::wire::{
    BatchItem, ErrorBody, ErrorDetail, MessagePayload, ReadFrom, SendBatchRequest,
    SendBatchResponse, SendRequest, SendResponse, now_ms,
};

/// Every error talk-server answers with; each maps to a status and a code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    BadName(#[from] NameError),
    #[error("message body is {size} bytes; the limit is {limit}")]
    BodyTooLarge { size: usize, limit: usize },
    #[error("batch has {count} messages; the limit is {limit}")]
    BatchTooLarge { count: usize, limit: usize },
    #[error("message {0} of the batch: {1}")]
    BadBatchItem(usize, Box<ApiError>),
    #[error("request body exceeds {limit} bytes")]
    RequestTooLarge { limit: usize },
    #[error("invalid JSON body: {0}")]
    BadJson(String),
    #[error("invalid query: {0}")]
    BadQuery(String),
    #[error("invalid Last-Event-ID {0:?}: must be a stream sequence number")]
    BadLastEventId(String),
    #[error("no such route: {0}")]
    NotFound(String),
    #[error("not a WebSocket upgrade: {0}")]
    NotWebSocket(String),
    #[error("message store not ready: {0}")]
    NotReady(String),
    #[error("message store timed out: {0}")]
    Timeout(String),
    #[error("message store failed: {0}")]
    Store(String),
}

impl ApiError {
    pub(super) fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadName(NameError::BadRoom(_)) => (StatusCode::BAD_REQUEST, "bad_room"),
            Self::BadName(NameError::BadProducer(_)) => (StatusCode::BAD_REQUEST, "bad_producer"),
            Self::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            Self::RequestTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large"),
            Self::BatchTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large"),
            // The item's own status and code: a batch is rejected for what its message is.
            Self::BadBatchItem(_, item) => item.status_and_code(),
            Self::BadJson(_) => (StatusCode::BAD_REQUEST, "bad_json"),
            Self::BadQuery(_) => (StatusCode::BAD_REQUEST, "bad_query"),
            Self::BadLastEventId(_) => (StatusCode::BAD_REQUEST, "bad_last_event_id"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::NotWebSocket(_) => (StatusCode::UPGRADE_REQUIRED, "not_websocket"),
            Self::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            Self::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "store_timeout"),
            Self::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_error"),
        }
    }

    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    pub(super) fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            code: self.code().to_owned(),
            message: self.to_string(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Timeout(m) | StoreError::Uncommitted(m) => Self::Timeout(m),
            other => Self::Store(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _) = self.status_and_code();
        let body = ErrorBody {
            error: self.detail(),
        };
        (status, Json(body)).into_response()
    }
}

// Records the error code in metrics before replying.
pub(super) fn fail(state: &AppState, e: ApiError) -> ApiError {
    state
        .metrics
        .errors
        .get_or_create(&ErrorLabels {
            code: e.code().to_owned(),
        })
        .inc();
    e
}

fn json_error(rejection: JsonRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::RequestTooLarge { limit }
    } else {
        ApiError::BadJson(rejection.body_text())
    }
}

pub async fn send_message(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: Result<Json<SendRequest>, JsonRejection>,
) -> Result<Json<SendResponse>, ApiError> {
    let started = Instant::now();
    let room = RoomName::parse(&room).map_err(|e| fail(&state, e.into()))?;
    let Json(req) =
        body.map_err(|r| fail(&state, json_error(r, state.config.max_request_bytes)))?;
    let payload = accept(&state.config, &room, req).map_err(|e| fail(&state, e))?;
    let (seq, duplicate) = publish(&state, &room, &payload, started).await?;
    Ok(Json(SendResponse {
        room: room.to_string(),
        seq,
        stream: state.config.stream.clone(),
        duplicate,
    }))
}

/// Several sends in one request. Every message is checked before any is published, so a
/// bad one rejects the whole batch and stores nothing; then all are published at once and
/// each is answered on its own.
pub async fn send_batch(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: Result<Json<SendBatchRequest>, JsonRejection>,
) -> Result<Json<SendBatchResponse>, ApiError> {
    let started = Instant::now();
    let room = RoomName::parse(&room).map_err(|e| fail(&state, e.into()))?;
    let Json(batch) =
        body.map_err(|r| fail(&state, json_error(r, state.config.max_batch_request_bytes)))?;
    let limit = state.config.max_batch_messages;
    if batch.messages.len() > limit {
        return Err(fail(
            &state,
            ApiError::BatchTooLarge {
                count: batch.messages.len(),
                limit,
            },
        ));
    }
    let payloads = batch
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, req)| {
            accept(&state.config, &room, req).map_err(|e| ApiError::BadBatchItem(i, Box::new(e)))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(&state, e))?;
    // Polled together, the publishes reach NATS in one write and JetStream in one go.
    let outcomes = join_all(
        payloads
            .iter()
            .map(|payload| publish(&state, &room, payload, started)),
    )
    .await;
    let results: Vec<BatchItem> = outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Ok((seq, duplicate)) => BatchItem::Stored { seq, duplicate },
            Err(e) => BatchItem::Failed { error: e.detail() },
        })
        .collect();
    Ok(Json(SendBatchResponse {
        room: room.to_string(),
        stream: state.config.stream.clone(),
        failed: results
            .iter()
            .filter(|r| matches!(r, BatchItem::Failed { .. }))
            .count(),
        results,
    }))
}

/// Checks one message and stamps it with talk-server's clock.
pub(super) fn accept(
    config: &ServerConfig,
    room: &RoomName,
    req: SendRequest,
) -> Result<MessagePayload, ApiError> {
    validate_producer(&req.producer)?;
    if req.body.len() > config.max_body_bytes {
        return Err(ApiError::BodyTooLarge {
            size: req.body.len(),
            limit: config.max_body_bytes,
        });
    }
    Ok(MessagePayload {
        room: room.to_string(),
        producer: req.producer,
        counter: req.counter,
        body: req.body,
        sent_at_ms: req.sent_at_ms,
        received_at_ms: now_ms(),
    })
}

/// Publishes one accepted message and records its outcome.
pub(super) async fn publish(
    state: &AppState,
    room: &RoomName,
    payload: &MessagePayload,
    started: Instant,
) -> Result<(u64, bool), ApiError> {
    match state.store.publish(room, payload).await {
        Ok((seq, duplicate)) => {
            let outcome = if duplicate {
                Outcome::Duplicate
            } else {
                Outcome::Acked
            };
            state
                .metrics
                .sends
                .get_or_create(&OutcomeLabels { outcome })
                .inc();
            state
                .metrics
                .publish_seconds
                .observe(started.elapsed().as_secs_f64());
            Ok((seq, duplicate))
        }
        Err(e) => {
            state
                .metrics
                .sends
                .get_or_create(&OutcomeLabels {
                    outcome: Outcome::Failed,
                })
                .inc();
            tracing::warn!(%room, error = %e, "publish failed");
            if matches!(e, StoreError::NoStream(_)) {
                state.stream_gone();
            }
            Err(fail(state, e.into()))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
    /// `leader` reads the stream leader's copy, which holds every acknowledged message.
    #[serde(default)]
    from: ReadFrom,
}

pub async fn history(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let room = RoomName::parse(&room).map_err(|e| fail(&state, e.into()))?;
    let Query(q) = query.map_err(|r| fail(&state, ApiError::BadQuery(r.body_text())))?;
    let max = state.config.history_max_limit;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > max {
        return Err(fail(
            &state,
            ApiError::BadQuery(format!("limit must be 1-{max}, got {limit}")),
        ));
    }
    let page = state
        .store
        .history(&room, q.after, limit, q.from)
        .await
        .map_err(|e| fail(&state, e.into()))?;
    state.metrics.history_reads.inc();
    Ok(Json(page).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Resume after this sequence; 0 (default) = only new messages.
    #[serde(default)]
    after: u64,
}

/// Live messages as Server-Sent Events; each event's id is the stream
/// sequence. A client resumes after the last event it saw with the standard
/// `Last-Event-ID` header (what an `EventSource` sends when it reconnects) or
/// with `?after=<last id>`; the header wins, because a reconnecting
/// `EventSource` repeats the original URL, whose `after` is older.
pub async fn live_stream(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let room = RoomName::parse(&room).map_err(|e| fail(&state, e.into()))?;
    let Query(q) = query.map_err(|r| fail(&state, ApiError::BadQuery(r.body_text())))?;
    let after = match last_event_id(&headers) {
        Some(Ok(seq)) => seq,
        Some(Err(e)) => return Err(fail(&state, e)),
        None => q.after,
    };
    let messages = state
        .store
        .follow(&room, after)
        .await
        .map_err(|e| fail(&state, e.into()))?;
    let mut shutdown = state.shutdown.clone();
    let gauge = state.metrics.live_streams.clone();
    gauge.inc();
    let guard = GaugeGuard(gauge);
    let events = messages
        .map(|m| {
            Ok(match m {
                Ok(msg) => Event::default()
                    .id(msg.seq.to_string())
                    .event("message")
                    .json_data(&msg)
                    .unwrap_or_else(|e| Event::default().event("error").data(e.to_string())),
                Err(e) => Event::default().event("error").data(e.to_string()),
            })
        })
        // End the stream on shutdown so graceful drain does not hang.
        .take_until(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .map(move |e| {
            let _keep = &guard;
            e
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// The `Last-Event-ID` request header as a sequence number, if present.
fn last_event_id(headers: &HeaderMap) -> Option<Result<u64, ApiError>> {
    let raw = headers.get("last-event-id")?;
    let text = String::from_utf8_lossy(raw.as_bytes());
    Some(
        text.trim()
            .parse::<u64>()
            .map_err(|_| ApiError::BadLastEventId(text.chars().take(40).collect())),
    )
}

// Decrements the live-stream gauge when the stream is dropped.
pub(super) struct GaugeGuard(pub(super) prometheus_client::metrics::gauge::Gauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub async fn healthz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok", "zone": state.config.zone}))
}

/// Ready only when the stream exists and JetStream answers now.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if !state.stream_ready.load(Ordering::Acquire) {
        return ApiError::NotReady("stream not created yet".into()).into_response();
    }
    match state.store.ping().await {
        Ok(()) => Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(e) => ApiError::NotReady(e.to_string()).into_response(),
    }
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    match state.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError::Store(format!("encoding metrics: {e}")).into_response(),
    }
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_owned())
}
