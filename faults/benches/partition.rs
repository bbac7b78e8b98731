//! Apply/revert latency of a partition over 1, 50 and 500 network namespaces, through the
//! `nft` binary and over netlink in process.
//!
//! Run as root: `cargo bench -p firedrill-faults --bench partition`. Namespaces are created
//! first (not timed), then one partition is applied to all of them and reverted; only those
//! two steps are timed. Everything is deleted at the end, also on panic.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use firedrill_faults::nft::{self, Backend};
use firedrill_faults::{Cidr, Direction, InjectionId, Netns, RuleSet};

const SIZES: [usize; 3] = [1, 50, 500];
/// Backends and worker counts compared at each size (the library default is
/// `nft::DEFAULT_PARALLEL` workers and `Backend::Auto`, which is netlink for a partition).
const RUNS: [(Backend, &[usize]); 2] = [
    (Backend::Binary, &[8, 32, 64]),
    (Backend::Netlink, &[1, 8, 32, 64]),
];
const ROUNDS: usize = 3;

/// Runs `ip -batch -` with one command per line (one process for hundreds of namespaces).
fn ip_batch(lines: &[String]) -> Result<(), String> {
    let mut child = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("ip: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(lines.join("\n").as_bytes())
            .map_err(|e| format!("ip stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Namespaces deleted on drop.
struct Namespaces(Vec<String>);

impl Namespaces {
    fn create(n: usize) -> Result<Self, String> {
        let names: Vec<String> = (0..n)
            .map(|i| format!("fdb-{}-{i}", std::process::id()))
            .collect();
        let ns = Namespaces(names);
        ip_batch(
            &ns.0
                .iter()
                .map(|n| format!("netns add {n}"))
                .collect::<Vec<_>>(),
        )?;
        Ok(ns)
    }

    fn netns(&self) -> Result<Vec<Netns>, String> {
        self.0
            .iter()
            .map(|n| Netns::named(n).map_err(|e| e.to_string()))
            .collect()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        let _ = ip_batch(
            &self
                .0
                .iter()
                .map(|n| format!("netns del {n}"))
                .collect::<Vec<_>>(),
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn check(results: Vec<firedrill_faults::Result<()>>) -> Result<(), String> {
    match results.into_iter().find_map(Result::err) {
        Some(e) => Err(e.to_string()),
        None => Ok(()),
    }
}

fn run() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the partition benchmark needs root (network namespaces, nftables)".into());
    }
    let peers: Vec<Cidr> = ["10.1.0.0/16", "10.2.0.0/16", "fd00:2::/64"]
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|e: firedrill_faults::Error| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    let rules = RuleSet::Partition {
        peers,
        direction: Direction::Both,
        loss_percent: None,
        ports: None,
    };
    let id = InjectionId::new("bench-partition").map_err(|e| e.to_string())?;
    println!(
        "partition (both directions, 3 peer networks) over N namespaces, best of {ROUNDS} \
         (library default: {} workers)",
        nft::DEFAULT_PARALLEL
    );
    println!(
        "{:>5} {:>8} {:>8} {:>11} {:>12} {:>11} {:>13}",
        "N", "backend", "workers", "apply ms", "apply ms/ns", "revert ms", "revert ms/ns"
    );
    for n in SIZES {
        let namespaces = Namespaces::create(n)?;
        let targets = namespaces.netns()?;
        for (backend, workers) in RUNS {
            for (i, &workers) in workers.iter().enumerate() {
                // More workers than namespaces measures the same thing again.
                if workers > n && i > 0 {
                    continue;
                }
                let (apply, revert) = measure(&targets, &id, &rules, workers, backend)?;
                let per = |d: Duration| ms(d) / n as f64;
                let name = format!("{backend:?}").to_lowercase();
                println!(
                    "{n:>5} {name:>8} {workers:>8} {:>11.1} {:>12.2} {:>11.1} {:>13.2}",
                    ms(apply),
                    per(apply),
                    ms(revert),
                    per(revert)
                );
            }
        }
    }
    Ok(())
}

/// Best-of-`ROUNDS` apply and revert time with `workers` threads through `backend`.
fn measure(
    targets: &[Netns],
    id: &InjectionId,
    rules: &RuleSet,
    workers: usize,
    backend: Backend,
) -> Result<(Duration, Duration), String> {
    let (mut best_apply, mut best_revert) = (Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        check(nft::apply_many_with(targets, id, rules, workers, backend))?;
        best_apply = best_apply.min(t.elapsed());
        let t = Instant::now();
        check(nft::revert_many_with(targets, id, workers, backend))?;
        best_revert = best_revert.min(t.elapsed());
    }
    // Prove the work was real: the table is there and the chains are gone again.
    for ns in targets {
        let listed = nft::list(ns).map_err(|e| e.to_string())?;
        if listed.is_none_or(|t| !t.chains.is_empty()) {
            return Err(format!("unexpected state in {}", ns.display()));
        }
    }
    Ok((best_apply, best_revert))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}
