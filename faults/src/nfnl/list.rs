//! Listing one nftables table over netlink: what `nft -j list table` reads, decoded only as
//! far as [`crate::nft::Installed`] needs it (each chain's name and hook, and how many rules
//! it holds).
//!
//! The kernel is asked, on one socket of the calling thread's network namespace, for the
//! ruleset's generation, the table (absent: the kernel answers `ENOENT`, as `nft` reports
//! it), a dump of the family's chains and a dump of the table's rules, and the generation
//! again. A dump that the kernel marks interrupted (`NLM_F_DUMP_INTR`), or a generation that
//! moved meanwhile, means the ruleset changed while it was read: the listing starts over, as
//! `nft` does.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, recv, send};

use super::{
    Attrs, NFNL_SUBSYS_NFTABLES, NLM_F_REQUEST, NLMSG_ERROR, NLMSG_HDRLEN, io, open, refusal,
    timeout,
};
use crate::error::{Error, Result};

const NLMSG_DONE: u16 = 3;
const NLM_F_DUMP: u16 = 0x300;
/// Set on a dump's messages when the ruleset changed while it was being dumped.
const NLM_F_DUMP_INTR: u16 = 0x10;
/// An attribute's type without the nested and byte-order flags.
const NLA_TYPE_MASK: u16 = 0x3fff;

const NFPROTO_INET: u8 = 1;
const MSG_NEWTABLE: u16 = 0;
const MSG_GETTABLE: u16 = 1;
const MSG_NEWCHAIN: u16 = 3;
const MSG_GETCHAIN: u16 = 4;
const MSG_NEWRULE: u16 = 6;
const MSG_GETRULE: u16 = 7;
const MSG_NEWGEN: u16 = 15;
const MSG_GETGEN: u16 = 16;
const TABLE_NAME: u16 = 1;
const CHAIN_TABLE: u16 = 1;
const CHAIN_NAME: u16 = 3;
const CHAIN_HOOK: u16 = 4;
const HOOK_HOOKNUM: u16 = 1;
const RULE_TABLE: u16 = 1;
const RULE_CHAIN: u16 = 2;
const GEN_ID: u16 = 1;

/// How many times a listing starts over when the ruleset keeps changing under it.
const ATTEMPTS: usize = 5;

/// One chain of the listed table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedChain {
    pub name: String,
    /// The hook's name as `nft` prints it (`prerouting`, ...), `None` for a regular chain.
    pub hook: Option<String>,
    /// How many rules the chain holds.
    pub rules: usize,
}

/// The chains of table `table` of the `inet` family in the calling thread's network
/// namespace, in the kernel's order (the order `nft list` prints); `None` when the table
/// does not exist. Waits at most `limit` for each answer.
pub fn list_table(table: &str, limit: Duration) -> Result<Option<Vec<ListedChain>>> {
    let fd = open(1 << 20, limit)?;
    let mut conn = Conn {
        fd,
        seq: 0,
        limit,
        buf: vec![0; 64 * 1024],
    };
    for _ in 0..ATTEMPTS {
        if let Some(listed) = conn.attempt(table)? {
            return Ok(listed);
        }
    }
    Err(Error::NftNetlink(format!(
        "the ruleset changed while it was listed, {ATTEMPTS} times in a row"
    )))
}

/// One netlink socket and its requests.
struct Conn {
    fd: OwnedFd,
    seq: u32,
    limit: Duration,
    buf: Vec<u8>,
}

/// How a request ended.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// Answered in full; `true` when a dump was interrupted by a change.
    Done { interrupted: bool },
    /// Refused with this errno.
    Refused(Errno),
}

impl Conn {
    /// One consistent listing, or `None` when the ruleset changed while it was read.
    fn attempt(&mut self, table: &str) -> Result<Option<Option<Vec<ListedChain>>>> {
        let before = self.generation()?;

        let mut name = Attrs::default();
        name.str(TABLE_NAME, table);
        let mut found = false;
        match self.request(MSG_GETTABLE, 0, &name, |ty, _| {
            found |= ty == MSG_NEWTABLE;
        })? {
            Answer::Refused(Errno::ENOENT) => {
                return Ok((self.generation()? == before).then_some(None));
            }
            Answer::Refused(errno) => return Err(refusal("get table", errno)),
            Answer::Done { .. } if !found => {
                return Err(Error::NftNetlink(
                    "no table in the answer to get table".into(),
                ));
            }
            Answer::Done { .. } => {}
        }

        let mut chains: Vec<ListedChain> = Vec::new();
        let answer = self.request(MSG_GETCHAIN, NLM_F_DUMP, &Attrs::default(), |ty, attrs| {
            if ty == MSG_NEWCHAIN
                && let Some(chain) = chain_of(attrs, table)
            {
                chains.push(chain);
            }
        })?;
        let mut interrupted = match answer {
            Answer::Done { interrupted } => interrupted,
            Answer::Refused(errno) => return Err(refusal("list chains", errno)),
        };

        // The kernel dumps only this table's rules when asked for it (and the table is
        // checked again below, for a kernel that ignores the filter).
        let mut rules = Attrs::default();
        rules.str(RULE_TABLE, table);
        let answer = self.request(MSG_GETRULE, NLM_F_DUMP, &rules, |ty, attrs| {
            if ty != MSG_NEWRULE {
                return;
            }
            let (mut in_table, mut chain) = (false, None);
            for (kind, value) in attrs_of(attrs) {
                match kind {
                    RULE_TABLE => in_table = text(value) == Some(table),
                    RULE_CHAIN => chain = text(value),
                    _ => {}
                }
            }
            if in_table && let Some(c) = chain.and_then(|n| chains.iter_mut().find(|c| c.name == n))
            {
                c.rules += 1;
            }
        })?;
        match answer {
            Answer::Done { interrupted: i } => interrupted |= i,
            Answer::Refused(errno) => return Err(refusal("list rules", errno)),
        }

        let after = self.generation()?;
        Ok((!interrupted && after == before).then_some(Some(chains)))
    }

