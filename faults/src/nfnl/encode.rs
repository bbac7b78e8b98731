//! nftables JSON to nf_tables netlink messages: what `nft -j -f -` sends for the same
//! input, byte for byte where it matters to the kernel and to `nft list`.
//!
//! Known: `add`/`flush`/`delete` of `inet` tables and chains (base chains with type, hook,
//! priority and policy), `add rule` with `match` on `ip`/`ip6` `saddr`/`daddr` (an address,
//! a prefix, or a set of them), `th` `sport`/`dport` after a `meta l4proto` match,
//! `meta l4proto`/`iifname`/`oifname`, `numgen random` compared with `<`, `<=`, `>`, `>=`,
//! and `counter`, `accept`, `drop`. Anything else is [`Unsupported`].
//!
//! Like `nft`: a set of one element is a plain comparison; a set holding a prefix is an
//! interval set whose overlapping or adjacent ranges are merged; an `ip` or `ip6` match in
//! an `inet` table first checks `meta nfproto`.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::{Attrs, Batch, NLM_F_APPEND, NLM_F_CREATE, Unsupported};

type Enc<T = ()> = Result<T, Unsupported>;

fn unsupported<T>(what: impl std::fmt::Display) -> Enc<T> {
    Err(Unsupported(what.to_string()))
}

/// Values from linux/netfilter/nf_tables.h and linux/netfilter.h.
mod k {
    pub const NFPROTO_INET: u8 = 1;
    pub const NFPROTO_IPV4: u8 = 2;
    pub const NFPROTO_IPV6: u8 = 10;

    pub const MSG_NEWTABLE: u16 = 0;
    pub const MSG_DELTABLE: u16 = 2;
    pub const MSG_NEWCHAIN: u16 = 3;
    pub const MSG_DELCHAIN: u16 = 5;
    pub const MSG_NEWRULE: u16 = 6;
    pub const MSG_DELRULE: u16 = 8;
    pub const MSG_NEWSET: u16 = 9;
    pub const MSG_NEWSETELEM: u16 = 12;

    pub const TABLE_NAME: u16 = 1;
    pub const TABLE_FLAGS: u16 = 2;
    pub const CHAIN_TABLE: u16 = 1;
    pub const CHAIN_NAME: u16 = 3;
    pub const CHAIN_HOOK: u16 = 4;
    pub const CHAIN_POLICY: u16 = 5;
    pub const CHAIN_TYPE: u16 = 7;
    pub const HOOK_HOOKNUM: u16 = 1;
    pub const HOOK_PRIORITY: u16 = 2;
    pub const RULE_TABLE: u16 = 1;
    pub const RULE_CHAIN: u16 = 2;
    pub const RULE_EXPRESSIONS: u16 = 4;
    pub const LIST_ELEM: u16 = 1;
    pub const EXPR_NAME: u16 = 1;
    pub const EXPR_DATA: u16 = 2;
    pub const DATA_VALUE: u16 = 1;
    pub const DATA_VERDICT: u16 = 2;
    pub const VERDICT_CODE: u16 = 1;

    pub const SET_TABLE: u16 = 1;
    pub const SET_NAME: u16 = 2;
    pub const SET_FLAGS: u16 = 3;
    pub const SET_KEY_TYPE: u16 = 4;
    pub const SET_KEY_LEN: u16 = 5;
    pub const SET_DESC: u16 = 9;
    pub const SET_ID: u16 = 10;
    pub const SET_USERDATA: u16 = 13;
    pub const SET_DESC_SIZE: u16 = 1;
    pub const SET_ANONYMOUS: u32 = 0x1;
    pub const SET_CONSTANT: u32 = 0x2;
    pub const SET_INTERVAL: u32 = 0x4;
    pub const SET_ELEM_LIST_TABLE: u16 = 1;
    pub const SET_ELEM_LIST_SET: u16 = 2;
    pub const SET_ELEM_LIST_ELEMENTS: u16 = 3;
    pub const SET_ELEM_LIST_SET_ID: u16 = 4;
    pub const SET_ELEM_KEY: u16 = 1;
    pub const SET_ELEM_FLAGS: u16 = 3;
    pub const SET_ELEM_USERDATA: u16 = 6;
    pub const SET_ELEM_INTERVAL_END: u32 = 0x1;

