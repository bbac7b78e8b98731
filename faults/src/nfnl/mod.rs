//! nftables over netlink, in process.
//!
//! [`crate::rules`] builds each transaction as nftables JSON. Running `nft -j -f -` on it
//! costs a process per namespace (~10 ms of wall time, 1.1–1.4 s for 500 namespaces). This
//! module encodes the same JSON once as an nfnetlink batch, the very messages `nft` sends
//! for it (checked against `nft --debug=mnl`, so `nft list` shows the same ruleset), and
//! sends it on a `NETLINK_NETFILTER` socket of the calling thread's network namespace. The
//! kernel applies a batch whole or not at all, as with `nft`, and answers every message
//! (`NLM_F_ACK`), so a refusal comes back as [`Error::NftRefused`] with its errno.
//!
//! The encoder knows what the rules produce (see `encode`) and answers [`Unsupported`] for
//! anything else; the caller then hands that batch to the `nft` binary.
//!
//! Everything here is safe code: nix wraps the socket calls.

mod encode;
mod list;

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, send, setsockopt, socket,
    sockopt,
};
use nix::sys::time::TimeVal;

use crate::error::{Error, Result};

pub use encode::encode;
pub use list::{ListedChain, list_table};

/// A JSON batch the encoder does not know how to put on the wire (an expression, command or
/// field it has not been taught); the `nft` binary can still run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not encodable as netlink: {}", self.0)
    }
}

/// Netlink and nfnetlink header values (linux/netlink.h, linux/netfilter/nfnetlink.h).
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFPROTO_UNSPEC: u8 = 0;

/// The largest attribute payload: its length is a u16 that counts its 4-byte header.
const MAX_ATTR: usize = u16::MAX as usize - 4;

/// Netlink attributes of one message or nest, in wire format.
#[derive(Debug, Default)]
struct Attrs {
    buf: Vec<u8>,
    /// An attribute (or a nest) outgrew [`MAX_ATTR`]; the message cannot be sent.
    too_large: bool,
}

