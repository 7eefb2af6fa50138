//! The DNS update helpers, from what reaches them: a server's answer read by the update
//! client, host names and addresses (from terminals, DHCP clients and the HLR) turned into
//! update messages, and the replay guard fed a sequence of signatures. Invariants: every
//! update message built encodes and decodes back with its change; the guard never calls a
//! signature seen for the first time twice inside its window.
#![no_main]

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;
use roamlab::dns::guard::{ReplayGuard, Seen};
use roamlab::dns::update::{answer_of, message, reverse_name, Change, RecordData, RecordKind};

const ZONE: &str = "home.example";

fn update(text: &str, pick: u8) {
    let mut parts = text.splitn(3, ' ');
    let (Some(name), Some(kind), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let Ok(kind) = RecordKind::parse(kind) else {
        return;
    };
    let data = RecordData::parse(kind, data).ok();
    let name = name.to_string();
    let change = match (pick % 3, data) {
        (0, Some(data)) => Change::Add { name, data },
        (1, Some(data)) => Change::Replace { name, data },
        (_, data) => Change::Delete {
            name,
            rtype: kind,
            data,
        },
    };
    let Ok(m) = message(ZONE, 300, &change) else {
        return;
    };
    let bytes = m.to_vec().expect("an update message encodes");
    let back = Message::from_vec(&bytes).expect("an update message decodes");
    assert_eq!(back.to_vec().expect("re-encodes"), bytes);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            if let Ok(response) = Message::from_vec(rest) {
                let server: SocketAddr = "192.0.2.53:53".parse().unwrap();
                let _ = answer_of(ZONE, server, &response).map_err(|e| e.to_string());
            }
        }
        1 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                update(text, mode / 4);
            }
        }
        2 => {
            let ip = match rest.len() {
                n if n >= 16 => IpAddr::from(<[u8; 16]>::try_from(&rest[..16]).unwrap()),
                n if n >= 4 => IpAddr::from(<[u8; 4]>::try_from(&rest[..4]).unwrap()),
                _ => return,
            };
            let name = reverse_name(ip);
            assert!(name.ends_with(".arpa."), "{name}");
        }
        _ => {
            // Signatures: (MAC, signed at, fudge, now) with time going forward.
            let mut guard = ReplayGuard::default();
            let mut now = 1_000_000u64;
            let mut first: HashSet<(Vec<u8>, u64)> = HashSet::new();
            for chunk in common::chunks(rest) {
                let [mac, skew, fudge, step, ..] = *chunk else {
                    continue;
                };
                now += u64::from(step);
                let signed = now - u64::from(skew);
                let fudge = u16::from(fudge) * 4;
                let mac = vec![mac % 8];
                let seen = guard.check(&mac, signed, fudge, now);
                if seen == Seen::First {
                    // A second First for one MAC can only come once the first copy's window
                    // (signed + fudge) has passed.
                    for (m, expiry) in &first {
                        assert!(
                            m != &mac || *expiry < now,
                            "a replay inside its window was new"
                        );
                    }
                    first.retain(|(m, _)| m != &mac);
                    first.insert((mac.clone(), signed + u64::from(fudge)));
                }
                if chunk.len() > 4 {
                    guard.answered(&mac, hickory_proto::op::ResponseCode::NoError);
                }
            }
        }
    }
});
