//! What the targets share: splitting one input into a sequence of messages, and the
//! subscribers of the home network the cores are built with.
#![allow(dead_code)]

use std::net::Ipv4Addr;

use std::collections::HashMap;

use roamlab::agents::hlr::HlrCore;
use roamlab::contract::configs::{PartnerPool, SubscriberRecord};
use roamlab::protocols::dhcp::Served;

/// What the visited network's DHCP server serves.
pub fn served() -> Served {
    Served {
        server_ip: Ipv4Addr::new(198, 51, 100, 1),
        prefix_len: 24,
        router: Ipv4Addr::new(198, 51, 100, 1),
        dns_servers: vec![Ipv4Addr::new(198, 51, 100, 53)],
        lease_secs: 60,
        rapid_commit: true,
    }
}

/// The input as a sequence of chunks, each a 2-byte big-endian length then that many
/// bytes (the last chunk takes what is left), so that a fuzzer's splice keeps messages whole.
pub fn chunks(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let len = u16::from_be_bytes([data[0], data[1]]) as usize;
        let rest = &data[2..];
        let take = len.min(rest.len());
        out.push(&rest[..take]);
        data = &rest[take..];
    }
    out
}

/// The home network's subscribers: IMSIs the fuzzer picks by index.
pub const IMSIS: [&str; 3] = ["001010000000001", "001010000000002", "001010000000003"];

pub fn imsi(pick: u8) -> &'static str {
    IMSIS[pick as usize % IMSIS.len()]
}

pub fn subscribers() -> Vec<SubscriberRecord> {
    IMSIS
        .iter()
        .enumerate()
        .map(|(i, imsi)| SubscriberRecord {
            name: format!("phone{}", i + 1),
            imsi: imsi.to_string(),
            msisdn: Some(format!("1555000000{}", i + 1)),
            host_name: format!("phone{}.home.example", i + 1),
            k: "465b5ce8b199b49faa5f0a2ee238a6bc".into(),
            opc: "cd63cb71954a9f4e48a5994e37a02baf".into(),
            // The last one may not roam.
            roaming: i < 2,
            packet_data: true,
            // The second has a TTL of its own.
            ttl: (i == 1).then_some(0),
        })
        .collect()
}

/// The visited network's pool, as the HLR knows it.
pub const POOL: (Ipv4Addr, Ipv4Addr) = (
    Ipv4Addr::new(198, 51, 100, 100),
    Ipv4Addr::new(198, 51, 100, 199),
);

/// The home network's HLR core, with the visited network's pool and RANDs that count up
/// (a message "from home" comes from its own cell's VLR).
pub fn hlr_core() -> HlrCore {
    let mut n = 0u8;
    HlrCore::new(
        &subscribers(),
        HashMap::new(),
        Box::new(move || {
            n = n.wrapping_add(1);
            [n; 16]
        }),
    )
    .expect("valid subscribers")
    .with_pools(vec![PartnerPool {
        network: "visited".into(),
        start: POOL.0.into(),
        end: POOL.1.into(),
    }])
    .at("home")
}