impl Attrs {
    fn put(&mut self, ty: u16, data: &[u8]) {
        self.header(ty, data.len());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn header(&mut self, ty: u16, payload: usize) {
        self.too_large |= payload > MAX_ATTR;
        let len = u16::try_from(payload + 4).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
    }

    fn pad(&mut self) {
        self.buf.resize(self.buf.len().next_multiple_of(4), 0);
    }

    /// A 32-bit value in network byte order, as nf_tables wants its numbers.
    fn u32(&mut self, ty: u16, v: u32) {
        self.put(ty, &v.to_be_bytes());
    }

    /// A NUL-terminated string.
    fn str(&mut self, ty: u16, s: &str) {
        self.header(ty, s.len() + 1);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    fn nest(&mut self, ty: u16, inner: Attrs) {
        self.too_large |= inner.too_large;
        self.header(ty | NLA_F_NESTED, inner.buf.len());
        self.buf.extend_from_slice(&inner.buf);
    }

    /// A nest built in place by `f`.
    fn nested(&mut self, ty: u16, f: impl FnOnce(&mut Attrs)) {
        let mut inner = Attrs::default();
        f(&mut inner);
        self.nest(ty, inner);
    }
}

/// One nfnetlink batch, encoded once and sendable to any number of namespaces.
#[derive(Debug, Clone)]
pub struct Batch {
    bytes: Vec<u8>,
    /// Sequence number of the batch header: the kernel answers it for the whole batch.
    begin_seq: u32,
    /// Every acknowledged message: its sequence number and what it does, for errors.
    acks: Vec<(u32, String)>,
    /// The next message's sequence number.
    seq: u32,
}

impl Batch {
    fn new() -> Self {
        let mut batch = Batch {
            bytes: Vec::new(),
            begin_seq: 0,
            acks: Vec::new(),
            seq: 0,
        };
        batch.begin_seq = batch.frame(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, NFPROTO_UNSPEC, &[]);
        batch
    }

    /// Appends one netlink message (header, nfgenmsg, attributes); returns its sequence
    /// number.
    fn frame(&mut self, ty: u16, flags: u16, family: u8, attrs: &[u8]) -> u32 {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let len = NLMSG_HDRLEN + 4 + attrs.len();
        self.bytes
            .extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
        self.bytes.extend_from_slice(&ty.to_ne_bytes());
        self.bytes.extend_from_slice(&flags.to_ne_bytes());
        self.bytes.extend_from_slice(&seq.to_ne_bytes());
        self.bytes.extend_from_slice(&0u32.to_ne_bytes());
        // nfgenmsg: family, version 0, resource id (the subsystem, for batch frames).
        let res_id = if family == NFPROTO_UNSPEC {
            NFNL_SUBSYS_NFTABLES
        } else {
            0
        };
        self.bytes.push(family);
        self.bytes.push(0);
        self.bytes.extend_from_slice(&res_id.to_be_bytes());
        self.bytes.extend_from_slice(attrs);
        seq
    }

    /// Appends an nf_tables message (`NFT_MSG_*`) that the kernel acknowledges.
    fn message(
        &mut self,
        msg: u16,
        flags: u16,
        family: u8,
        attrs: Attrs,
        what: String,
    ) -> Result<(), Unsupported> {
        if attrs.too_large {
            return Err(Unsupported(format!("{what}: an attribute exceeds 64 KiB")));
        }
        let seq = self.frame(
            (NFNL_SUBSYS_NFTABLES << 8) | msg,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            family,
            &attrs.buf,
        );
        self.acks.push((seq, what));
        Ok(())
    }

    fn finish(mut self) -> Self {
        self.frame(NFNL_MSG_BATCH_END, NLM_F_REQUEST, NFPROTO_UNSPEC, &[]);
        self
    }

    /// The wire bytes (for tests and diagnostics).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// How many messages the kernel will acknowledge.
    pub fn messages(&self) -> usize {
        self.acks.len()
    }
}

/// Sends `batch` on a new `NETLINK_NETFILTER` socket of the calling thread's network
/// namespace and waits at most `limit` for the kernel's answer to every message. The
/// first refusal (lowest sequence number: the command that failed first) is the error.
pub fn send_batch(batch: &Batch, limit: Duration) -> Result<()> {
    // A batch must arrive as one datagram, so the send buffer must hold it whole (`nft`
    // raises it the same way); the answers to a large batch need room too.
    let fd = open((batch.bytes.len() * 2).max(1 << 20), limit)?;
    let sent = send(fd.as_raw_fd(), &batch.bytes, MsgFlags::empty()).map_err(io("send"))?;
    if sent != batch.bytes.len() {
        return Err(Error::NftNetlink(format!(
            "sent {sent} of {} bytes",
            batch.bytes.len()
        )));
    }

    let mut pending: BTreeSet<u32> = batch.acks.iter().map(|(seq, _)| *seq).collect();
    let mut refused: BTreeMap<u32, Errno> = BTreeMap::new();
    let deadline = Instant::now() + limit;
    // An answer echoes a refused message; a larger one arrives cut short, which is fine:
    // only its headers are read.
    let mut buf = vec![0u8; 64 * 1024];
    while !pending.is_empty() {
        let n = match recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_TRUNC) {
            Ok(n) => n.min(buf.len()),
            Err(Errno::EAGAIN) => return Err(timeout(limit)),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(io("recv")(e)),
        };
        for (seq, errno) in answers(buf.get(..n).unwrap_or_default()) {
            if seq == batch.begin_seq && errno != 0 {
                // The batch as a whole was refused (no permission, no memory): nothing
                // else will be answered.
                return Err(refusal("the batch", Errno::from_raw(errno)));
            }
            if pending.remove(&seq) && errno != 0 {
                refused.insert(seq, Errno::from_raw(errno));
            }
        }
        if !pending.is_empty() && Instant::now() >= deadline {
            return Err(timeout(limit));
        }
    }
    match refused.first_key_value() {
        None => Ok(()),
        Some((seq, errno)) => {
            let what = batch
                .acks
                .iter()
                .find(|(s, _)| s == seq)
                .map_or("a message", |(_, w)| w.as_str());
            Err(refusal(what, *errno))
        }
    }
}

/// An error of a socket call.
fn io(what: &'static str) -> impl Fn(Errno) -> Error {
    move |e: Errno| Error::NftNetlink(format!("{what}: {e}"))
}

/// A `NETLINK_NETFILTER` socket of the calling thread's network namespace, with `room`
/// bytes of send and receive buffer, whose receives give up after `limit`.
fn open(room: usize, limit: Duration) -> Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    )
    .map_err(io("socket"))?;
    setsockopt(&fd, sockopt::SndBufForce, &room).map_err(io("SO_SNDBUFFORCE"))?;
    setsockopt(&fd, sockopt::RcvBufForce, &room).map_err(io("SO_RCVBUFFORCE"))?;
    let wait = TimeVal::new(
        i64::try_from(limit.as_secs()).unwrap_or(i64::MAX),
        i64::from(limit.subsec_micros()),
    );
    setsockopt(&fd, sockopt::ReceiveTimeout, &wait).map_err(io("SO_RCVTIMEO"))?;
    Ok(fd)
}

