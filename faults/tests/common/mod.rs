//! Test harness: throwaway network namespaces joined by veth pairs, and real traffic.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use firedrill_faults::{Netns, run_in};

/// Fails the test with a clear message unless running as root (CI runs as root).
pub fn require_root() {
    let euid = nix::unistd::geteuid();
    assert!(
        euid.is_root(),
        "firedrill-faults integration tests need root (network namespaces, nftables, mounts, \
         signals); run them as root, e.g. `sudo -E cargo test -p firedrill-faults` \
         (current euid {euid})"
    );
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique name per process and call (netns names are global to the machine).
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// A set of network namespaces, deleted on drop (also when the test panics).
pub struct Lab {
    pub names: Vec<String>,
    links: usize,
}

impl Lab {
    /// `n` namespaces with loopback up and no links yet.
    pub fn new(n: usize) -> Self {
        require_root();
        let mut lab = Lab {
            names: Vec::new(),
            links: 0,
        };
        for _ in 0..n {
            let name = unique("fdt");
            ip(&["netns", "add", &name]);
            lab.names.push(name.clone());
            ip(&["-n", &name, "link", "set", "lo", "up"]);
        }
        lab
    }

    /// `n` namespaces, every pair joined by its own veth link (see [`Lab::addr`]).
    pub fn mesh(n: usize) -> Self {
        let mut lab = Self::new(n);
        for a in 0..n {
            for b in a + 1..n {
                lab.link(a, b);
            }
        }
        lab
    }

    /// Joins namespaces `a` and `b` (indices) with a veth pair on 10.77.<link>.0/24;
    /// `a` gets .1, `b` gets .2. Addresses exist only inside these namespaces.
    pub fn link(&mut self, a: usize, b: usize) {
        let link = self.links;
        self.links += 1;
        let (na, nb) = (&self.names[a], &self.names[b]);
        let (va, vb) = (format!("v{link}a"), format!("v{link}b"));
        ip(&[
            "-n", na, "link", "add", &va, "type", "veth", "peer", "name", &vb, "netns", nb,
        ]);
        ip(&[
            "-n",
            na,
            "addr",
            "add",
            &format!("10.77.{link}.1/24"),
            "dev",
            &va,
        ]);
        ip(&[
            "-n",
            nb,
            "addr",
            "add",
            &format!("10.77.{link}.2/24"),
            "dev",
            &vb,
        ]);
        ip(&["-n", na, "link", "set", &va, "up"]);
        ip(&["-n", nb, "link", "set", &vb, "up"]);
    }

    pub fn ns(&self, i: usize) -> Netns {
        Netns::named(&self.names[i]).expect("valid netns name")
    }

    pub fn all(&self) -> Vec<Netns> {
        (0..self.names.len()).map(|i| self.ns(i)).collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Address of namespace `side` (0 = a, 1 = b) on link number `link` of a [`Lab`].
pub fn addr(link: usize, side: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        10,
        77,
        u8::try_from(link).expect("small link"),
        side as u8 + 1,
    )
}

const WAIT: Duration = Duration::from_millis(400);

/// Whether a TCP connection from `from` to `to` (listening on `addr`, in namespace `to_ns`)
/// completes and carries a byte each way.
pub fn tcp_works(from: &Netns, to: &Netns, addr: Ipv4Addr, port: u16) -> bool {
    let listener = run_in(to, || TcpListener::bind((addr, port)))
        .expect("enter netns")
        .expect("bind");
    let target = listener.local_addr().expect("local addr");
    tcp_to(from, &listener, target)
}

/// Like [`tcp_works`] against an existing listener.
pub fn tcp_to(from: &Netns, listener: &TcpListener, target: SocketAddr) -> bool {
    let stream = run_in(from, || TcpStream::connect_timeout(&target, WAIT)).expect("enter netns");
    let Ok(mut stream) = stream else { return false };
    listener.set_nonblocking(false).expect("blocking");
    let (mut server, _) = match listener.accept() {
        Ok(s) => s,
        Err(_) => return false,
    };
    server.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut buf = [0u8; 1];
    stream.write_all(b"x").is_ok()
        && server.read_exact(&mut buf).is_ok()
        && server.write_all(b"y").is_ok()
        && stream.read_exact(&mut buf).is_ok()
}

/// Whether a UDP datagram sent from `from` reaches `to` listening on `addr`.
pub fn udp_works(from: &Netns, to: &Netns, addr: Ipv4Addr) -> bool {
    let rx = run_in(to, || UdpSocket::bind((addr, 0)))
        .expect("enter netns")
        .expect("bind");
    rx.set_read_timeout(Some(WAIT)).expect("timeout");
    let target = rx.local_addr().expect("local addr");
    // A drop on the way out surfaces as EPERM from send; either way nothing arrives.
    let _ = run_in(from, || {
        let tx = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        tx.send_to(b"ping", target)
    })
    .expect("enter netns");
    let mut buf = [0u8; 16];
    matches!(rx.recv_from(&mut buf), Ok((4, _)))
}
