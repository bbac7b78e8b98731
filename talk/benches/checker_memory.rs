//! Memory talk-load's loss checker holds per million messages: the whole-log form it had
//! before (every send record, a map of every message read, every message of the final
//! drain) against the [`Ledger`], which keeps settled messages as counter ranges.
//!
//! Prints figures, asserts nothing. Run: `cargo bench -p talk --bench checker_memory`.
//! Env: TALK_BENCH_MESSAGES (default 1000000).
//!
//! Each scenario runs in a child process of its own and reports resident memory from
//! /proc/self/status: VmRSS when sending ends (what a run holds while it goes on) and
//! VmHWM at the end (the peak, final check included), less the RSS at the child's start.

#![allow(clippy::unwrap_used)] // a benchmark harness: panics are the error report

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use talk::load::checker::{Ledger, ReadRecord, SendOutcome, SendRecord, check};

const CONNECTIONS: usize = 4;
const ROOMS: usize = 8;
/// One send in this many fails (indeterminate, never stored).
const FAIL_EVERY: u64 = 1000;
/// Acked messages the reader is behind by at any time.
const LAG: u64 = 500;

/// A field of /proc/self/status in KiB (VmRSS, VmHWM).
fn status_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// The i-th message as talk-load sends it: (room index, connection, per-lane counter).
fn message(i: u64) -> (usize, usize, u64) {
    let n = CONNECTIONS as u64;
    let conn = (i % n) as usize;
    let room = ((i / n) % ROOMS as u64) as usize;
    let counter = i / (n * ROOMS as u64) + 1;
    (room, conn, counter)
}

/// What talk-load held before the ledger: the send log, the live tracker's map of every
/// message read (a fresh producer string each, as the reader made them), then the final
/// drain's read log and the checker's indexes over both.
fn before(total: u64) -> (u64, u64) {
    let base = status_kib("VmRSS");
    let rooms: Vec<Arc<str>> = (0..ROOMS).map(|r| Arc::from(format!("load-{r}"))).collect();
    let producers: Vec<Arc<str>> = (0..CONNECTIONS)
        .map(|c| Arc::from(format!("r1795332899101-11794-p{c}")))
        .collect();
    let mut sends = Vec::new();
    let mut read: HashMap<(Arc<str>, Arc<str>, u64), u64> = HashMap::new();
    for i in 0..total {
        let (r, c, _) = message(i);
        // The old scheme: one counter per connection across rooms.
        let counter = i / CONNECTIONS as u64 + 1;
        let ok = !(i + 1).is_multiple_of(FAIL_EVERY);
        sends.push(SendRecord {
            room: rooms[r].clone(),
            producer: producers[c].clone(),
            counter,
            sent_at: i * 10,
            outcome: if ok {
                SendOutcome::Acked {
                    seq: i + 1,
                    acked_at: i * 10 + 5,
                }
            } else {
                SendOutcome::Indeterminate
            },
        });
        if ok {
            let producer: Arc<str> = Arc::from(&*producers[c]);
            read.insert((rooms[r].clone(), producer, counter), i + 1);
        }
    }
    let live = status_kib("VmRSS") - base;
    let mut reads = Vec::new();
    for (i, s) in sends.iter().enumerate() {
        if matches!(s.outcome, SendOutcome::Acked { .. }) {
            reads.push(ReadRecord {
                room: s.room.clone(),
                seq: i as u64 + 1,
                producer: Arc::from(&*s.producer),
                counter: s.counter,
            });
        }
    }
    let report = check(&sends, &reads);
    assert!(report.total.is_clean());
    let peak = status_kib("VmHWM") - base;
    drop((sends, read, reads));
    (live, peak)
}

/// The ledger, fed the way talk-load feeds it: register, ack, the live read `LAG` behind,
/// then the final pass over everything.
fn after(total: u64) -> (u64, u64, (usize, usize)) {
    let base = status_kib("VmRSS");
    let rooms: Vec<String> = (0..ROOMS).map(|r| format!("load-{r}")).collect();
    let producer = |c: usize, r: usize| format!("r1795332899101-11794-p{c}.{r}");
    let producers: Vec<Vec<String>> = (0..CONNECTIONS)
        .map(|c| (0..ROOMS).map(|r| producer(c, r)).collect())
        .collect();
    let at = Instant::now();
    let mut ledger = Ledger::default();
    let read_one = |ledger: &mut Ledger, i: u64| {
        let (r, c, counter) = message(i);
        if !(i + 1).is_multiple_of(FAIL_EVERY) {
            ledger.read(&rooms[r], &producers[c][r], counter, i + 1);
            ledger.advance(&rooms[r], i + 1);
        }
    };
    for i in 0..total {
        let (r, c, counter) = message(i);
        ledger.register(&rooms[r], &producers[c][r], counter, i * 10);
        if (i + 1).is_multiple_of(FAIL_EVERY) {
            ledger.failed(&rooms[r], &producers[c][r], counter);
        } else {
            ledger.acked(&rooms[r], &producers[c][r], counter, i + 1, i * 10 + 5, at);
        }
        if i >= LAG {
            read_one(&mut ledger, i - LAG);
        }
    }
    let live = status_kib("VmRSS") - base;
    let footprint = ledger.footprint();
    for i in total.saturating_sub(LAG)..total {
        read_one(&mut ledger, i);
    }
    for i in 0..total {
        let (r, c, counter) = message(i);
        if !(i + 1).is_multiple_of(FAIL_EVERY) {
            ledger.final_read(&rooms[r], &producers[c][r], counter);
        }
    }
    let report = ledger.report();
    assert!(report.total.is_clean(), "{:?}", report.total);
    assert_eq!(report.total.acked, total - total / FAIL_EVERY);
    let peak = status_kib("VmHWM") - base;
    drop(ledger);
    (live, peak, footprint)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // A child: run one scenario, print "live peak held ranges" in KiB.
    if let [_, flag, scenario, n, ..] = args.as_slice()
        && flag == "--scenario"
    {
        let n: u64 = n.parse().unwrap();
        let (live, peak, (held, ranges)) = match scenario.as_str() {
            "before" => {
                let (l, p) = before(n);
                (l, p, (0, 0))
            }
            _ => after(n),
        };
        println!("{live} {peak} {held} {ranges}");
        return;
    }
    let total: u64 = std::env::var("TALK_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    println!(
        "talk-load checker resident memory: {CONNECTIONS} connections x {ROOMS} rooms, \
         1 in {FAIL_EVERY} sends indeterminate, reader {LAG} messages behind"
    );
    let run = |scenario: &str, n: u64| -> Vec<u64> {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--scenario", scenario, &n.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect()
    };
    let mib = |kib: u64| kib as f64 / 1024.0;
    for (scenario, what) in [
        ("before", "send log + read map + drain log"),
        ("after", "ledger"),
    ] {
        for n in [total, total * 4] {
            let r = run(scenario, n);
            let per_m = |kib: u64| mib(kib) * 1e6 / n as f64;
            println!(
                "{scenario:<6} ({what:<31}) {n:>9} msgs: {:>8.1} MiB resident while sending, {:>8.1} MiB peak at the final check = {:>7.2} / {:>7.2} MiB per million{}",
                mib(r[0]),
                mib(r[1]),
                per_m(r[0]),
                per_m(r[1]),
                if scenario == "after" {
                    format!("  ({} held in full, {} ranges)", r[2], r[3])
                } else {
                    String::new()
                }
            );
        }
    }
}