    /// The one register `nft` uses for a single match (NFT_REG_1).
    pub const REG_1: u32 = 1;
    pub const REG_VERDICT: u32 = 0;
    pub const META_DREG: u16 = 1;
    pub const META_KEY: u16 = 2;
    pub const META_IIFNAME: u32 = 6;
    pub const META_OIFNAME: u32 = 7;
    pub const META_NFPROTO: u32 = 15;
    pub const META_L4PROTO: u32 = 16;
    pub const CMP_SREG: u16 = 1;
    pub const CMP_OP: u16 = 2;
    pub const CMP_DATA: u16 = 3;
    pub const PAYLOAD_DREG: u16 = 1;
    pub const PAYLOAD_BASE: u16 = 2;
    pub const PAYLOAD_OFFSET: u16 = 3;
    pub const PAYLOAD_LEN: u16 = 4;
    pub const PAYLOAD_NETWORK: u32 = 1;
    pub const PAYLOAD_TRANSPORT: u32 = 2;
    pub const LOOKUP_SET: u16 = 1;
    pub const LOOKUP_SREG: u16 = 2;
    pub const LOOKUP_SET_ID: u16 = 4;
    pub const IMMEDIATE_DREG: u16 = 1;
    pub const IMMEDIATE_DATA: u16 = 2;
    pub const BITWISE_SREG: u16 = 1;
    pub const BITWISE_DREG: u16 = 2;
    pub const BITWISE_LEN: u16 = 3;
    pub const BITWISE_MASK: u16 = 4;
    pub const BITWISE_XOR: u16 = 5;
    pub const BYTEORDER_SREG: u16 = 1;
    pub const BYTEORDER_DREG: u16 = 2;
    pub const BYTEORDER_OP: u16 = 3;
    pub const BYTEORDER_LEN: u16 = 4;
    pub const BYTEORDER_SIZE: u16 = 5;
    pub const BYTEORDER_HTON: u32 = 1;
    pub const NG_DREG: u16 = 1;
    pub const NG_MODULUS: u16 = 2;
    pub const NG_TYPE: u16 = 3;
    pub const NG_OFFSET: u16 = 4;
    pub const NG_RANDOM: u32 = 1;
    pub const NF_DROP: u32 = 0;
    pub const NF_ACCEPT: u32 = 1;

    /// nft's own type ids and user data (nftables' datatype.h, proto.h, udata.h): the
    /// kernel stores them for `nft list` to print the set's elements the way they went in.
    pub const TYPE_IPADDR: u32 = 7;
    pub const TYPE_IP6ADDR: u32 = 8;
    pub const TYPE_INET_PROTOCOL: u32 = 12;
    pub const TYPE_INET_SERVICE: u32 = 13;
    pub const BYTEORDER_HOST: u32 = 1;
    pub const BYTEORDER_BIG: u32 = 2;
    pub const EXPR_PAYLOAD: u32 = 7;
    pub const EXPR_META: u32 = 9;
    pub const PROTO_TH: u32 = 11;
    pub const PROTO_IP: u32 = 12;
    pub const PROTO_IP6: u32 = 13;
    pub const UDATA_SET_KEYBYTEORDER: u8 = 0;
    pub const UDATA_SET_MERGE_ELEMENTS: u8 = 2;
    pub const UDATA_SET_TYPEOF: u8 = 3;
    pub const UDATA_TYPEOF_EXPR: u8 = 0;
    pub const UDATA_TYPEOF_DATA: u8 = 1;
    pub const UDATA_SET_ELEM_FLAGS: u8 = 1;
    pub const SET_ELEM_F_INTERVAL_OPEN: u32 = 1;
}

/// Elements per set-element message: keeps each message's element list under the 64 KiB
/// an attribute can hold (an IPv6 interval element takes ~50 bytes).
const ELEMENTS_PER_MESSAGE: usize = 1000;

/// Encodes one nftables JSON batch (`{"nftables": [commands]}`) as one nfnetlink batch.
pub fn encode(batch: &Value) -> Result<Batch, Unsupported> {
    let Some(commands) = batch.get("nftables").and_then(Value::as_array) else {
        return unsupported("no \"nftables\" array");
    };
    let mut out = Encoder {
        batch: Batch::new(),
        next_set: 1,
    };
    for command in commands {
        out.command(command)?;
    }
    Ok(out.batch.finish())
}

struct Encoder {
    batch: Batch,
    /// Anonymous sets are numbered within the batch; a rule names its set by this id.
    next_set: u32,
}

/// The one key of a single-key JSON object and its value.
fn single(v: &Value) -> Enc<(&str, &Value)> {
    match v
        .as_object()
        .map(|m| m.iter().collect::<Vec<_>>())
        .as_deref()
    {
        Some([(key, value)]) => Ok((key.as_str(), value)),
        _ => unsupported(format!("expected an object with one key: {v}")),
    }
}