    /// The ruleset's generation: it changes with every committed batch.
    fn generation(&mut self) -> Result<u32> {
        let mut id = None;
        let answer = self.request(MSG_GETGEN, 0, &Attrs::default(), |ty, attrs| {
            if ty == MSG_NEWGEN {
                id = attrs_of(attrs)
                    .find(|(kind, _)| *kind == GEN_ID)
                    .and_then(|(_, v)| Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?)));
            }
        })?;
        match (answer, id) {
            (Answer::Done { .. }, Some(id)) => Ok(id),
            (Answer::Done { .. }, None) => Err(Error::NftNetlink(
                "no generation in the answer to get generation".into(),
            )),
            (Answer::Refused(errno), _) => Err(refusal("get generation", errno)),
        }
    }

    /// Sends one nf_tables request (`msg`, with `flags` besides `NLM_F_REQUEST`) and hands
    /// every answering message's type (`NFT_MSG_*`) and attributes to `each`, until the
    /// answer is complete: the one message of a get, or `NLMSG_DONE` for a dump.
    fn request(
        &mut self,
        msg: u16,
        flags: u16,
        attrs: &Attrs,
        mut each: impl FnMut(u16, &[u8]),
    ) -> Result<Answer> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = frame(msg, NLM_F_REQUEST | flags, seq, &attrs.buf);
        let sent = send(self.fd.as_raw_fd(), &bytes, MsgFlags::empty()).map_err(io("send"))?;
        if sent != bytes.len() {
            return Err(Error::NftNetlink(format!(
                "sent {sent} of {} bytes",
                bytes.len()
            )));
        }
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let deadline = Instant::now() + self.limit;
        let mut interrupted = false;
        loop {
            let n = match recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::MSG_TRUNC) {
                Ok(n) => n,
                Err(Errno::EAGAIN) => return Err(timeout(self.limit)),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(io("recv")(e)),
            };
            let Some(data) = self.buf.get(..n) else {
                return Err(Error::NftNetlink(format!(
                    "an answer of {n} bytes does not fit in {} bytes",
                    self.buf.len()
                )));
            };
            for m in messages(data) {
                if m.seq != seq {
                    continue;
                }
                interrupted |= m.flags & NLM_F_DUMP_INTR != 0;
                match m.ty {
                    NLMSG_ERROR | NLMSG_DONE => {
                        // struct nlmsgerr, or the dump's final status: a negative errno
                        // (0 = fine).
                        let code = m
                            .payload
                            .get(..4)
                            .and_then(|c| c.try_into().ok())
                            .map_or(0, i32::from_ne_bytes);
                        if code != 0 {
                            return Ok(Answer::Refused(Errno::from_raw(code.saturating_neg())));
                        }
                        if m.ty == NLMSG_DONE || !dump {
                            return Ok(Answer::Done { interrupted });
                        }
                    }
                    ty if ty >> 8 == NFNL_SUBSYS_NFTABLES => {
                        // After the nfgenmsg (family, version, resource id).
                        each(ty & 0xff, m.payload.get(4..).unwrap_or_default());
                        if !dump {
                            return Ok(Answer::Done { interrupted });
                        }
                    }
                    _ => {}
                }
            }
            if Instant::now() >= deadline {
                return Err(timeout(self.limit));
            }
        }
    }
}

/// One nf_tables request message of the `inet` family.
fn frame(msg: u16, flags: u16, seq: u32, attrs: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + 4 + attrs.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    out.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&[NFPROTO_INET, 0, 0, 0]);
    out.extend_from_slice(attrs);
    out
}

/// A chain message's chain, when it belongs to `table`.
fn chain_of(attrs: &[u8], table: &str) -> Option<ListedChain> {
    let (mut in_table, mut name, mut hook) = (false, None, None);
    for (kind, value) in attrs_of(attrs) {
        match kind {
            CHAIN_TABLE => in_table = text(value) == Some(table),
            CHAIN_NAME => name = text(value),
            CHAIN_HOOK => {
                hook = attrs_of(value)
                    .find(|(k, _)| *k == HOOK_HOOKNUM)
                    .and_then(|(_, v)| Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?)))
                    .map(hook_name);
            }
            _ => {}
        }
    }
    let name = name.filter(|_| in_table)?;
    Some(ListedChain {
        name: name.to_owned(),
        hook,
        rules: 0,
    })
}

