//! Installing, removing and listing firedrill's nftables chains in a network namespace.
//!
//! Each change is one nftables JSON batch ([`crate::rules`]) and one atomic kernel
//! transaction. It goes to the kernel over netlink from this process ([`crate::nfnl`]),
//! encoded once however many namespaces it is sent to; a batch the encoder does not know
//! goes to the `nft` binary as JSON on stdin (`nft -j -f -`: a typed argv, no shell, no
//! rule text built from strings). Listing asks the kernel over netlink too (a chain dump
//! and a rule dump of firedrill's table), with `nft -j list` as the fallback.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::id::InjectionId;
use crate::netns::{self, Netns};
use crate::nfnl;
use crate::rules::{self, FAMILY, Hook, RuleSet, TABLE};

/// Default number of namespaces worked on at once by the `*_many` functions. A batch costs
/// little CPU but waits in the kernel for RCU grace periods when hooks are registered or
/// removed (an `nft` run: ~1 ms of CPU, ~10 ms of wall time); namespaces do not share that
/// wait, so many more workers than cores pays off (measured by the `partition` benchmark).
pub const DEFAULT_PARALLEL: usize = 32;

/// How a batch reaches the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Netlink from this process; the `nft` binary for a batch the encoder does not know.
    #[default]
    Auto,
    /// Netlink only: a batch the encoder does not know is refused as invalid input.
    Netlink,
    /// The `nft` binary, one process per batch and namespace.
    Binary,
}

/// A batch ready to send to any number of namespaces.
#[derive(Debug)]
enum Prepared<'a> {
    Netlink(nfnl::Batch),
    Binary(&'a Value),
}

/// Encodes `batch` for `backend`; fails only for [`Backend::Netlink`] and a batch the
/// encoder does not know.
fn prepare(batch: &Value, backend: Backend) -> Result<Prepared<'_>, nfnl::Unsupported> {
    if backend == Backend::Binary {
        return Ok(Prepared::Binary(batch));
    }
    match nfnl::encode(batch) {
        Ok(encoded) => Ok(Prepared::Netlink(encoded)),
        Err(e) if backend == Backend::Netlink => Err(e),
        Err(e) => {
            tracing::debug!(reason = %e, "this nft batch runs through the nft binary");
            Ok(Prepared::Binary(batch))
        }
    }
}

/// Sends a prepared batch in `ns`.
fn send(ns: &Netns, batch: &Prepared<'_>) -> Result<()> {
    match batch {
        Prepared::Netlink(b) => netns::run_in(ns, || nfnl::send_batch(b, NFT_TIMEOUT))?,
        Prepared::Binary(v) => {
            netns::run_in(ns, || run_nft(&["-j", "-f", "-"], Some(v)))?.map(|_| ())
        }
    }
}

fn nft_binary() -> &'static str {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("nft")
}

/// The longest one `nft` run may take, and the longest the netlink path waits for the
/// kernel's answers. A run takes ~10 ms; one that hangs (a wedged netlink socket, a
/// namespace being torn down) is killed so that it cannot hold up the reverts queued
/// behind it.
pub const NFT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `nft` with `args` (fixed strings only) and optional JSON input, in the calling
/// thread's network namespace, within [`NFT_TIMEOUT`]. Returns stdout.
fn run_nft(args: &[&str], input: Option<&Value>) -> Result<Vec<u8>> {
    let out = run_bounded(nft_binary(), args, input, NFT_TIMEOUT)?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.contains("Operation not permitted") {
            return Err(Error::Permission(format!("nft: {stderr}")));
        }
        Err(Error::Nft {
            status: out.status.to_string(),
            stderr,
        })
    }
}

