//! Open-loop sender: messages leave on schedule whatever the server does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};

use super::balancer::Balancer;
use super::client::{ClientError, TalkClient};
use super::config::LoadConfig;
use super::shared::Shared;
use super::targets::Targets;
use crate::wire::{SendRequest, SendResponse, now_ms};

/// One connection. It writes to every room, as a separate producer id per room with its
/// own counter, so each (room, producer) lane's counters are contiguous and the checker can
/// keep what it has settled as ranges.
struct Producer {
    /// Per room: the producer id and the last counter used.
    lanes: Vec<(Arc<str>, u64)>,
    client: TalkClient,
    /// The target this producer prefers while it is healthy (an index into the targets of
    /// the moment, modulo their number).
    target: usize,
}

/// One send, for the ledger.
struct SendRecord {
    room: Arc<str>,
    producer: Arc<str>,
    counter: u64,
}

/// Sends until `duration` passes (if non-zero) or `stop` flips; returns once
/// every in-flight send has finished.
pub async fn run_generator(
    config: &LoadConfig,
    run_id: &str,
    targets: Arc<Targets>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ClientError> {
    let rooms: Vec<Arc<str>> = config.room_names().into_iter().map(Arc::from).collect();
    let n = config.profile.connections(config.connections);
    let mut producers = (0..n)
        .map(|i| {
            Ok(Producer {
                lanes: (0..rooms.len())
                    .map(|r| (Arc::from(format!("{run_id}-p{i}.{r}")), 0))
                    .collect(),
                client: TalkClient::new(config.request_timeout)?,
                target: i,
            })
        })
        .collect::<Result<Vec<_>, ClientError>>()?;
    let balancer = Arc::new(Balancer::new(targets));
    let deadline = config.request_timeout;
    let body: Arc<str> = Arc::from("x".repeat(config.body_bytes));
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
    let surge = (config.surge_start, config.surge_length);
    let mut next = Instant::now();
    let mut i: usize = 0;
    loop {
        let elapsed = shared.start.elapsed();
        if *stop.borrow() || (!config.duration.is_zero() && elapsed >= config.duration) {
            break;
        }
        let rate = config.profile.rate_at(config.rate, elapsed, surge);
        next += Duration::from_secs_f64(1.0 / rate);
        // Behind schedule: send at once (open loop), never skip.
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = stop.changed() => continue,
        }
        let pi = i % n;
        let ri = (i / n) % rooms.len();
        i = i.wrapping_add(1);
        let (Some(p), Some(room)) = (producers.get_mut(pi), rooms.get(ri)) else {
            continue;
        };
        let Some((producer, counter)) = p.lanes.get_mut(ri) else {
            continue;
        };
        *counter += 1;
        let record = SendRecord {
            room: room.clone(),
            producer: producer.clone(),
            counter: *counter,
        };
        shared.ledger().register(
            &record.room,
            &record.producer,
            record.counter,
            shared.micros(),
        );
        let begun = shared.sli.begin();
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            // Too many in flight: count as failed, never sent.
            shared.sli.record(begun, Instant::now(), None);
            shared
                .ledger()
                .failed(&record.room, &record.producer, record.counter);
            continue;
        };
        let client = p.client.clone();
        let target = p.target;
        let body = body.to_string();
        let shared = shared.clone();
        let balancer = balancer.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let route = Route {
                balancer: &balancer,
                preferred: target,
                deadline,
            };
            send_one(&client, route, record, body, &shared, begun).await;
        });
    }
    // Wait for every in-flight send (each is bounded by the request timeout).
    let _ = in_flight
        .acquire_many(u32::try_from(config.max_in_flight).unwrap_or(u32::MAX))
        .await;
    Ok(())
}

/// Where a send may go.
struct Route<'a> {
    balancer: &'a Balancer,
    preferred: usize,
    /// The whole send, retries included, ends by then.
    deadline: Duration,
}

/// How long one attempt may take before the send moves on to the next target; an ack
/// normally takes milliseconds.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between rounds over every target.
const ROUND_PAUSE: Duration = Duration::from_millis(250);

/// Sends on the preferred target, failing over to the others while time remains. Only
/// transport failures, timeouts and 5xx answers are retried; the message id makes a retry
/// of a send that was stored a duplicate JetStream drops.
async fn send_with_failover(
    client: &TalkClient,
    route: &Route<'_>,
    room: &str,
    req: &SendRequest,
) -> Result<SendResponse, ClientError> {
    let started = Instant::now();
    let mut last = ClientError::Timeout;
    // Round after round until the deadline: a stream electing a new leader answers 5xx on
    // every server for a few seconds.
    loop {
        for target in route.balancer.order(route.preferred, Instant::now()) {
            let left = route.deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(last);
            }
            match client
                .send_within(&target, room, req, left.min(ATTEMPT_TIMEOUT))
                .await
            {
                Ok(resp) => {
                    route.balancer.succeeded(&target);
                    return Ok(resp);
                }
                Err(e @ (ClientError::Timeout | ClientError::Transport(_))) => {
                    route.balancer.failed(&target, Instant::now());
                    last = e;
                }
                Err(e @ ClientError::Status { status, .. }) if status >= 500 => last = e,
                Err(e) => return Err(e),
            }
        }
        let left = route.deadline.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(last);
        }
        tokio::time::sleep(left.min(ROUND_PAUSE)).await;
    }
}

async fn send_one(
    client: &TalkClient,
    route: Route<'_>,
    record: SendRecord,
    body: String,
    shared: &Shared,
    begun: Instant,
) {
    let req = SendRequest {
        producer: record.producer.to_string(),
        counter: record.counter,
        body,
        sent_at_ms: Some(now_ms()),
    };
    let started = Instant::now();
    let result = send_with_failover(client, &route, &record.room, &req).await;
    let done = Instant::now();
    match result {
        Ok(resp) => {
            shared.sli.record(begun, done, Some(done - started));
            let acked_at = shared.micros();
            shared.ledger().acked(
                &record.room,
                &record.producer,
                record.counter,
                resp.seq,
                acked_at,
                done,
            );
        }
        Err(e) => {
            tracing::debug!(error = %e, "send failed (indeterminate)");
            shared.sli.record(begun, done, None);
            shared
                .ledger()
                .failed(&record.room, &record.producer, record.counter);
        }
    }
}