/// No answer in time: the batch may still be applied later, like any call that timed out.
fn timeout(after: Duration) -> Error {
    Error::Timeout {
        what: "the nftables answer over netlink".into(),
        after,
    }
}

fn refusal(what: &str, errno: Errno) -> Error {
    if errno == Errno::EPERM {
        Error::Permission(format!("nftables: {what}: {errno}"))
    } else {
        Error::NftRefused {
            what: what.to_owned(),
            errno,
        }
    }
}

/// The acknowledgements in one received datagram: (sequence number, errno), where errno 0
/// means success. Anything else in it is skipped.
fn answers(mut data: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    while data.len() >= NLMSG_HDRLEN {
        let word = |at: usize| -> Option<[u8; 4]> { data.get(at..at + 4)?.try_into().ok() };
        let (Some(len), Some(ty_flags), Some(seq)) = (word(0), word(4), word(8)) else {
            break;
        };
        let len = u32::from_ne_bytes(len) as usize;
        let ty = u16::from_ne_bytes([ty_flags[0], ty_flags[1]]);
        if len < NLMSG_HDRLEN {
            break;
        }
        if ty == NLMSG_ERROR
            && let Some(code) = word(NLMSG_HDRLEN)
        {
            // struct nlmsgerr: a negative errno (0 = ack), then the request's header.
            let code = i32::from_ne_bytes(code);
            out.push((u32::from_ne_bytes(seq), code.saturating_neg()));
        }
        data = data.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(seq: u32, code: i32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&code.to_ne_bytes());
        m.extend_from_slice(&[0; 16]);
        m
    }

    #[test]
    fn answers_reads_acks_and_errors_and_stops_at_garbage() {
        let mut data = ack(3, 0);
        data.extend(ack(4, -2));
        data.extend([1, 2, 3]);
        assert_eq!(answers(&data), vec![(3, 0), (4, Errno::ENOENT as i32)]);
        assert!(answers(&[0; 8]).is_empty());
        // A zero length would loop forever if it were trusted.
        assert!(answers(&[0; 20]).is_empty());
    }

    #[test]
    fn attributes_are_padded_and_nests_flagged() {
        let mut a = Attrs::default();
        a.str(1, "lo");
        a.nested(4, |n| n.u32(1, 7));
        assert_eq!(
            a.buf,
            [
                7, 0, 1, 0, b'l', b'o', 0, 0, // "lo\0" padded to 4
                12, 0, 4, 0x80, 8, 0, 1, 0, 0, 0, 0, 7,
            ]
        );
        let mut big = Attrs::default();
        big.put(1, &vec![0; MAX_ATTR + 1]);
        assert!(big.too_large);
    }

    #[test]
    fn a_batch_is_framed_by_begin_and_end() {
        let mut b = Batch::new();
        let mut attrs = Attrs::default();
        attrs.str(1, "firedrill");
        b.message(0, NLM_F_CREATE, 1, attrs, "add table".into())
            .unwrap();
        let b = b.finish();
        assert_eq!(b.messages(), 1);
        let types: Vec<u16> = {
            let mut out = Vec::new();
            let mut rest = b.bytes();
            while rest.len() >= NLMSG_HDRLEN {
                let len = u32::from_ne_bytes(rest[..4].try_into().unwrap()) as usize;
                out.push(u16::from_ne_bytes([rest[4], rest[5]]));
                rest = &rest[len..];
            }
            out
        };
        assert_eq!(types, vec![0x10, 0x0a00, 0x11]);
        // The batch header names the nf_tables subsystem, big-endian.
        assert_eq!(&b.bytes()[16..20], &[0, 0, 0, 10]);
    }
}