/// `v` as an object whose keys are all in `allowed`.
fn fields<'a>(v: &'a Value, allowed: &[&str]) -> Enc<&'a Map<String, Value>> {
    let Some(m) = v.as_object() else {
        return unsupported(format!("expected an object: {v}"));
    };
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => unsupported(format!("field {k:?}")),
        None => Ok(m),
    }
}

fn text<'a>(m: &'a Map<String, Value>, key: &str) -> Enc<&'a str> {
    match m.get(key).and_then(Value::as_str) {
        Some(s) if !s.contains('\0') => Ok(s),
        _ => unsupported(format!("{key:?} missing or not a string")),
    }
}

/// The family (only `inet`, firedrill's) and table of an object.
fn table_of(m: &Map<String, Value>, key: &str) -> Enc<String> {
    if text(m, "family")? != "inet" {
        return unsupported("a family other than inet");
    }
    Ok(text(m, key)?.to_owned())
}

impl Encoder {
    fn command(&mut self, command: &Value) -> Enc {
        let (verb, object) = single(command)?;
        let (kind, spec) = single(object)?;
        match (verb, kind) {
            ("add", "table") => {
                let m = fields(spec, &["family", "name"])?;
                let name = table_of(m, "name")?;
                let mut a = Attrs::default();
                a.str(k::TABLE_NAME, &name);
                a.u32(k::TABLE_FLAGS, 0);
                self.send(
                    k::MSG_NEWTABLE,
                    NLM_F_CREATE,
                    a,
                    format!("add table inet {name}"),
                )
            }
            ("delete", "table") => {
                let m = fields(spec, &["family", "name"])?;
                let name = table_of(m, "name")?;
                let mut a = Attrs::default();
                a.str(k::TABLE_NAME, &name);
                self.send(k::MSG_DELTABLE, 0, a, format!("delete table inet {name}"))
            }
            ("add", "chain") => self.add_chain(spec),
            ("flush", "chain") | ("delete", "chain") => {
                let m = fields(spec, &["family", "table", "name"])?;
                let table = table_of(m, "table")?;
                let name = text(m, "name")?;
                let mut a = Attrs::default();
                a.str(k::CHAIN_TABLE, &table);
                let (msg, name_attr) = if verb == "flush" {
                    // Deleting a chain's rules without naming one is a flush.
                    (k::MSG_DELRULE, k::RULE_CHAIN)
                } else {
                    (k::MSG_DELCHAIN, k::CHAIN_NAME)
                };
                a.str(name_attr, name);
                self.send(msg, 0, a, format!("{verb} chain inet {table} {name}"))
            }
            ("add", "rule") => self.add_rule(spec),
            _ => unsupported(format!("command {verb} {kind}")),
        }
    }

    fn send(&mut self, msg: u16, flags: u16, attrs: Attrs, what: String) -> Enc {
        self.batch.message(msg, flags, k::NFPROTO_INET, attrs, what)
    }

    fn add_chain(&mut self, spec: &Value) -> Enc {
        let m = fields(
            spec,
            &["family", "table", "name", "type", "hook", "prio", "policy"],
        )?;
        let table = table_of(m, "table")?;
        let name = text(m, "name")?;
        let mut a = Attrs::default();
        a.str(k::CHAIN_TABLE, &table);
        a.str(k::CHAIN_NAME, name);
        let base = ["type", "hook", "prio"].map(|f| m.contains_key(f));
        if base == [true; 3] {
            let kind = text(m, "type")?;
            if !["filter", "nat", "route"].contains(&kind) {
                return unsupported(format!("chain type {kind:?}"));
            }
            let hook = match text(m, "hook")? {
                "prerouting" => 0,
                "input" => 1,
                "forward" => 2,
                "output" => 3,
                "postrouting" => 4,
                other => return unsupported(format!("hook {other:?}")),
            };
            let Some(prio) = m
                .get("prio")
                .and_then(Value::as_i64)
                .and_then(|p| i32::try_from(p).ok())
            else {
                return unsupported("a chain priority that is not a number");
            };
            a.str(k::CHAIN_TYPE, kind);
            if m.contains_key("policy") {
                let policy = match text(m, "policy")? {
                    "accept" => k::NF_ACCEPT,
                    "drop" => k::NF_DROP,
                    other => return unsupported(format!("policy {other:?}")),
                };
                a.u32(k::CHAIN_POLICY, policy);
            }
            a.nested(k::CHAIN_HOOK, |h| {
                h.u32(k::HOOK_HOOKNUM, hook);
                h.put(k::HOOK_PRIORITY, &prio.to_be_bytes());
            });
        } else if base != [false; 3] || m.contains_key("policy") {
            return unsupported("a base chain without type, hook and priority");
        }
        self.send(
            k::MSG_NEWCHAIN,
            NLM_F_CREATE,
            a,
            format!("add chain inet {table} {name}"),
        )
    }