/// The name `nft` prints for an `inet` hook number (linux/netfilter.h `nf_inet_hooks`).
fn hook_name(n: u32) -> String {
    match n {
        0 => "prerouting".into(),
        1 => "input".into(),
        2 => "forward".into(),
        3 => "output".into(),
        4 => "postrouting".into(),
        5 => "ingress".into(),
        other => format!("hook {other}"),
    }
}

/// A NUL-terminated string attribute.
fn text(value: &[u8]) -> Option<&str> {
    let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
    std::str::from_utf8(value.get(..end)?).ok()
}

/// One received netlink message.
#[derive(Debug)]
struct Message<'a> {
    ty: u16,
    flags: u16,
    seq: u32,
    /// What follows the netlink header.
    payload: &'a [u8],
}

/// The messages of one datagram; stops at the first malformed header.
fn messages(mut data: &[u8]) -> impl Iterator<Item = Message<'_>> {
    std::iter::from_fn(move || {
        let u32_at = |at: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(data.get(at..at + 4)?.try_into().ok()?))
        };
        let u16_at = |at: usize| -> Option<u16> {
            Some(u16::from_ne_bytes(data.get(at..at + 2)?.try_into().ok()?))
        };
        let len = usize::try_from(u32_at(0)?).ok()?;
        let (ty, flags, seq) = (u16_at(4)?, u16_at(6)?, u32_at(8)?);
        if len < NLMSG_HDRLEN {
            return None;
        }
        let payload = data.get(NLMSG_HDRLEN..len)?;
        data = data.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some(Message {
            ty,
            flags,
            seq,
            payload,
        })
    })
}

/// The attributes in `data`: (type without flags, payload); stops at the first malformed
/// one.
fn attrs_of(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes(data.get(..2)?.try_into().ok()?));
        let kind = u16::from_ne_bytes(data.get(2..4)?.try_into().ok()?) & NLA_TYPE_MASK;
        if len < 4 {
            return None;
        }
        let value = data.get(4..len)?;
        data = data.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some((kind, value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message as the kernel would send it: header, nfgenmsg, attributes.
    fn message(ty: u16, flags: u16, seq: u32, attrs: &Attrs) -> Vec<u8> {
        let mut m = frame(ty & 0xff, flags, seq, &attrs.buf);
        m[4..6].copy_from_slice(&ty.to_ne_bytes());
        m
    }

    #[test]
    fn a_chain_is_decoded_with_its_hook_and_only_from_its_table() {
        let mut base = Attrs::default();
        base.str(CHAIN_TABLE, "firedrill");
        base.str(CHAIN_NAME, "p1-in");
        base.nested(CHAIN_HOOK, |h| {
            h.u32(HOOK_HOOKNUM, 0);
            h.put(2, &0i32.to_be_bytes());
        });
        base.str(7, "filter");
        assert_eq!(
            chain_of(&base.buf, "firedrill"),
            Some(ListedChain {
                name: "p1-in".into(),
                hook: Some("prerouting".into()),
                rules: 0
            })
        );
        assert_eq!(chain_of(&base.buf, "other"), None);
        let mut regular = Attrs::default();
        regular.str(CHAIN_TABLE, "firedrill");
        regular.str(CHAIN_NAME, "stray");
        assert_eq!(chain_of(&regular.buf, "firedrill").unwrap().hook, None);
    }

    #[test]
    fn messages_and_attributes_stop_at_garbage() {
        let mut a = Attrs::default();
        a.str(CHAIN_NAME, "x");
        let nft = (NFNL_SUBSYS_NFTABLES << 8) | MSG_NEWCHAIN;
        let mut data = message(nft, NLM_F_DUMP_INTR, 7, &a);
        data.extend(message(NLMSG_DONE, 0, 7, &Attrs::default()));
        data.extend([0; 20]);
        let got: Vec<(u16, u16, u32)> = messages(&data).map(|m| (m.ty, m.flags, m.seq)).collect();
        assert_eq!(got, vec![(nft, NLM_F_DUMP_INTR, 7), (NLMSG_DONE, 0, 7)]);
        let first = messages(&data).next().unwrap();
        let attrs: Vec<(u16, &[u8])> = attrs_of(&first.payload[4..]).collect();
        assert_eq!(attrs, vec![(CHAIN_NAME, &b"x\0"[..])]);
        // A zero length would loop forever if it were trusted.
        assert_eq!(attrs_of(&[0, 0, 1, 0, 9, 9]).count(), 0);
        assert_eq!(messages(&[0; 16]).count(), 0);
    }

    #[test]
    fn hook_names_are_nfts() {
        assert_eq!(
            (0..6).map(hook_name).collect::<Vec<_>>(),
            [
                "prerouting",
                "input",
                "forward",
                "output",
                "postrouting",
                "ingress"
            ]
        );
    }
}
