//! Cost of the power-loss mount against the bare backing directory.
//!
//! Run as root: `cargo bench -p firedrill-powerloss --bench throughput`. Prints:
//! - 200-byte appends each followed by fdatasync, per second (NATS with `sync: always`);
//! - sequential 1 MiB writes then one fsync, MB/s (a message block being filled);
//! - sequential 1 MiB reads of that file, MB/s, while dirty and after fsync.
//!
//! The daemon is SIGKILLed and its mount detached at the end, also on panic.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use firedrill_powerloss::mountinfo::{detach, fuse_mounted};

const SMALL: usize = 200;
const SMALL_OPS: usize = 1000;
const SMALL_MAX_TIME: Duration = Duration::from_secs(10);
const BIG_CHUNK: usize = 1 << 20;
const BIG_TOTAL: usize = 256 << 20;

/// The daemon; killed and its mount detached on drop.
struct Daemon {
    child: Child,
    mountpoint: std::path::PathBuf,
}

impl Daemon {
    fn start(backing: &Path, mountpoint: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_firedrill-powerloss"))
            .arg("--backing")
            .arg(backing)
            .arg("--mountpoint")
            .arg(mountpoint)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn firedrill-powerloss");
        let mut line = String::new();
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        stderr.read_line(&mut line).expect("read ready line");
        assert!(line.starts_with("powerloss: serving"), "{line}");
        assert!(fuse_mounted(mountpoint).expect("mountinfo"));
        Self {
            child,
            mountpoint: mountpoint.to_path_buf(),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if fuse_mounted(&self.mountpoint).unwrap_or(false) {
            let _ = detach(&self.mountpoint);
        }
    }
}

/// Appends of `SMALL` bytes, each made durable with fdatasync; returns (ops/s, p50, p99).
fn small_appends(dir: &Path) -> (f64, Duration, Duration) {
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join("small"))
        .expect("open small");
    let buf = [b'x'; SMALL];
    let mut lat = Vec::with_capacity(SMALL_OPS);
    let start = Instant::now();
    while lat.len() < SMALL_OPS && start.elapsed() < SMALL_MAX_TIME {
        let t = Instant::now();
        f.write_all(&buf).expect("append");
        f.sync_data().expect("fdatasync");
        lat.push(t.elapsed());
    }
    let rate = lat.len() as f64 / start.elapsed().as_secs_f64();
    lat.sort();
    (rate, lat[lat.len() / 2], lat[lat.len() * 99 / 100])
}

/// Sequential 1 MiB writes then one fsync; returns (write MB/s, fsync seconds, total MB/s).
fn sequential_write(dir: &Path) -> (f64, f64, f64) {
    let mut f = File::create(dir.join("big")).expect("create big");
    let chunk = vec![0xabu8; BIG_CHUNK];
    let start = Instant::now();
    for _ in 0..BIG_TOTAL / BIG_CHUNK {
        f.write_all(&chunk).expect("write");
    }
    let written = start.elapsed();
    f.sync_all().expect("fsync");
    let total = start.elapsed();
    let mb = BIG_TOTAL as f64 / 1e6;
    (
        mb / written.as_secs_f64(),
        (total - written).as_secs_f64(),
        mb / total.as_secs_f64(),
    )
}

/// Sequential 1 MiB reads of `name`; MB/s.
fn sequential_read(dir: &Path, name: &str) -> f64 {
    let mut f = File::open(dir.join(name)).expect("open for read");
    let mut buf = vec![0u8; BIG_CHUNK];
    let mut n = 0;
    let start = Instant::now();
    loop {
        let r = f.read(&mut buf).expect("read");
        if r == 0 {
            break;
        }
        n += r;
    }
    n as f64 / 1e6 / start.elapsed().as_secs_f64()
}

/// Writes a file without fsync so that reading it is served from the overlay.
fn write_dirty(dir: &Path, name: &str) {
    let mut f = File::create(dir.join(name)).expect("create dirty");
    let chunk = vec![0xcdu8; BIG_CHUNK];
    for _ in 0..BIG_TOTAL / BIG_CHUNK {
        f.write_all(&chunk).expect("write");
    }
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("throughput bench needs root (FUSE mount); skipped");
        return;
    }
    let direct = tempfile::tempdir().expect("tempdir");
    let backing = tempfile::tempdir().expect("tempdir");
    let mnt = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(backing.path(), mnt.path());

    println!("== {SMALL}-byte append + fdatasync ({SMALL_OPS} ops or {SMALL_MAX_TIME:?}) ==");
    for (label, dir) in [("direct", direct.path()), ("powerloss", mnt.path())] {
        let (rate, p50, p99) = small_appends(dir);
        println!("{label:>10}: {rate:8.0} ops/s   p50 {p50:>10.1?}   p99 {p99:>10.1?}");
    }

    println!(
        "== sequential {} MiB in 1 MiB writes + one fsync ==",
        BIG_TOTAL >> 20
    );
    for (label, dir) in [("direct", direct.path()), ("powerloss", mnt.path())] {
        let (write, fsync, total) = sequential_write(dir);
        println!(
            "{label:>10}: writes {write:7.0} MB/s   fsync {fsync:6.2} s   total {total:7.0} MB/s"
        );
    }

    println!("== sequential read, 1 MiB reads ==");
    println!(
        "{:>10}: {:7.0} MB/s",
        "direct",
        sequential_read(direct.path(), "big")
    );
    println!(
        "{:>10}: {:7.0} MB/s (synced file)",
        "powerloss",
        sequential_read(mnt.path(), "big")
    );
    write_dirty(mnt.path(), "dirty");
    println!(
        "{:>10}: {:7.0} MB/s (dirty file, served from the overlay)",
        "powerloss",
        sequential_read(mnt.path(), "dirty")
    );
    drop(daemon);
}