    fn add_rule(&mut self, spec: &Value) -> Enc {
        let m = fields(spec, &["family", "table", "chain", "expr"])?;
        let table = table_of(m, "table")?;
        let chain = text(m, "chain")?;
        let Some(exprs) = m.get("expr").and_then(Value::as_array) else {
            return unsupported("a rule without an expression list");
        };
        let mut rule = Rule::default();
        for expr in exprs {
            rule.expr(expr, &mut self.next_set)?;
        }
        for set in rule.sets {
            self.add_set(&table, chain, set)?;
        }
        let mut a = Attrs::default();
        a.str(k::RULE_TABLE, &table);
        a.str(k::RULE_CHAIN, chain);
        a.nest(k::RULE_EXPRESSIONS, rule.exprs);
        self.send(
            k::MSG_NEWRULE,
            NLM_F_CREATE | NLM_F_APPEND,
            a,
            format!("add rule inet {table} {chain}"),
        )
    }

    /// An anonymous constant set, then its elements in messages of bounded size.
    fn add_set(&mut self, table: &str, chain: &str, set: AnonSet) -> Enc {
        const NAME: &str = "__set%d";
        let what = format!("an anonymous set of a rule in inet {table} {chain}");
        let mut a = Attrs::default();
        a.str(k::SET_TABLE, table);
        a.str(k::SET_NAME, NAME);
        a.u32(k::SET_FLAGS, set.flags);
        a.u32(k::SET_KEY_TYPE, set.key.key_type);
        a.u32(k::SET_KEY_LEN, set.key.len);
        a.u32(k::SET_ID, set.id);
        a.nested(k::SET_DESC, |d| d.u32(k::SET_DESC_SIZE, set.size));
        a.put(
            k::SET_USERDATA,
            &set.key.udata(set.flags & k::SET_INTERVAL != 0),
        );
        self.send(k::MSG_NEWSET, NLM_F_CREATE, a, format!("add {what}"))?;
        for chunk in set.elements.chunks(ELEMENTS_PER_MESSAGE) {
            let mut a = Attrs::default();
            a.str(k::SET_ELEM_LIST_TABLE, table);
            a.str(k::SET_ELEM_LIST_SET, NAME);
            a.u32(k::SET_ELEM_LIST_SET_ID, set.id);
            a.nested(k::SET_ELEM_LIST_ELEMENTS, |list| {
                // Like libnftnl, each element's nest type is its 1-based position.
                for (i, e) in (1u16..).zip(chunk) {
                    list.nested(i, |el| {
                        if e.end {
                            el.u32(k::SET_ELEM_FLAGS, k::SET_ELEM_INTERVAL_END);
                        }
                        el.nested(k::SET_ELEM_KEY, |key| key.put(k::DATA_VALUE, &e.key));
                        if e.open {
                            el.put(
                                k::SET_ELEM_USERDATA,
                                &tlv(
                                    k::UDATA_SET_ELEM_FLAGS,
                                    &k::SET_ELEM_F_INTERVAL_OPEN.to_ne_bytes(),
                                ),
                            );
                        }
                    });
                }
            });
            self.send(
                k::MSG_NEWSETELEM,
                NLM_F_CREATE,
                a,
                format!("add the elements of {what}"),
            )?;
        }
        Ok(())
    }
}

/// One nftables user-data record: type, length, value (host byte order, as nft writes it).
fn tlv(ty: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![ty, u8::try_from(value.len()).unwrap_or(u8::MAX)];
    out.extend_from_slice(value);
    out
}

/// What a match loads into the register and how a set of its values is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// An IPv4 (`v6: false`) or IPv6 source or destination address.
    Addr {
        v6: bool,
        saddr: bool,
    },
    /// A transport-header port.
    Port {
        sport: bool,
    },
    L4proto,
    /// `iifname` or `oifname`.
    Ifname {
        meta_key: u32,
    },
}

/// How the kernel and `nft list` see a set's key.
struct Key {
    key_type: u32,
    len: u32,
    byteorder: u32,
    typeof_expr: u32,
    typeof_data: Vec<(u8, u32)>,
}

