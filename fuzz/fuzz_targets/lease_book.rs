//! The lease book fed sequences of requests from four links (whose authorisation by the
//! VLR the fuzzer changes), sweeps and the passing of time. Invariants: no address leased
//! to two terminals, one lease per link and one binding per subscriber, no lease for a link
//! the VLR does not authorise, leases within the pool, every Bound matched by an Unbound
//! before its address is bound to another, and the bindings reported are exactly the book's.
//! A DISCOVER may ask for Rapid Commit, which the book then answers as offer and request.
#![no_main]

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use roamlab::agents::leases::{Answer, Authorised, Binding, Kind, LeaseBook, Request};

const ME: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const START: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 100);
const END: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 105);
const LEASE_SECS: u64 = 60;

fn mac(i: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, i % 4 + 1]
}

fn authorised(imsi: &str) -> Authorised {
    let n = common::IMSIS.iter().position(|i| *i == imsi).unwrap() + 1;
    Authorised {
        imsi: imsi.to_string(),
        host_name: format!("phone{n}.home.example"),
        packet_data: true,
    }
}

fn address(pick: u8) -> Option<Ipv4Addr> {
    match pick % 10 {
        0 => None,
        1 => Some(Ipv4Addr::new(198, 51, 100, 99)),
        2 => Some(Ipv4Addr::new(192, 0, 2, pick)),
        _ => Some(Ipv4Addr::from(u32::from(START) + u32::from(pick) % 7)),
    }
}

fn request(b: &[u8]) -> Option<Request> {
    let [raw_kind, link, cid, requested, server, claim, ..] = *b else {
        return None;
    };
    let kind = [
        Kind::Discover,
        Kind::Request,
        Kind::Release,
        Kind::Decline,
        Kind::Inform,
    ][raw_kind as usize % 5];
    let rapid_commit = kind == Kind::Discover && raw_kind / 5 % 2 == 1;
    let mac = mac(link);
    let client_id = match cid % 4 {
        0 => None,
        1 => Some([&[1u8][..], &mac].concat()),
        2 => Some([&[1u8][..], &self::mac(cid / 4)].concat()),
        _ => Some(b[6..].to_vec()),
    };
    let server = match server % 3 {
        0 => None,
        1 => Some(ME),
        _ => Some(Ipv4Addr::new(198, 51, 100, 2)),
    };
    let claimed_name = match claim % 4 {
        0 => None,
        1 => Some(format!("phone{}", claim / 4 % 3 + 1)),
        2 => Some(format!("phone{}.home.example.", claim / 4 % 3 + 1)),
        _ => Some(String::from_utf8_lossy(&b[6..]).into_owned()),
    };
    Some(Request {
        kind,
        mac,
        client_id,
        requested: address(requested),
        server,
        claimed_name,
        rapid_commit,
    })
}

/// What the reported bindings say is bound: address → subscriber.
#[derive(Default)]
struct Reported(BTreeMap<Ipv4Addr, String>);

impl Reported {
    fn follow(&mut self, changes: &[Binding]) {
        for change in changes {
            match change {
                Binding::Bound { imsi, ip, .. } => {
                    if let Some(holder) = self.0.get(ip) {
                        assert_eq!(holder, imsi, "{ip} bound to {imsi} while still {holder}'s");
                    }
                    self.0.insert(*ip, imsi.clone());
                }
                Binding::Unbound { imsi, ip, .. } => {
                    assert_eq!(
                        self.0.remove(ip).as_ref(),
                        Some(imsi),
                        "unbound {ip} not bound to {imsi}"
                    );
                }
            }
        }
    }
}

fn check(book: &LeaseBook, reported: &Reported) {
    let mut macs = std::collections::HashSet::new();
    let mut imsis = std::collections::HashSet::new();
    let mut bound = BTreeMap::new();
    for (ip, lease) in &book.leases {
        assert_eq!(*ip, lease.ip);
        assert!(START <= *ip && *ip <= END, "{ip} is outside the pool");
        assert!(macs.insert(lease.mac), "two leases for one link");
        assert!(
            imsis.insert(lease.imsi.clone()),
            "two leases for {}",
            lease.imsi
        );
        if !lease.offered {
            bound.insert(*ip, lease.imsi.clone());
        }
    }
    assert_eq!(
        bound, reported.0,
        "the bindings reported are not the book's"
    );
    assert!(
        book.indices_agree(),
        "the book's indices lost track of its leases"
    );
}

fuzz_target!(|data: &[u8]| {
    let mut book = LeaseBook::new(START, END);
    // Which subscriber the VLR lists on each link.
    let mut links: [Option<&str>; 4] = [Some(common::IMSIS[0]), Some(common::IMSIS[1]), None, None];
    let mut reported = Reported::default();
    let mut now = 1_000u64;
    for chunk in common::chunks(data) {
        let Some((&op, rest)) = chunk.split_first() else {
            continue;
        };
        match op % 4 {
            0 => {
                let Some(r) = request(rest) else { continue };
                let link = (r.mac[5] - 1) as usize;
                let who = links[link].map(authorised);
                let (answer, changes) = if r.rapid_commit {
                    let pool = book.cell_pool();
                    book.commit_at_once(pool, &r, who.as_ref(), ME, LEASE_SECS, now)
                } else {
                    book.handle(&r, who.as_ref(), ME, LEASE_SECS, now)
                };
                for change in &changes {
                    if let Binding::Bound { imsi, .. } = change {
                        assert_eq!(
                            Some(imsi.as_str()),
                            links[link],
                            "bound an unauthorised link"
                        );
                    }
                }
                reported.follow(&changes);
                match answer {
                    Answer::Offer(_) | Answer::Ack(_) | Answer::InformAck => {
                        assert!(who.is_some(), "answered an unauthorised link");
                    }
                    _ => {}
                }
                if let Answer::Ack(ip) = answer {
                    let lease = &book.leases[&ip];
                    assert!(
                        !lease.offered && lease.mac == r.mac,
                        "ACK of a lease not the client's"
                    );
                }
            }
            1 => {
                let changes =
                    book.sweep(now, &|imsi, mac| links[(mac[5] - 1) as usize] == Some(imsi));
                reported.follow(&changes);
            }
            2 => {
                // The VLR's list changes: a link attaches (as some subscriber) or detaches.
                let [link, who, ..] = *rest else { continue };
                links[link as usize % 4] = (who % 4 != 3).then(|| common::imsi(who));
                // A subscriber is registered on one link at a time.
                let set = links[link as usize % 4];
                for (i, l) in links.iter_mut().enumerate() {
                    if i != link as usize % 4 && set.is_some() && *l == set {
                        *l = None;
                    }
                }
            }
            _ => now += u64::from(rest.first().copied().unwrap_or(1)),
        }
        check(&book, &reported);
    }
});
