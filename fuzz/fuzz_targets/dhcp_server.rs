//! The DHCP server's path from a packet off the cell to its reply, over a sequence of
//! packets from four links (two authorised). Invariants: a packet for another hardware
//! address than its sender's changes nothing; every reply the server builds decodes; no
//! link holds two leases and no unauthorised link holds one.
#![no_main]

mod common;

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use roamlab::agents::dhcp::{handle_packet, Handled};
use roamlab::agents::leases::{Authorised, LeaseBook};
use roamlab::protocols::dhcp::decode;

fn mac(i: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, i % 4 + 1]
}

fn authorised(mac: &[u8; 6]) -> Option<Authorised> {
    match mac {
        [0x02, 0, 0, 0, 0, n @ 1..=2] => Some(Authorised {
            imsi: common::imsi(n - 1).to_string(),
            host_name: format!("phone{n}.home.example"),
        }),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let served = common::served();
    let mut book = LeaseBook::new(
        Ipv4Addr::new(198, 51, 100, 100),
        Ipv4Addr::new(198, 51, 100, 103),
    );
    for (i, chunk) in common::chunks(data).into_iter().enumerate() {
        let Some((&head, packet)) = chunk.split_first() else {
            continue;
        };
        let source = mac(head);
        let mut packet = packet.to_vec();
        // Mostly the sender's own chaddr, so that the fuzzer gets past the spoofing check.
        if head & 0x80 == 0 && packet.len() >= 34 {
            packet[28..34].copy_from_slice(&source);
        }
        let before = serde_json::to_string(&book).unwrap();
        match handle_packet(
            &mut book,
            &served,
            &source,
            &packet,
            &authorised,
            1_000 + i as u64,
        ) {
            Handled::Spoofed { .. } | Handled::Malformed(_) | Handled::NotARequest => {
                assert_eq!(
                    before,
                    serde_json::to_string(&book).unwrap(),
                    "a refused packet changed the book"
                );
            }
            Handled::Answered { reply, .. } => {
                if let Some((bytes, _)) = reply {
                    decode(&bytes).expect("the server's replies decode");
                }
            }
        }
        let mut links = std::collections::HashSet::new();
        for lease in book.leases.values() {
            assert!(links.insert(lease.mac), "two leases for one link");
            assert!(
                authorised(&lease.mac).is_some(),
                "a lease for an unauthorised link"
            );
        }
    }
});
