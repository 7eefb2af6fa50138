//! The DHCP server's path from a packet to its reply, over a sequence of packets from four
//! links (two authorised), off the cell or through a relay, with the DNS queue short or
//! full. Invariants: a packet for another hardware address than its sender's, or refused
//! for its segment, changes nothing; every reply the server builds decodes; no link holds
//! two leases and no unauthorised link holds one; every lease is in the cell's pool or the
//! relay's.
#![no_main]

mod common;

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use roamlab::agents::dhcp::{handle_packet, handle_relayed, Handled, Load, RelaySegment};
use roamlab::agents::leases::{Authorised, LeaseBook, Pool};
use roamlab::agents::queue::MAX_BACKLOG;
use roamlab::protocols::dhcp::decode;

fn mac(i: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, i % 4 + 1]
}

fn authorised(mac: &[u8; 6]) -> Option<Authorised> {
    match mac {
        [0x02, 0, 0, 0, 0, n @ 1..=2] => Some(Authorised {
            imsi: common::imsi(n - 1).to_string(),
            host_name: format!("phone{n}.home.example"),
            packet_data: true,
        }),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let served = common::served();
    let cell = Pool {
        start: Ipv4Addr::new(198, 51, 100, 100),
        end: Ipv4Addr::new(198, 51, 100, 103),
    };
    let relay = RelaySegment {
        address: Ipv4Addr::new(198, 18, 0, 10),
        subnet: "198.18.16.0/24".parse().unwrap(),
        pool: Pool {
            start: Ipv4Addr::new(198, 18, 16, 10),
            end: Ipv4Addr::new(198, 18, 16, 12),
        },
        served: roamlab::protocols::dhcp::Served {
            server_ip: Ipv4Addr::new(198, 18, 0, 9),
            ..served.clone()
        },
    };
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
        let backlog = if head & 0x40 == 0 { 0 } else { MAX_BACKLOG };
        let own = |_: &str| usize::from(head & 0x0f);
        let load = Load {
            backlog,
            waiting: &own,
        };
        let now = 1_000 + i as u64;
        let handled = if head & 0x20 == 0 {
            handle_packet(
                &mut book,
                &served,
                &source,
                &packet,
                &authorised,
                &load,
                now,
            )
        } else {
            let from = if head & 0x10 == 0 {
                relay.address
            } else {
                Ipv4Addr::new(198, 18, 0, 9)
            };
            handle_relayed(
                &mut book,
                std::slice::from_ref(&relay),
                from,
                &packet,
                &authorised,
                &load,
                now,
            )
        };
        match handled {
            Handled::Spoofed { .. }
            | Handled::Malformed(_)
            | Handled::NotARequest
            | Handled::Refused(_) => {
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
        assert!(
            book.indices_agree(),
            "the book's indices lost track of its leases"
        );
        let mut links = std::collections::HashSet::new();
        for lease in book.leases.values() {
            assert!(links.insert(lease.mac), "two leases for one link");
            assert!(
                cell.contains(lease.ip) || relay.pool.contains(lease.ip),
                "{} is in no pool",
                lease.ip
            );
            assert!(
                authorised(&lease.mac).is_some(),
                "a lease for an unauthorised link"
            );
        }
    }
});
