//! The HLR's pure core fed a sequence of messages from VLRs, each either raw GSUP off the
//! wire or built from a few bytes (type, subscriber, session address) so that the fuzzer
//! reaches registrations. Invariants: every answer encodes; a sequence number never goes
//! back; the home DNS is only ever told an IPv4 address from the reporting network's
//! pool, for a subscriber registered at that network.
#![no_main]

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use roamlab::agents::hlr::DnsOp;
use roamlab::protocols::gsup::Message;

const VLRS: [&str; 4] = ["visited", "elsewhere", "home", ""];
use common::POOL;

fn message(chunk: &[u8]) -> Option<(&'static str, Message)> {
    let (&head, rest) = chunk.split_first()?;
    let from = VLRS[(head & 0b11) as usize];
    if head & 0x80 != 0 {
        return Message::decode(rest).ok().map(|m| (from, m));
    }
    let [msg_type, pick, flags, rest @ ..] = rest else {
        return None;
    };
    let mut m = Message::new(*msg_type, common::imsi(*pick));
    let mut rest = rest;
    if flags & 1 != 0 && rest.len() >= 4 {
        // Near the pool, so that both sides of its edges are tried.
        let low = u32::from(POOL.0) - 8 + u32::from(rest[3]) % 120;
        let ip = if rest[0] & 1 == 0 {
            Ipv4Addr::from(low)
        } else {
            Ipv4Addr::new(rest[0], rest[1], rest[2], rest[3])
        };
        m.session_address = Some(IpAddr::V4(ip));
        rest = &rest[4..];
    }
    if flags & 2 != 0 {
        m.session_address = Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)));
    }
    if flags & 4 != 0 && rest.len() >= 14 {
        m.auts = Some(rest[..14].try_into().unwrap());
        rest = &rest[14..];
    }
    if flags & 8 != 0 {
        m.rand = Some([*flags; 16]);
    }
    if flags & 16 != 0 {
        m.cause = rest.first().copied();
    }
    if flags & 32 != 0 {
        m.num_vectors = rest.first().copied();
    }
    Some((from, m))
}

fuzz_target!(|data: &[u8]| {
    let mut hlr = common::hlr_core();
    for chunk in common::chunks(data) {
        let Some((from, m)) = message(chunk) else {
            continue;
        };
        let sqn_before: HashMap<String, u64> =
            hlr.state.iter().map(|(k, s)| (k.clone(), s.sqn)).collect();
        let out = hlr.handle(from, &m);
        for o in &out.send {
            o.message.try_encode().expect("the HLR's messages encode");
        }
        for (imsi, s) in &hlr.state {
            assert!(
                s.sqn >= sqn_before.get(imsi).copied().unwrap_or(0),
                "SQN went back"
            );
        }
        for op in &out.dns {
            if let DnsOp::Set { address, .. } = op {
                let IpAddr::V4(v4) = address else {
                    panic!("an IPv6 address went to the home DNS: {address}")
                };
                assert!(
                    from == "visited" && POOL.0 <= *v4 && *v4 <= POOL.1,
                    "{from} set {v4}"
                );
                let state = &hlr.state[&m.imsi];
                assert_eq!(
                    state.vlr.as_deref(),
                    Some(from),
                    "set for an unregistered subscriber"
                );
            }
        }
    }
});