/// Runs `binary` with `args` and optional JSON on stdin; kills it if it has not exited
/// within `limit`. Stdin, stdout and stderr are served by their own threads, so a child
/// that stops reading or writes a lot cannot block the clock.
fn run_bounded(
    binary: &str,
    args: &[&str],
    input: Option<&Value>,
    limit: Duration,
) -> Result<Output> {
    let bytes = input
        .map(serde_json::to_vec)
        .transpose()
        .map_err(|e| Error::Internal(e.to_string()))?;
    let mut child = Command::new(binary)
        .args(args)
        .env_clear()
        .stdin(if bytes.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Error::NftSpawn)?;
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || match (stdin, bytes) {
            // Dropping stdin afterwards closes it, so the child sees end of input.
            (Some(mut stdin), Some(bytes)) => stdin.write_all(&bytes),
            _ => Ok(()),
        });
        let out_reader = scope.spawn(move || drain(stdout));
        let err_reader = scope.spawn(move || drain(stderr));
        let deadline = Instant::now() + limit;
        let mut pause = Duration::from_micros(200);
        let status = loop {
            match child.try_wait().map_err(Error::NftSpawn)? {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    // Killing closes its pipes, which ends the reader threads.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Error::NftTimeout { after: limit });
                }
                None => {
                    std::thread::sleep(pause);
                    // Short pauses: a run takes ~10 ms and the partition of 500 namespaces is timed.
                    pause = (pause * 2).min(Duration::from_millis(1));
                }
            }
        };
        let joined = |what: &str| Error::Internal(format!("the {what} thread of nft panicked"));
        writer
            .join()
            .map_err(|_| joined("stdin"))?
            .map_err(Error::NftSpawn)?;
        let stdout = out_reader.join().map_err(|_| joined("stdout"))?;
        let stderr = err_reader.join().map_err(|_| joined("stderr"))?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    })
}

/// Everything a child writes to `pipe` until it closes it.
fn drain(pipe: Option<impl Read>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut pipe) = pipe {
        // A read error ends the output like end of file; the exit status says the rest.
        let _ = pipe.read_to_end(&mut buf);
    }
    buf
}

/// Runs one JSON batch in `ns` ([`Backend::Auto`]).
pub fn run_batch(ns: &Netns, batch: &Value) -> Result<()> {
    run_batch_via(ns, batch, Backend::Auto)
}

/// Runs one JSON batch in `ns` through `backend`.
pub fn run_batch_via(ns: &Netns, batch: &Value, backend: Backend) -> Result<()> {
    let prepared = prepare(batch, backend).map_err(|e| Error::invalid("nft batch", e.0))?;
    send(ns, &prepared)
}

/// Installs `rules` for injection `id` in `ns` (replacing what `id` had there).
pub fn apply(ns: &Netns, id: &InjectionId, rules: &RuleSet) -> Result<()> {
    let rules = rules.validated()?;
    run_batch(ns, &rules::apply_batch(id, &rules))
}

/// Removes injection `id`'s chains from `ns`. Succeeds when they are already gone.
pub fn revert(ns: &Netns, id: &InjectionId) -> Result<()> {
    run_batch(ns, &rules::revert_batch(id))
}

/// Deletes firedrill's table (every injection) from `ns`. Succeeds when it is absent.
pub fn cleanup(ns: &Netns) -> Result<()> {
    run_batch(ns, &rules::cleanup_batch())
}

/// Deletes firedrill's table from `ns` only when no chain is left in it.
pub fn remove_table_if_empty(ns: &Netns) -> Result<bool> {
    match list(ns)? {
        Some(t) if t.chains.is_empty() => cleanup(ns).map(|()| true),
        _ => Ok(false),
    }
}

/// One chain found in firedrill's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledChain {
    pub name: String,
    /// The nftables hook (`prerouting`, ...), `None` for a regular chain.
    pub hook: Option<String>,
    pub rules: usize,
    /// The owning injection when the name follows firedrill's scheme.
    pub injection: Option<(InjectionId, Hook)>,
}

/// What firedrill has installed in one namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    pub chains: Vec<InstalledChain>,
}

impl Installed {
    /// Injection ids with at least one chain, and the hooks they cover.
    pub fn injections(&self) -> BTreeMap<InjectionId, Vec<Hook>> {
        let mut out: BTreeMap<InjectionId, Vec<Hook>> = BTreeMap::new();
        for (id, hook) in self.chains.iter().filter_map(|c| c.injection.clone()) {
            out.entry(id).or_default().push(hook);
        }
        out
    }

