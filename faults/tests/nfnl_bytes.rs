//! The netlink encoder sends, byte for byte, the attributes `nft` sends for the same JSON
//! (no root needed: nothing is sent). The expected messages were captured from
//! `nft --debug=mnl`; see tests/data/nft-mnl.txt.
#![allow(clippy::unwrap_used)]

use firedrill_faults::nfnl;
use serde_json::Value;

/// One message: its NFT_MSG_* number and its attributes in hex.
type Message = (u8, String);

/// (title, input, messages) per case of the data file.
fn cases() -> Vec<(String, Value, Vec<Message>)> {
    let text = include_str!("data/nft-mnl.txt");
    let mut cases: Vec<(String, Value, Vec<Message>)> = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if let Some(title) = line.strip_prefix("> ") {
            cases.push((title.to_owned(), Value::Null, Vec::new()));
        } else if let Some(json) = line.strip_prefix("< ") {
            cases.last_mut().unwrap().1 = serde_json::from_str(json).unwrap();
        } else {
            let (ty, hex) = line.split_once(' ').unwrap();
            let msgs = &mut cases.last_mut().unwrap().2;
            msgs.push((ty.parse().unwrap(), hex.to_owned()));
        }
    }
    cases
}

/// The nf_tables messages of an encoded batch, without its begin and end frames.
fn messages(bytes: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes(rest[..4].try_into().unwrap()) as usize;
        let ty = u16::from_ne_bytes([rest[4], rest[5]]);
        if ty >> 8 == 10 {
            let hex: String = rest[20..len].iter().map(|b| format!("{b:02x}")).collect();
            out.push((ty as u8, hex));
        }
        rest = &rest[len..];
    }
    out
}

#[test]
fn the_encoder_sends_what_nft_sends() {
    let cases = cases();
    assert!(cases.len() >= 10, "the data file was read");
    for (title, input, want) in cases {
        let batch = nfnl::encode(&input).unwrap_or_else(|e| panic!("{title}: {e}"));
        assert_eq!(batch.messages(), want.len(), "{title}");
        assert_eq!(messages(batch.bytes()), want, "{title}");
    }
}

#[test]
fn the_encoder_refuses_what_it_does_not_know() {
    let rule = |expr: Value| {
        serde_json::json!({"nftables": [{"add": {"rule": {
            "family": "inet", "table": "firedrill", "chain": "c", "expr": expr}}}]})
    };
    let unknown = [
        rule(serde_json::json!([{"limit": {"rate": 1, "per": "second"}}])),
        // A port without the protocol match that says where it is.
        rule(serde_json::json!([{"match": {"op": "==",
            "left": {"payload": {"protocol": "th", "field": "dport"}}, "right": 22}}])),
        rule(serde_json::json!([{"match": {"op": "!=",
            "left": {"payload": {"protocol": "ip", "field": "saddr"}},
            "right": {"set": ["10.0.0.1", "10.0.0.2"]}}}])),
        rule(serde_json::json!([{"match": {"op": "==",
            "left": {"payload": {"protocol": "ip", "field": "saddr"}},
            "right": {"prefix": {"addr": "10.0.0.1", "len": 8}}}}])),
        rule(serde_json::json!([{"match": {"op": "==",
            "left": {"meta": {"key": "iifname"}}, "right": "eth*"}}])),
        serde_json::json!({"nftables": [{"add": {"table": {"family": "ip", "name": "x"}}}]}),
        serde_json::json!({"nftables": [{"add": {"table": {
            "family": "inet", "name": "x", "flags": "dormant"}}}]}),
        serde_json::json!({"nftables": [{"replace": {"rule": {}}}]}),
        serde_json::json!({"rules": []}),
    ];
    for batch in unknown {
        assert!(nfnl::encode(&batch).is_err(), "{batch}");
    }
}