impl Key {
    /// The set's user data as `nft` writes it.
    fn udata(&self, interval: bool) -> Vec<u8> {
        let mut out = tlv(k::UDATA_SET_KEYBYTEORDER, &self.byteorder.to_ne_bytes());
        if interval {
            out.extend(tlv(k::UDATA_SET_MERGE_ELEMENTS, &1u32.to_ne_bytes()));
        }
        let data: Vec<u8> = self
            .typeof_data
            .iter()
            .flat_map(|(t, v)| tlv(*t, &v.to_ne_bytes()))
            .collect();
        let mut typeof_ = tlv(k::UDATA_TYPEOF_EXPR, &self.typeof_expr.to_ne_bytes());
        typeof_.extend(tlv(k::UDATA_TYPEOF_DATA, &data));
        out.extend(tlv(k::UDATA_SET_TYPEOF, &typeof_));
        out
    }
}

impl Field {
    fn parse(left: &Value) -> Enc<Field> {
        let (kind, spec) = single(left)?;
        match kind {
            "payload" => {
                let m = fields(spec, &["protocol", "field"])?;
                match (text(m, "protocol")?, text(m, "field")?) {
                    (p @ ("ip" | "ip6"), f @ ("saddr" | "daddr")) => Ok(Field::Addr {
                        v6: p == "ip6",
                        saddr: f == "saddr",
                    }),
                    ("th", f @ ("sport" | "dport")) => Ok(Field::Port {
                        sport: f == "sport",
                    }),
                    (p, f) => unsupported(format!("payload {p} {f}")),
                }
            }
            "meta" => {
                let m = fields(spec, &["key"])?;
                match text(m, "key")? {
                    "l4proto" => Ok(Field::L4proto),
                    "iifname" => Ok(Field::Ifname {
                        meta_key: k::META_IIFNAME,
                    }),
                    "oifname" => Ok(Field::Ifname {
                        meta_key: k::META_OIFNAME,
                    }),
                    other => unsupported(format!("meta {other}")),
                }
            }
            other => unsupported(format!("match on {other}")),
        }
    }

    /// Width of the field in bytes.
    fn len(self) -> u32 {
        match self {
            Field::Addr { v6: false, .. } => 4,
            Field::Addr { v6: true, .. } => 16,
            Field::Port { .. } => 2,
            Field::L4proto => 1,
            Field::Ifname { .. } => 16,
        }
    }

    fn key(self) -> Enc<Key> {
        let payload = |desc, template| (k::EXPR_PAYLOAD, vec![(0, desc), (1, template)]);
        let (key_type, byteorder, (typeof_expr, typeof_data)) = match self {
            Field::Addr { v6: false, saddr } => (
                k::TYPE_IPADDR,
                k::BYTEORDER_BIG,
                payload(k::PROTO_IP, if saddr { 11 } else { 12 }),
            ),
            Field::Addr { v6: true, saddr } => (
                k::TYPE_IP6ADDR,
                k::BYTEORDER_BIG,
                payload(k::PROTO_IP6, if saddr { 8 } else { 9 }),
            ),
            Field::Port { sport } => (
                k::TYPE_INET_SERVICE,
                k::BYTEORDER_BIG,
                payload(k::PROTO_TH, if sport { 1 } else { 2 }),
            ),
            Field::L4proto => (
                k::TYPE_INET_PROTOCOL,
                k::BYTEORDER_HOST,
                (k::EXPR_META, vec![(0, k::META_L4PROTO)]),
            ),
            Field::Ifname { .. } => return unsupported("a set of interface names"),
        };
        Ok(Key {
            key_type,
            len: self.len(),
            byteorder,
            typeof_expr,
            typeof_data,
        })
    }

    /// One value of the field as the kernel compares it.
    fn value(self, v: &Value) -> Enc<Vec<u8>> {
        match (self, v) {
            (Field::Addr { v6, .. }, Value::String(s)) => match s.parse::<IpAddr>() {
                Ok(IpAddr::V4(a)) if !v6 => Ok(a.octets().to_vec()),
                Ok(IpAddr::V6(a)) if v6 => Ok(a.octets().to_vec()),
                _ => unsupported(format!("address {s:?}")),
            },
            (Field::Port { .. }, Value::Number(n)) => match n.as_u64().map(u16::try_from) {
                Some(Ok(port)) if port > 0 => Ok(port.to_be_bytes().to_vec()),
                _ => unsupported(format!("port {n}")),
            },
            (Field::L4proto, Value::String(s)) => match s.as_str() {
                "tcp" => Ok(vec![6]),
                "udp" => Ok(vec![17]),
                _ => unsupported(format!("protocol {s:?}")),
            },
            (Field::Ifname { .. }, Value::String(s))
                if s.len() < 16 && !s.is_empty() && !s.contains(['*', '\\', '\0']) =>
            {
                let mut name = s.as_bytes().to_vec();
                name.resize(16, 0);
                Ok(name)
            }
            _ => unsupported(format!("value {v} for {self:?}")),
        }
    }
}