    /// Total number of rules over all chains.
    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules).sum()
    }
}

/// Lists firedrill's table in `ns`; `None` when the table does not exist
/// ([`Backend::Auto`]).
pub fn list(ns: &Netns) -> Result<Option<Installed>> {
    list_via(ns, Backend::Auto)
}

/// Lists firedrill's table in `ns` through `backend`: over netlink from this process
/// ([`nfnl::list_table`]), or with `nft -j list table`. [`Backend::Auto`] runs the binary
/// when netlink fails in a way the binary may not (a socket or an answer it cannot use,
/// a request the kernel does not know); a missing permission, a timeout or a namespace
/// that is gone fail either way and are returned as they are.
pub fn list_via(ns: &Netns, backend: Backend) -> Result<Option<Installed>> {
    netns::run_in(ns, || match backend {
        Backend::Binary => list_binary(),
        Backend::Netlink => list_netlink(),
        Backend::Auto => match list_netlink() {
            Err(e @ (Error::NftNetlink(_) | Error::NftRefused { .. })) => {
                tracing::debug!(error = %e, "listing nftables over netlink failed; running nft");
                list_binary()
            }
            other => other,
        },
    })?
}

/// [`list_via`] over netlink, in the calling thread's namespace.
fn list_netlink() -> Result<Option<Installed>> {
    let listed = nfnl::list_table(TABLE, NFT_TIMEOUT)?;
    Ok(listed.map(|chains| Installed {
        chains: chains
            .into_iter()
            .map(|c| InstalledChain {
                injection: rules::parse_chain_name(&c.name),
                hook: c.hook,
                rules: c.rules,
                name: c.name,
            })
            .collect(),
    }))
}

/// [`list_via`] with the binary, in the calling thread's namespace.
fn list_binary() -> Result<Option<Installed>> {
    match run_nft(&["-j", "list", "table", FAMILY, TABLE], None) {
        Ok(stdout) => parse_listing(&stdout).map(Some),
        Err(Error::Nft { stderr, .. }) if stderr.contains("No such file or directory") => Ok(None),
        Err(e) => Err(e),
    }
}

fn parse_listing(stdout: &[u8]) -> Result<Installed> {
    let v: Value = serde_json::from_slice(stdout).map_err(|e| Error::NftOutput(e.to_string()))?;
    let items = v
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::NftOutput("no \"nftables\" array".into()))?;
    let mut chains: Vec<InstalledChain> = Vec::new();
    let mut rule_counts: BTreeMap<String, usize> = BTreeMap::new();
    for item in items {
        if let Some(c) = item.get("chain") {
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::NftOutput("chain without name".into()))?
                .to_string();
            chains.push(InstalledChain {
                injection: rules::parse_chain_name(&name),
                hook: c.get("hook").and_then(Value::as_str).map(str::to_string),
                rules: 0,
                name,
            });
        } else if let Some(chain) = item
            .get("rule")
            .and_then(|r| r.get("chain"))
            .and_then(Value::as_str)
        {
            *rule_counts.entry(chain.to_string()).or_default() += 1;
        }
    }
    for c in &mut chains {
        c.rules = rule_counts.get(&c.name).copied().unwrap_or(0);
    }
    Ok(Installed { chains })
}

/// Runs `op` for every namespace with up to `workers` threads (at least one); results keep
/// the order of `targets`.
pub fn for_each_parallel<T, F>(targets: &[Netns], workers: usize, op: F) -> Vec<Result<T>>
where
    F: Fn(&Netns) -> Result<T> + Sync,
    T: Send,
{
    let slots: Vec<Mutex<Option<Result<T>>>> = targets.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let workers = targets.len().min(workers.max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(ns) = targets.get(i) else { break };
                    let r = op(ns);
                    if let Some(slot) = slots.get(i) {
                        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                    }
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|s| {
            s.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .unwrap_or_else(|| Err(Error::Internal("worker did not finish".into())))
        })
        .collect()
}

