//! The send channel: `GET /channel`, a WebSocket over which a client pipelines sends and
//! gets one ack (or error) frame per send, each only after the JetStream ack.
//!
//! Group commit: every send read from the channel is published at once, without waiting
//! for the acks of those before it, up to `--channel-window` publishes in flight. They
//! leave on the one NATS connection together (async-nats writes what has queued in one
//! flush) and the stream leader appends and replicates them as a batch, so many sends share
//! a round trip and an fsync. Acks go back as their publishes complete, in any order.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::api::{self, ApiError, GaugeGuard};
use super::config::ServerConfig;
use super::state::AppState;
use crate::room::RoomName;
use crate::wire::{ChannelReply, ChannelSend, MessagePayload};

/// `GET /channel`: upgrades to the send channel.
pub async fn channel(
    State(state): State<Arc<AppState>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(r) => return api::fail(&state, ApiError::NotWebSocket(r.body_text())).into_response(),
    };
    // Frames up to this size are read and answered (over --max-request-bytes: with
    // request_too_large); a larger one ends the channel (close code 1009), since the
    // WebSocket library refuses to buffer it.
    let hard_limit = state.config.max_batch_request_bytes;
    ws.max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .read_buffer_size(crate::wire::CHANNEL_READ_BUFFER)
        .on_upgrade(move |socket| serve_channel(state, socket))
}

/// Whatever of a message id a frame that failed to parse still shows, so that its error
/// frame names the send when it can.
#[derive(Debug, Default, Deserialize)]
struct FrameId {
    room: Option<String>,
    producer: Option<String>,
    counter: Option<u64>,
}

impl FrameId {
    fn of(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes).unwrap_or_default()
    }
}

/// A frame that was refused: what it showed of its id, and why.
#[derive(Debug)]
struct Refused {
    id: FrameId,
    error: ApiError,
}

/// Parses and checks one frame with the same rules and limits as a single HTTP send.
fn accept_frame(
    config: &ServerConfig,
    bytes: &[u8],
) -> Result<(RoomName, MessagePayload), Refused> {
    if bytes.len() > config.max_request_bytes {
        return Err(Refused {
            id: FrameId::of(bytes),
            error: ApiError::RequestTooLarge {
                limit: config.max_request_bytes,
            },
        });
    }
    let send: ChannelSend = serde_json::from_slice(bytes).map_err(|e| Refused {
        id: FrameId::of(bytes),
        error: ApiError::BadJson(e.to_string()),
    })?;
    let id = FrameId {
        room: Some(send.room.clone()),
        producer: Some(send.producer.clone()),
        counter: Some(send.counter),
    };
    let (room, req) = send.into_parts();
    let checked = RoomName::parse(&room)
        .map_err(ApiError::from)
        .and_then(|room| api::accept(config, &room, req).map(|payload| (room, payload)));
    checked.map_err(|error| Refused { id, error })
}

fn error_reply(id: FrameId, e: &ApiError) -> ChannelReply {
    ChannelReply::Error {
        room: id.room,
        producer: id.producer,
        counter: id.counter,
        status: e.status_and_code().0.as_u16(),
        error: e.detail(),
    }
}

/// Publishes one accepted send (counted in the metrics exactly as an HTTP send) and
/// answers it.
async fn publish(
    state: Arc<AppState>,
    room: RoomName,
    payload: MessagePayload,
    started: Instant,
) -> ChannelReply {
    match api::publish(&state, &room, &payload, started).await {
        Ok((seq, duplicate)) => ChannelReply::Ack {
            room: room.to_string(),
            producer: payload.producer,
            counter: payload.counter,
            seq,
            duplicate,
        },
        Err(e) => error_reply(
            FrameId {
                room: Some(room.to_string()),
                producer: Some(payload.producer),
                counter: Some(payload.counter),
            },
            &e,
        ),
    }
}