const CMP_EQ: u32 = 0;
const CMP_NEQ: u32 = 1;

/// One `add rule`'s expressions, and the anonymous sets they look values up in.
#[derive(Debug, Default)]
struct Rule {
    exprs: Attrs,
    sets: Vec<AnonSet>,
    /// The `meta nfproto` this rule already checks (an `ip`/`ip6` match depends on it).
    nfproto: Option<u8>,
    /// A `meta l4proto` match came first, so a `th` port is at a known place.
    l4proto: bool,
}

#[derive(Debug)]
struct AnonSet {
    id: u32,
    flags: u32,
    key: Key,
    /// What nft declares as the set's size: its interval elements, an open end included.
    size: u32,
    elements: Vec<Element>,
}

#[derive(Debug)]
struct Element {
    key: Vec<u8>,
    /// Ends an interval (the first value past it).
    end: bool,
    /// An interval that runs to the largest value, so it has no end element.
    open: bool,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key(type {}, {} bytes)", self.key_type, self.len)
    }
}

impl Rule {
    fn expr(&mut self, v: &Value, next_set: &mut u32) -> Enc {
        let (kind, spec) = single(v)?;
        match kind {
            "match" => self.matches(spec, next_set),
            "counter" if spec.is_null() => {
                self.push("counter", |_| {});
                Ok(())
            }
            "drop" if spec.is_null() => {
                self.verdict(k::NF_DROP);
                Ok(())
            }
            "accept" if spec.is_null() => {
                self.verdict(k::NF_ACCEPT);
                Ok(())
            }
            _ => unsupported(format!("expression {v}")),
        }
    }

    fn push(&mut self, name: &str, data: impl FnOnce(&mut Attrs)) {
        self.exprs.nested(k::LIST_ELEM, |e| {
            e.str(k::EXPR_NAME, name);
            e.nested(k::EXPR_DATA, data);
        });
    }

    fn verdict(&mut self, code: u32) {
        self.push("immediate", |d| {
            d.u32(k::IMMEDIATE_DREG, k::REG_VERDICT);
            d.nested(k::IMMEDIATE_DATA, |data| {
                data.nested(k::DATA_VERDICT, |v| v.u32(k::VERDICT_CODE, code));
            });
        });
    }

    fn cmp(&mut self, op: u32, value: &[u8]) {
        self.push("cmp", |d| {
            d.u32(k::CMP_SREG, k::REG_1);
            d.u32(k::CMP_OP, op);
            d.nested(k::CMP_DATA, |data| data.put(k::DATA_VALUE, value));
        });
    }

    fn meta(&mut self, key: u32) {
        self.push("meta", |d| {
            d.u32(k::META_KEY, key);
            d.u32(k::META_DREG, k::REG_1);
        });
    }

    fn payload(&mut self, base: u32, offset: u32, len: u32) {
        self.push("payload", |d| {
            d.u32(k::PAYLOAD_DREG, k::REG_1);
            d.u32(k::PAYLOAD_BASE, base);
            d.u32(k::PAYLOAD_OFFSET, offset);
            d.u32(k::PAYLOAD_LEN, len);
        });
    }

    /// Loads `len` bytes of `field` into the register, after the checks it depends on.
    fn load(&mut self, field: Field, len: u32) -> Enc {
        match field {
            Field::Addr { v6, saddr } => {
                let proto = if v6 { k::NFPROTO_IPV6 } else { k::NFPROTO_IPV4 };
                match self.nfproto {
                    None => {
                        self.meta(k::META_NFPROTO);
                        self.cmp(CMP_EQ, &[proto]);
                        self.nfproto = Some(proto);
                    }
                    Some(p) if p == proto => {}
                    Some(_) => return unsupported("ip and ip6 matches in one rule"),
                }
                let offset = match (v6, saddr) {
                    (false, true) => 12,
                    (false, false) => 16,
                    (true, true) => 8,
                    (true, false) => 24,
                };
                self.payload(k::PAYLOAD_NETWORK, offset, len);
            }
            Field::Port { sport } => {
                if !self.l4proto {
                    return unsupported("a th match without a meta l4proto match before it");
                }
                self.payload(k::PAYLOAD_TRANSPORT, if sport { 0 } else { 2 }, len);
            }
            Field::L4proto => self.meta(k::META_L4PROTO),
            Field::Ifname { meta_key } => self.meta(meta_key),
        }
        Ok(())
    }

