//! Where a visited network learns a terminal's host name (claims 23 and 24), on a real lab:
//! tests/labs/names.yaml is the default lab with `name_source: terminal` at its VLR, so the
//! name comes from the terminal (at attach, or in its DHCP client's option 81 or 12) and
//! the home HLR verifies it before anything is written. The HLR's source (the default) is
//! what every other lab runs.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{roamlab, text, LabGuard, UDHCPC_ONCE};
use roamlab::contract::published::read_attached;
use roamlab::contract::LabDir;

const SERVER1_IMSI: &str = "001010000000002";

/// What an authority holds for `name` (`dig +short +norec`), asked from fixed1.
fn at(lab: &LabGuard, server: &str, name: &str, rtype: &str) -> String {
    let at = format!("@{server}");
    let out = lab.exec("fixed1", &["dig", "+short", "+norec", &at, name, rtype]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn reverse(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
}

/// The address the visited DHCP server leased to `imsi`, if any.
fn leased_to(lab: &str, imsi: &str) -> Option<Ipv4Addr> {
    let path = LabDir::of(lab).dhcp_leases("visited");
    let leases: std::collections::BTreeMap<Ipv4Addr, serde_json::Value> =
        roamlab::journal::read(&path).expect("the lease journal reads");
    leases
        .into_iter()
        .find(|(_, l)| l["imsi"] == imsi && l["offered"] == false)
        .map(|(ip, _)| ip)
}

/// Whether the lab's events have a line with every one of `words`.
fn said(lab: &str, words: &[&str]) -> bool {
    let events = text(&roamlab(&["events", lab]));
    events.lines().any(|l| words.iter().all(|w| l.contains(w)))
}

/// Runs udhcpc once in server1's node with `extra` (which name it says, if any).
fn udhcpc(lab: &LabGuard, extra: &[&str]) {
    let out = lab.exec("server1", &[&UDHCPC_ONCE[..], extra].concat());
    assert!(out.status.success(), "udhcpc {extra:?}: {}", text(&out));
}

#[test]
fn a_network_that_learns_names_from_terminals_writes_one_only_once_its_home_verified_it() {
    let Some((lab, _)) = common::up_lab("nmterm", "tests/labs/names.yaml", &[]) else {
        return;
    };

    // phone1's network told it no name: its own DHCP client says it, and its home agrees.
    let out = roamlab(&["attach", "phone1", "--lab", "nmterm"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("resolves to it from fixed1"),
        "{}",
        text(&out)
    );
    let registered = read_attached(&LabDir::of("nmterm").vlr_attached("visited"));
    assert_eq!(registered.len(), 1);
    assert_eq!(
        registered[0].host_name, None,
        "the VLR took the home's word for the name"
    );
    let phone1 = leased_to("nmterm", "001010000000001").expect("phone1's lease");
    assert_eq!(
        at(&lab, "198.51.100.53", &reverse(phone1), "PTR"),
        "phone1.home.example."
    );

    // server1 registers with no DHCP client; a stock client then says no name, another
    // terminal's name, and at last its own (option 12, the first label only).
    let out = roamlab(&[
        "attach",
        "server1",
        "--dhcp-client",
        "none",
        "--lab",
        "nmterm",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    udhcpc(&lab, &[]);
    let server1 = leased_to("nmterm", SERVER1_IMSI).expect("server1's lease");
    let wait = Duration::from_secs(10);
    assert!(
        common::within(wait, || said("nmterm", &["no host name", "said none"])).is_some(),
        "no word of a terminal without a name"
    );
    udhcpc(&lab, &["-F", "phone1.home.example"]);
    let refused = common::within(wait, || {
        said(
            "nmterm",
            &[
                "refused",
                "the terminal claims host name phone1.home.example, and its home holds server1.home.example",
            ],
        ) && said("nmterm", &["DNS change dropped", "illegal MS"])
    });
    assert!(refused.is_some(), "the home did not refuse another's name");
    assert_eq!(
        at(&lab, "192.0.2.53", "phone1.home.example", "A"),
        phone1.to_string(),
        "phone1's name was taken"
    );
    assert_eq!(at(&lab, "192.0.2.53", "server1.home.example", "A"), "");
    assert_eq!(at(&lab, "198.51.100.53", &reverse(server1), "PTR"), "");

    udhcpc(&lab, &["-x", "hostname:server1"]);
    let named = common::within(wait, || {
        at(&lab, "192.0.2.53", "server1.home.example", "A") == server1.to_string()
            && at(&lab, "198.51.100.53", &reverse(server1), "PTR") == "server1.home.example."
    });
    assert!(named.is_some(), "server1's own name was not written");
    assert_eq!(leased_to("nmterm", SERVER1_IMSI), Some(server1));
    drop(lab);
}
