//! Open-loop sender: messages leave on schedule whatever the server does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};

use super::balancer::Balancer;
use super::channel::ChannelPool;
use super::client::{ClientError, TalkClient};
use super::config::{LoadConfig, Transport};
use super::shared::Shared;
use super::targets::Targets;
use crate::wire::{SendRequest, now_ms};

/// One connection. It writes to every room, as a separate producer id per room with its
/// own counter, so each (room, producer) lane's counters are contiguous and the checker can
/// keep what it has settled as ranges.
struct Producer {
    /// Per room: the producer id and the last counter used.
    lanes: Vec<(Arc<str>, u64)>,
    link: Link,
    /// The target this producer prefers while it is healthy (an index into the targets of
    /// the moment, modulo their number).
    target: usize,
}

/// How a producer reaches talk-server (`--transport`).
#[derive(Debug, Clone)]
enum Link {
    Http(TalkClient),
    /// Its own channels, one per talk-server, each carrying all its sends pipelined.
    Channel(Arc<ChannelPool>),
}

impl Link {
    fn new(transport: Transport, timeout: Duration) -> Result<Self, ClientError> {
        Ok(match transport {
            Transport::Http => Self::Http(TalkClient::new(timeout)?),
            Transport::Channel => Self::Channel(Arc::default()),
        })
    }

    /// One attempt on `target`, within `timeout`: the stream sequence once acknowledged.
    async fn send_within(
        &self,
        target: &str,
        room: &str,
        req: &SendRequest,
        timeout: Duration,
    ) -> Result<u64, ClientError> {
        match self {
            Self::Http(client) => client
                .send_within(target, room, req, timeout)
                .await
                .map(|reply| reply.seq),
            Self::Channel(pool) => pool.send_within(target, room, req, timeout).await,
        }
    }
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
                link: Link::new(config.transport, config.request_timeout)?,
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
        let link = p.link.clone();
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
            send_one(&link, route, record, body, &shared, begun).await;
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
/// transport failures, timeouts, closed channels and 5xx answers are retried; the message id
/// makes a retry of a send that was stored a duplicate JetStream drops.
async fn send_with_failover(
    link: &Link,
    route: &Route<'_>,
    room: &str,
    req: &SendRequest,
) -> Result<u64, ClientError> {
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
            match link
                .send_within(&target, room, req, left.min(ATTEMPT_TIMEOUT))
                .await
            {
                Ok(seq) => {
                    route.balancer.succeeded(&target);
                    return Ok(seq);
                }
                Err(
                    e @ (ClientError::Timeout | ClientError::Transport(_) | ClientError::Closed(_)),
                ) => {
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
    link: &Link,
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
    let result = send_with_failover(link, &route, &record.room, &req).await;
    let done = Instant::now();
    match result {
        Ok(seq) => {
            shared.sli.record(begun, done, Some(done - started));
            let acked_at = shared.micros();
            shared.ledger().acked(
                &record.room,
                &record.producer,
                record.counter,
                seq,
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures_util::{SinkExt, StreamExt};
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::Message;

    use super::*;
    use crate::load::config::Transport;
    use crate::wire::{ChannelReply, ChannelSend};

    /// Ids a fake talk-server acknowledged, by (room, producer, counter).
    type Acked = Arc<Mutex<Vec<(String, String, u64)>>>;

    /// A talk-server that acks the odd counters on every channel, answers nothing else, and
    /// after `frames` frames in all drops every channel and stops listening: the client
    /// loses its channels mid-pipeline and cannot open new ones.
    async fn fake_server(listener: TcpListener, frames: usize, acked: Acked) {
        let (gone_tx, gone) = watch::channel(false);
        let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        loop {
            let mut stop = gone.clone();
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.wait_for(|g| *g) => return,
            };
            let Ok((tcp, _)) = accepted else { return };
            let (acked, read, gone_tx, mut gone) =
                (acked.clone(), read.clone(), gone_tx.clone(), gone.clone());
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                loop {
                    let frame = tokio::select! {
                        f = ws.next() => f,
                        _ = gone.wait_for(|g| *g) => return,
                    };
                    let text = match frame {
                        Some(Ok(Message::Text(text))) => text,
                        // The client's pings: answered as they are read.
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        _ => return,
                    };
                    let s: ChannelSend = serde_json::from_str(&text).unwrap();
                    if read.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 >= frames {
                        let _ = gone_tx.send(true);
                        return;
                    }
                    if s.counter % 2 == 1 {
                        acked
                            .lock()
                            .unwrap()
                            .push((s.room.clone(), s.producer.clone(), s.counter));
                        let ack = ChannelReply::Ack {
                            room: s.room,
                            producer: s.producer,
                            counter: s.counter,
                            seq: 1,
                            duplicate: false,
                        };
                        let text = serde_json::to_string(&ack).unwrap();
                        if ws.send(Message::Text(text.into())).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    }

    /// talk-load over the channel, its channels dropped mid-pipeline: only the sends whose
    /// ack frame arrived count as acknowledged; every other one is indeterminate.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sends_cut_off_mid_pipeline_are_indeterminate_never_acknowledged() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let acked: Acked = Arc::default();
        tokio::spawn(fake_server(listener, 60, acked.clone()));

        let mut config = LoadConfig::for_targets(vec![base.clone()]);
        config.transport = Transport::Channel;
        config.rate = 200.0;
        config.duration = Duration::from_secs(1);
        config.connections = 2;
        config.rooms = 2;
        config.request_timeout = Duration::from_secs(2);
        let targets = Arc::new(Targets::parse(&[base]).unwrap());
        let shared = Arc::new(Shared::new(Duration::from_secs(10)));
        let (_stop_tx, stop) = watch::channel(false);
        run_generator(&config, "t", targets, shared.clone(), stop)
            .await
            .unwrap();

        // Read back exactly what the fake acknowledged: an acknowledged send it did not
        // ack would then count as lost.
        let mut acked = acked.lock().unwrap().clone();
        // A retried send may have been acked twice.
        acked.sort();
        acked.dedup();
        let mut ledger = shared.ledger();
        for (room, producer, counter) in &acked {
            ledger.final_read(room, producer, *counter);
        }
        let total = ledger.report().total;
        assert!(total.sent > 100, "{total:?}");
        assert!(total.acked > 0, "no ack got through: {total:?}");
        assert!(total.indeterminate > 0, "nothing was cut off: {total:?}");
        assert_eq!(total.acked + total.indeterminate, total.sent, "{total:?}");
        assert_eq!(
            total.lost, 0,
            "acknowledged without an ack frame: {total:?}"
        );
        assert!(
            total.acked <= acked.len() as u64,
            "{total:?} vs {}",
            acked.len()
        );
        assert_eq!(total.unexpected + total.duplicated, 0, "{total:?}");
    }
}