    fn matches(&mut self, spec: &Value, next_set: &mut u32) -> Enc {
        let m = fields(spec, &["op", "left", "right"])?;
        let op = text(m, "op")?;
        let (Some(left), Some(mut right)) = (m.get("left"), m.get("right")) else {
            return unsupported("a match without left or right");
        };
        if let Ok(("numgen", numgen)) = single(left) {
            return self.numgen(op, numgen, right);
        }
        let field = Field::parse(left)?;
        let cmp_op = match op {
            "==" => CMP_EQ,
            "!=" => CMP_NEQ,
            _ => return unsupported(format!("operator {op:?} on {field:?}")),
        };
        if let Some(items) = right.get("set").and_then(Value::as_array) {
            match items.as_slice() {
                // nft compares a one-element set like its element.
                [one] => right = one,
                _ if cmp_op == CMP_EQ => return self.set_match(field, items, next_set),
                _ => return unsupported("a negated set match"),
            }
        }
        if let Some(prefix) = right.get("prefix") {
            if cmp_op != CMP_EQ {
                return unsupported("a negated prefix match");
            }
            return self.prefix_match(field, prefix);
        }
        let value = field.value(right)?;
        self.load(field, field.len())?;
        self.cmp(cmp_op, &value);
        self.l4proto |= field == Field::L4proto;
        Ok(())
    }

    /// A prefix as nft matches it: a byte-aligned one on a shorter load, any other through
    /// a mask.
    fn prefix_match(&mut self, field: Field, prefix: &Value) -> Enc {
        let (addr, len) = prefix_of(field, prefix)?;
        let bits = field.len() * 8;
        if len == bits || (len > 0 && len % 8 == 0) {
            let bytes = len / 8;
            self.load(field, bytes)?;
            self.cmp(CMP_EQ, addr.get(..bytes as usize).unwrap_or_default());
        } else {
            self.load(field, field.len())?;
            let mask = from_u128(mask(len, bits), field.len());
            self.push("bitwise", |d| {
                d.u32(k::BITWISE_SREG, k::REG_1);
                d.u32(k::BITWISE_DREG, k::REG_1);
                d.u32(k::BITWISE_LEN, field.len());
                d.nested(k::BITWISE_MASK, |m| m.put(k::DATA_VALUE, &mask));
                d.nested(k::BITWISE_XOR, |x| {
                    x.put(k::DATA_VALUE, &vec![0; mask.len()]);
                });
            });
            self.cmp(CMP_EQ, &addr);
        }
        Ok(())
    }

    fn set_match(&mut self, field: Field, items: &[Value], next_set: &mut u32) -> Enc {
        let key = field.key()?;
        let id = *next_set;
        *next_set += 1;
        let interval = items.iter().any(|i| i.get("prefix").is_some());
        let set = if interval {
            interval_set(field, items, id, key)?
        } else {
            let mut values: Vec<Vec<u8>> = Vec::with_capacity(items.len());
            for item in items {
                let v = field.value(item)?;
                if !values.contains(&v) {
                    values.push(v);
                }
            }
            AnonSet {
                id,
                flags: k::SET_ANONYMOUS | k::SET_CONSTANT,
                key,
                size: u32::try_from(values.len()).unwrap_or(u32::MAX),
                elements: values
                    .into_iter()
                    .map(|key| Element {
                        key,
                        end: false,
                        open: false,
                    })
                    .collect(),
            }
        };
        self.load(field, field.len())?;
        self.push("lookup", |d| {
            d.u32(k::LOOKUP_SREG, k::REG_1);
            d.str(k::LOOKUP_SET, "__set%d");
            d.u32(k::LOOKUP_SET_ID, id);
        });
        self.sets.push(set);
        self.l4proto |= field == Field::L4proto;
        Ok(())
    }