async fn serve_channel(state: Arc<AppState>, socket: WebSocket) {
    let _open = {
        state.metrics.channels.inc();
        GaugeGuard(state.metrics.channels.clone())
    };
    let window = state.config.channel_window;
    let (mut sink, mut frames) = socket.split();
    // The writer sends what has gathered, then flushes once: many acks per write.
    let (replies, mut outbox) = mpsc::channel::<ChannelReply>(window);
    let writer = tokio::spawn(async move {
        while let Some(first) = outbox.recv().await {
            let mut next = Some(first);
            while let Some(reply) = next {
                let text = match serde_json::to_string(&reply) {
                    Ok(text) => text,
                    Err(e) => {
                        tracing::error!(error = %e, "encoding a channel reply");
                        return;
                    }
                };
                if sink.feed(Message::Text(text.into())).await.is_err() {
                    return;
                }
                next = outbox.try_recv().ok();
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });

    let mut in_flight = FuturesUnordered::new();
    let mut shutdown = state.shutdown.clone();
    let mut reading = true;
    loop {
        tokio::select! {
            frame = frames.next(), if reading && in_flight.len() < window => {
                let bytes = match frame {
                    Some(Ok(Message::Text(text))) => axum::body::Bytes::from(text),
                    Some(Ok(Message::Binary(bytes))) => bytes,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    // Closed, or broken: what is in flight is still published and counted;
                    // its acks go out if the client is still there to read them.
                    Some(Ok(Message::Close(_)) | Err(_)) | None => {
                        reading = false;
                        continue;
                    }
                };
                match accept_frame(&state.config, &bytes) {
                    Ok((room, payload)) => {
                        in_flight.push(publish(state.clone(), room, payload, Instant::now()));
                    }
                    Err(Refused { id, error }) => {
                        let error = api::fail(&state, error);
                        if replies.send(error_reply(id, &error)).await.is_err() {
                            reading = false;
                        }
                    }
                }
            }
            Some(reply) = in_flight.next() => {
                // The writer is gone with the client: keep draining, stop reading.
                if replies.send(reply).await.is_err() {
                    reading = false;
                }
            }
            _ = stopped(&mut shutdown), if reading => reading = false,
            else => break,
        }
    }
    drop(replies);
    let _ = writer.await;
}

// Completes once talk-server shuts down.
async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ServerConfig {
        ServerConfig::for_nats(vec!["nats://127.0.0.1:4222".into()], 3)
    }

    fn refused(frame: &str) -> (FrameId, &'static str) {
        match accept_frame(&config(), frame.as_bytes()) {
            Ok(accepted) => panic!("{frame} accepted: {accepted:?}"),
            Err(Refused { id, error }) => (id, error.code()),
        }
    }

    #[test]
    fn a_good_frame_is_a_single_send() {
        let frame = r#"{"room":"general","producer":"p1","counter":7,"body":"hi","sentAtMs":5}"#;
        let (room, payload) = accept_frame(&config(), frame.as_bytes()).unwrap();
        assert_eq!(room.as_str(), "general");
        assert_eq!(
            (
                payload.producer.as_str(),
                payload.counter,
                payload.body.as_str()
            ),
            ("p1", 7, "hi")
        );
        assert_eq!(payload.sent_at_ms, Some(5));
    }

    #[test]
    fn bad_frames_get_the_http_error_codes_and_name_their_id_when_they_can() {
        let (id, code) = refused("not json");
        assert_eq!(code, "bad_json");
        assert!(id.producer.is_none() && id.counter.is_none());

        // Valid JSON with a field of the wrong type: the id it shows is named.
        let (id, code) = refused(r#"{"room":"general","producer":"p1","counter":3,"body":5}"#);
        assert_eq!(code, "bad_json");
        assert_eq!((id.producer.as_deref(), id.counter), (Some("p1"), Some(3)));

        let (id, code) =
            refused(r#"{"room":"general","producer":"p1","counter":3,"body":"x","extra":1}"#);
        assert_eq!(code, "bad_json");
        assert_eq!(id.counter, Some(3));

        let (id, code) = refused(r#"{"room":"Bad.Room","producer":"p1","counter":4,"body":"x"}"#);
        assert_eq!(code, "bad_room");
        assert_eq!(
            (id.room.as_deref(), id.counter),
            (Some("Bad.Room"), Some(4))
        );

        let (_, code) = refused(r#"{"room":"general","producer":"a b","counter":4,"body":"x"}"#);
        assert_eq!(code, "bad_producer");

        let body = "x".repeat(config().max_body_bytes + 1);
        let frame = format!(r#"{{"room":"general","producer":"p1","counter":5,"body":"{body}"}}"#);
        let (id, code) = refused(&frame);
        assert_eq!(code, "body_too_large");
        assert_eq!(id.counter, Some(5));

        let body = "x".repeat(config().max_request_bytes);
        let frame = format!(r#"{{"room":"general","producer":"p1","counter":6,"body":"{body}"}}"#);
        let (id, code) = refused(&frame);
        assert_eq!(code, "request_too_large");
        assert_eq!(id.counter, Some(6));
    }

    #[test]
    fn replies_are_tagged_frames() {
        let ack = ChannelReply::Ack {
            room: "general".into(),
            producer: "p1".into(),
            counter: 7,
            seq: 42,
            duplicate: false,
        };
        let text = serde_json::to_string(&ack).unwrap();
        assert_eq!(
            text,
            r#"{"type":"ack","room":"general","producer":"p1","counter":7,"seq":42,"duplicate":false}"#
        );
        let error = error_reply(FrameId::default(), &ApiError::BadJson("eof".into()));
        let text = serde_json::to_string(&error).unwrap();
        assert_eq!(
            text,
            r#"{"type":"error","status":400,"error":{"code":"bad_json","message":"invalid JSON body: eof"}}"#
        );
        assert_eq!(serde_json::from_str::<ChannelReply>(&text).unwrap(), error);
    }
}