/// [`apply`] over many namespaces with [`DEFAULT_PARALLEL`] workers; one result per
/// namespace, in order.
pub fn apply_many(targets: &[Netns], id: &InjectionId, rules: &RuleSet) -> Vec<Result<()>> {
    apply_many_with(targets, id, rules, DEFAULT_PARALLEL, Backend::Auto)
}

/// [`apply_many`] with an explicit number of workers and backend.
pub fn apply_many_with(
    targets: &[Netns],
    id: &InjectionId,
    rules: &RuleSet,
    workers: usize,
    backend: Backend,
) -> Vec<Result<()>> {
    match rules.validated() {
        Ok(rules) => run_many(targets, &rules::apply_batch(id, &rules), workers, backend),
        Err(e) => each_fails(targets, "rules", &e.to_string()),
    }
}

/// [`revert`] over many namespaces with [`DEFAULT_PARALLEL`] workers; one result per
/// namespace, in order.
pub fn revert_many(targets: &[Netns], id: &InjectionId) -> Vec<Result<()>> {
    revert_many_with(targets, id, DEFAULT_PARALLEL, Backend::Auto)
}

/// [`revert_many`] with an explicit number of workers and backend.
pub fn revert_many_with(
    targets: &[Netns],
    id: &InjectionId,
    workers: usize,
    backend: Backend,
) -> Vec<Result<()>> {
    run_many(targets, &rules::revert_batch(id), workers, backend)
}

/// One batch in every namespace, encoded once.
fn run_many(targets: &[Netns], batch: &Value, workers: usize, backend: Backend) -> Vec<Result<()>> {
    match prepare(batch, backend) {
        Ok(prepared) => for_each_parallel(targets, workers, |ns| send(ns, &prepared)),
        Err(e) => each_fails(targets, "nft batch", &e.0),
    }
}

/// The same invalid-input error for every namespace.
fn each_fails(targets: &[Netns], field: &'static str, reason: &str) -> Vec<Result<()>> {
    targets
        .iter()
        .map(|_| Err(Error::invalid(field, reason)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hung_nft_is_killed_at_the_limit_and_says_so() {
        let started = Instant::now();
        let result = run_bounded("/bin/sleep", &["30"], None, Duration::from_millis(300));
        assert!(
            matches!(result, Err(Error::NftTimeout { .. })),
            "{result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "killed, not waited for: {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_bounded_run_feeds_stdin_and_keeps_all_of_stdout() {
        // More than a pipe buffer each way: neither side may block the other.
        let big: Vec<u32> = (0..40_000).collect();
        let input = serde_json::json!({ "numbers": big });
        let out =
            run_bounded("/bin/cat", &[], Some(&input), Duration::from_secs(10)).expect("cat runs");
        assert!(out.status.success());
        let echoed: Value = serde_json::from_slice(&out.stdout).expect("json back");
        assert_eq!(echoed, input);
    }

    #[test]
    fn parses_listing() {
        let out = br#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "inet", "name": "firedrill", "handle": 1}},
            {"chain": {"family": "inet", "table": "firedrill", "name": "p1-in", "handle": 1,
                "type": "filter", "hook": "prerouting", "prio": 0, "policy": "accept"}},
            {"chain": {"family": "inet", "table": "firedrill", "name": "stray", "handle": 2}},
            {"rule": {"family": "inet", "table": "firedrill", "chain": "p1-in", "handle": 3, "expr": []}},
            {"rule": {"family": "inet", "table": "firedrill", "chain": "p1-in", "handle": 4, "expr": []}}]}"#;
        let installed = parse_listing(out).unwrap();
        assert_eq!(installed.chains.len(), 2);
        assert_eq!(installed.chains[0].rules, 2);
        assert_eq!(installed.chains[0].hook.as_deref(), Some("prerouting"));
        assert_eq!(installed.chains[1].injection, None);
        assert_eq!(installed.rule_count(), 2);
        let ids = installed.injections();
        assert_eq!(ids.len(), 1);
        assert_eq!(ids[&InjectionId::new("p1").unwrap()], vec![Hook::In]);
        assert!(parse_listing(b"{}").is_err());
    }
}