    /// `numgen random mod N [offset O] <op> V`: nft turns the number to network byte
    /// order so that `cmp` can order it.
    fn numgen(&mut self, op: &str, spec: &Value, right: &Value) -> Enc {
        let m = fields(spec, &["mode", "mod", "offset"])?;
        if text(m, "mode")? != "random" {
            return unsupported("numgen other than random");
        }
        let number = |v: Option<&Value>| v.and_then(Value::as_u64).map(u32::try_from);
        let (Some(Ok(modulus)), Some(Ok(offset)), Some(Ok(value))) = (
            number(m.get("mod")),
            number(m.get("offset").or(Some(&Value::from(0)))),
            number(Some(right)),
        ) else {
            return unsupported(format!("numgen {spec} {op} {right}"));
        };
        let cmp_op = match op {
            "<" => 2,
            "<=" => 3,
            ">" => 4,
            ">=" => 5,
            _ => return unsupported(format!("numgen compared with {op:?}")),
        };
        self.push("numgen", |d| {
            d.u32(k::NG_DREG, k::REG_1);
            d.u32(k::NG_MODULUS, modulus);
            d.u32(k::NG_TYPE, k::NG_RANDOM);
            d.u32(k::NG_OFFSET, offset);
        });
        self.push("byteorder", |d| {
            d.u32(k::BYTEORDER_SREG, k::REG_1);
            d.u32(k::BYTEORDER_DREG, k::REG_1);
            d.u32(k::BYTEORDER_OP, k::BYTEORDER_HTON);
            d.u32(k::BYTEORDER_LEN, 4);
            d.u32(k::BYTEORDER_SIZE, 4);
        });
        self.cmp(cmp_op, &value.to_be_bytes());
        Ok(())
    }
}

/// A `{"addr": ..., "len": ...}` prefix of an address field: its address and length, the
/// address without bits past the prefix (nft refuses those too).
fn prefix_of(field: Field, prefix: &Value) -> Enc<(Vec<u8>, u32)> {
    let Field::Addr { .. } = field else {
        return unsupported(format!("a prefix of {field:?}"));
    };
    let m = fields(prefix, &["addr", "len"])?;
    let addr = field.value(&Value::from(text(m, "addr")?))?;
    let bits = field.len() * 8;
    match m.get("len").and_then(Value::as_u64).map(u32::try_from) {
        Some(Ok(len)) if len <= bits && to_u128(&addr) & !mask(len, bits) == 0 => Ok((addr, len)),
        _ => unsupported(format!("prefix {prefix}")),
    }
}

/// The interval set nft makes of addresses and prefixes: ranges sorted, overlapping and
/// adjacent ones merged, each a start element and an end element (the first value past
/// it), and an end element at zero in front unless the first range starts there.
fn interval_set(field: Field, items: &[Value], id: u32, key: Key) -> Enc<AnonSet> {
    let width = field.len();
    let max = mask(width * 8, width * 8);
    let mut ranges: Vec<(u128, u128)> = Vec::with_capacity(items.len());
    for item in items {
        let (addr, len) = match item.get("prefix") {
            Some(p) => match prefix_of(field, p)? {
                (_, len) if len == width * 8 => {
                    return unsupported("a full-length prefix in a set");
                }
                found => found,
            },
            None => (field.value(item)?, width * 8),
        };
        let start = to_u128(&addr);
        ranges.push((start, start | (max & !mask(len, width * 8))));
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if last.1 == max || start <= last.1 + 1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    let mut elements = Vec::with_capacity(merged.len() * 2 + 1);
    let leading_zero = merged.first().is_some_and(|r| r.0 != 0);
    if leading_zero {
        elements.push(Element {
            key: vec![0; width as usize],
            end: true,
            open: false,
        });
    }
    for &(start, end) in &merged {
        elements.push(Element {
            key: from_u128(start, width),
            end: false,
            open: end == max,
        });
        if end != max {
            elements.push(Element {
                key: from_u128(end + 1, width),
                end: true,
                open: false,
            });
        }
    }
    let size = merged.len() * 2 + usize::from(leading_zero);
    Ok(AnonSet {
        id,
        flags: k::SET_ANONYMOUS | k::SET_CONSTANT | k::SET_INTERVAL,
        key,
        size: u32::try_from(size).unwrap_or(u32::MAX),
        elements,
    })
}

/// The top `len` of `bits` bits set (a netmask), as an integer of `bits` bits.
fn mask(len: u32, bits: u32) -> u128 {
    let all = if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    all & !all.checked_shr(len).unwrap_or(0)
}

/// Big-endian bytes (at most 16) as an integer.
fn to_u128(bytes: &[u8]) -> u128 {
    bytes.iter().fold(0, |acc, b| (acc << 8) | u128::from(*b))
}

/// The low `width` bytes of `v`, big-endian.
fn from_u128(v: u128, width: u32) -> Vec<u8> {
    let all = v.to_be_bytes();
    all.get(16 - width as usize..).unwrap_or_default().to_vec()
}
