//! The roaming flow end to end (issue: visited DHCP, dynamic DNS in both networks): real
//! agents, a real DHCP exchange on the cell, real dig, ping, traceroute and curl. The lab
//! (tests/labs/roaming-fast.yaml) gives dynamic records a 2 s TTL.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{roamlab, root_or_skip, text, LabGuard};

/// Whether `check` comes to hold within `limit`.
fn within(limit: Duration, check: impl FnMut() -> bool) -> bool {
    common::within(limit, check).is_some()
}

const TTL_BOUND: Duration = Duration::from_secs(2);

fn up(name: &str) -> Option<LabGuard> {
    common::up_lab(name, "tests/labs/roaming-fast.yaml", &[]).map(|(lab, _)| lab)
}

fn attach(lab: &LabGuard, terminal: &str) -> String {
    let out = roamlab(&["attach", terminal, "--lab", &lab.name]);
    assert!(out.status.success(), "attach {terminal}: {}", text(&out));
    let said = text(&out);
    let address = address_in(&said);
    assert!(said.contains("resolves to it from fixed1"), "{said}");
    address
}

/// The address `roamlab attach` reports ("… has address A; …").
fn address_in(said: &str) -> String {
    said.split(" has address ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .expect("an address")
        .to_string()
}

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn short(lab: &LabGuard, node: &str, args: &[&str]) -> String {
    let mut cmd = vec!["dig", "+short", "+time=2", "+tries=1"];
    cmd.extend(args);
    out(&lab.exec(node, &cmd)).trim().to_string()
}

fn leases(lab: &str) -> Vec<serde_json::Value> {
    let path = roamlab::contract::LabDir::of(lab).dhcp_leases("visited");
    let leases: std::collections::BTreeMap<String, serde_json::Value> =
        roamlab::journal::read(&path).expect("the lease journal reads");
    leases.into_values().collect()
}

/// The roaming flow's lookups, pings, path, HTTP and call are the demo's scenario
/// (scenarios/roaming.yaml, run with --check by tests/scenarios.rs and as `roamlab demo`
/// below); what a scenario does not see is here: the core's route, and the lease.
#[test]
fn a_roaming_phone_is_routed_through_visited_and_its_lease_ends_with_detach() {
    let Some(lab) = up("roamflow") else { return };
    let phone = attach(&lab, "phone1");
    assert_eq!(phone, "198.51.100.100");
    let route = out(&lab.exec("core", &["ip", "route", "get", &phone]));
    assert!(route.contains("via 198.18.0.6 dev eth-visited"), "{route}");
    let detach = roamlab(&["detach", "phone1", "--lab", "roamflow"]);
    assert!(detach.status.success(), "{}", text(&detach));
    assert!(
        leases("roamflow")
            .iter()
            .all(|l| l["imsi"] != "001010000000001"),
        "phone1's lease is still held"
    );
    // The address is back in the pool: the next attach gets it again.
    assert_eq!(attach(&lab, "phone1"), phone);
}

#[test]
fn lookup_transcripts() {
    let Some(lab) = up("roamshots") else { return };
    let phone = attach(&lab, "phone1");
    let normalise = |t: String| common::normalise_dig(&t);
    insta::assert_snapshot!(
        "roaming_forward_at_home",
        normalise(out(&lab.exec(
            "fixed1",
            &["dig", "+norec", "@192.0.2.53", "phone1.home.example"]
        )))
    );
    insta::assert_snapshot!(
        "roaming_reverse_at_visited",
        normalise(out(&lab.exec(
            "fixed2",
            &["dig", "+norec", "@198.51.100.53", "-x", &phone]
        )))
    );
    insta::assert_snapshot!(
        "roaming_forward_via_resolver",
        normalise(out(&lab.exec("fixed1", &["dig", "phone1.home.example"])))
    );
}

#[test]
fn refused_and_unauthorised_terminals_get_no_lease_and_no_record() {
    let Some(lab) = up("roamrefuse") else { return };
    let refused = roamlab(&["attach", "homebound1", "--lab", "roamrefuse"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(leases("roamrefuse").is_empty());
    assert_eq!(
        short(
            &lab,
            "fixed1",
            &["+norec", "@192.0.2.53", "homebound1.home.example"]
        ),
        ""
    );

    // A host on the cell that never attached: its DHCP requests get nothing.
    let ns = "roamrefuse-rogue";
    let ip = |args: &[&str]| Command::new("ip").args(args).status().unwrap().success();
    assert!(ip(&["netns", "add", ns]));
    let created = ip(&[
        "-n",
        "roamrefuse-visited",
        "link",
        "add",
        "name",
        "cell-rogue",
        "master",
        "cell",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns,
    ]);
    let probe = created
        && ip(&[
            "-n",
            "roamrefuse-visited",
            "link",
            "set",
            "cell-rogue",
            "up",
        ])
        && ip(&["-n", ns, "link", "set", "eth0", "up"]);
    let result = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            common::bin(),
            "dhcp-probe",
            "--timeout",
            "1.5",
        ])
        .output()
        .unwrap();
    let _ = Command::new("ip")
        .args(["-n", "roamrefuse-visited", "link", "del", "cell-rogue"])
        .status();
    let _ = Command::new("ip").args(["netns", "del", ns]).status();
    assert!(probe, "could not wire the rogue host");
    assert!(
        !result.status.success(),
        "an unattached host got a lease: {}",
        text(&result)
    );
    let log = std::fs::read_to_string(
        roamlab::contract::LabDir::of("roamrefuse").agent_log("visited", "dhcp"),
    )
    .unwrap();
    assert!(
        log.contains("not authorised by the VLR"),
        "the refusal is not logged"
    );
    assert!(leases("roamrefuse").is_empty());
}

#[test]
fn malformed_dhcp_packets_never_stop_the_server_or_drop_a_lease() {
    let Some(lab) = up("roamgarbage") else { return };
    let phone = attach(&lab, "phone1");
    let pids = common::agent_pids(&lab.status_json());
    roamlab::kernel::netns::run_in("roamgarbage-phone1", || {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
        socket.set_broadcast(true)?;
        let mut seed = 0x6a09_e667_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..400 {
            let mut p: Vec<u8> = (0..240 + next() % 300).map(|_| next() as u8).collect();
            p[0] = 1; // BOOTREQUEST
            match round % 4 {
                // The right magic cookie, then option garbage.
                0 => p[236..240].copy_from_slice(&[99, 130, 83, 99]),
                // A truncated header.
                1 => p.truncate((next() % 200) as usize),
                // A huge option length, and a bad option 81.
                2 => {
                    p[236..240].copy_from_slice(&[99, 130, 83, 99]);
                    p.truncate(240);
                    p.extend([53, 1, 1, 81, 250, 0xff, 0, 0, 0x07, b'b', b'a', b'd', 255]);
                }
                _ => {}
            }
            socket.send_to(&p, "255.255.255.255:67")?;
        }
        Ok(())
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        common::agent_pids(&lab.status_json()),
        pids,
        "an agent was replaced"
    );
    assert!(
        lab.status_json()["agents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["alive"] == true),
        "an agent died"
    );
    assert!(
        leases("roamgarbage")
            .iter()
            .any(|l| l["ip"] == phone.as_str()),
        "phone1's lease was lost"
    );
    assert_eq!(short(&lab, "fixed1", &["phone1.home.example"]), phone);
    attach(&lab, "server1");
}

/// The A and PTR records the lab's authorities hold for the test subscribers.
/// (name, address) pairs.
type Records = Vec<(String, String)>;

fn records(lab: &LabGuard) -> (Records, Records) {
    let mut forward = Vec::new();
    let mut reverse = Vec::new();
    for name in ["phone1", "server1"] {
        let a = short(
            lab,
            "fixed1",
            &["+norec", "@192.0.2.53", &format!("{name}.home.example")],
        );
        if !a.is_empty() {
            forward.push((name.to_string(), a.clone()));
        }
    }
    for last in 100..=103 {
        let ip = format!("198.51.100.{last}");
        let ptr = short(lab, "fixed1", &["+norec", "@198.51.100.53", "-x", &ip]);
        if !ptr.is_empty() {
            reverse.push((ptr.trim_end_matches(".home.example.").to_string(), ip));
        }
    }
    forward.sort();
    reverse.sort();
    (forward, reverse)
}

#[test]
fn restarting_dhcp_hlr_and_dns_mid_cycles_leaves_dns_matching_the_leases() {
    let Some(lab) = up("roamchurn") else { return };
    let restarts = [
        "visited/dhcp",
        "home/hlr",
        "visited/vlr",
        "home/dns",
        "visited/dns",
    ];
    // 50 attach/detach cycles, alternating terminals; every 5th cycle an agent is killed
    // (SIGKILL, as a crash) or stopped, in turn, and started again.
    let mut attached = [false, false];
    for cycle in 0..50 {
        let who = cycle % 2;
        let name = ["phone1", "server1"][who];
        let verb = if attached[who] { "detach" } else { "attach" };
        let out = roamlab(&[verb, name, "--lab", "roamchurn"]);
        let tail = |agent: &str| {
            let log = std::fs::read_to_string(format!("/run/roamlab/roamchurn/agents/{agent}.log"))
                .unwrap_or_default();
            let lines: Vec<&str> = log.lines().filter(|l| !l.contains(" INFO ")).collect();
            lines[lines.len().saturating_sub(12)..].join("\n")
        };
        assert!(
            out.status.success(),
            "cycle {cycle}: {verb} {name}: {}\nHLR:\n{}\nDHCP:\n{}\nVLR:\n{}",
            text(&out),
            tail("home.hlr"),
            tail("visited.dhcp"),
            tail("visited.vlr")
        );
        attached[who] = !attached[who];
        if cycle % 5 == 4 {
            let agent = restarts[cycle / 5 % restarts.len()];
            if cycle / 5 % 2 == 0 {
                let pid = common::agent_pid(&lab.status_json(), agent);
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let r = roamlab(&["restart", "--lab", "roamchurn", agent]);
            assert!(r.status.success(), "restart {agent}: {}", text(&r));
        }
    }
    // The queues drain; then DNS holds exactly the live leases, forward and reverse.
    let expected = || -> Vec<(String, String)> {
        let mut live: Vec<(String, String)> = leases("roamchurn")
            .iter()
            .filter(|l| l["offered"] == false)
            .map(|l| {
                (
                    l["host_name"]
                        .as_str()
                        .unwrap()
                        .trim_end_matches(".home.example")
                        .to_string(),
                    l["ip"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        live.sort();
        live
    };
    let settled = within(Duration::from_secs(5), || {
        let (forward, reverse) = records(&lab);
        forward == expected() && reverse == expected()
    });
    let (forward, reverse) = records(&lab);
    assert!(
        settled,
        "DNS does not match the leases: leases {:?}, forward {forward:?}, reverse {reverse:?}",
        expected()
    );
    assert_eq!(
        expected().len(),
        attached.iter().filter(|a| **a).count(),
        "leases do not match the attached terminals"
    );
    // … and the VLR's registrations and `status` say the same.
    let status = lab.status_json();
    let registered = status["attached"]["visited"].as_array().unwrap().len();
    assert_eq!(registered, expected().len(), "VLR registrations: {status}");
    let shown = status["terminals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["registered"] == true)
        .count();
    assert_eq!(shown, expected().len(), "status: {status}");
    let mut addresses: Vec<String> = expected().into_iter().map(|(_, ip)| ip).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(
        addresses.len(),
        expected().len(),
        "two terminals with one address"
    );
}

#[test]
fn the_demo_passes() {
    if !root_or_skip("the_demo_passes") {
        return;
    }
    let _slot = LabGuard::new("demo");
    let demo = roamlab(&["demo"]);
    let said = text(&demo);
    assert!(demo.status.success(), "{said}");
    assert!(
        said.contains("checks passed") && !said.contains("✗"),
        "{said}"
    );
    common::assert_nothing_left("demo", &[]);
}

/// Issue 11: the demo always replaced a lab of its own name, running or not. It now takes
/// `--name`, refuses a running lab of that name as `up` does (and leaves it be), and
/// refuses a name that is not a lab name before anything is built.
#[test]
fn the_demo_takes_a_name_and_never_replaces_a_running_lab() {
    let bad = roamlab(&["demo", "--name", "Not-A-Lab"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(
        text(&bad).contains("lab name `Not-A-Lab`"),
        "{}",
        text(&bad)
    );
    if !root_or_skip("dmbusy") {
        return;
    }
    let lab = LabGuard::new("dmbusy");
    assert!(lab.up(None, &["--no-agents"]).status.success());
    let before = lab.status_json();
    let demo = roamlab(&["demo", "--name", "dmbusy"]);
    assert_eq!(demo.status.code(), Some(1), "{}", text(&demo));
    assert!(
        text(&demo).contains("lab dmbusy is already running"),
        "{}",
        text(&demo)
    );
    assert_eq!(
        lab.status_json(),
        before,
        "the demo touched the running lab"
    );
    drop(lab);
}

#[test]
fn stock_dhcp_clients_get_leases_and_their_names_are_understood() {
    let Some(lab) = up("roamstock") else { return };
    for client in ["dhclient", "udhcpc", "dhcpcd"] {
        let out = roamlab(&[
            "attach",
            "phone1",
            "--lab",
            "roamstock",
            "--dhcp-client",
            client,
        ]);
        assert!(out.status.success(), "{client}: {}", text(&out));
        let said = text(&out);
        let address = address_in(&said);
        assert_eq!(
            short(&lab, "fixed1", &["phone1.home.example"]),
            address,
            "{client}: forward"
        );
        assert_eq!(
            short(&lab, "fixed2", &["-x", &address]),
            "phone1.home.example.",
            "{client}: reverse"
        );
        let log = std::fs::read_to_string(
            roamlab::contract::LabDir::of("roamstock").agent_log("visited", "dhcp"),
        )
        .unwrap();
        let named = log
            .lines()
            .rev()
            .find(|l| l.contains("ACK (name sent by the client:"))
            .unwrap_or_default()
            .to_string();
        assert!(
            named.contains("phone1"),
            "{client}: the server did not understand the name it sent: {named}"
        );
        assert!(roamlab(&["detach", "phone1", "--lab", "roamstock"])
            .status
            .success());
        let gone = within(TTL_BOUND + Duration::from_secs(2), || {
            leases("roamstock").is_empty()
        });
        assert!(gone, "{client}: the lease outlived the detach");
    }
}

#[test]
fn leases_are_renewed_at_t1_and_a_renewal_writes_nothing_new() {
    if !root_or_skip("leases_are_renewed_at_t1_and_a_renewal_writes_nothing_new") {
        return;
    }
    let lab = LabGuard::new("roamrenew");
    let out = lab.up(Some("tests/labs/short-lease.yaml"), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let phone = attach(&lab, "phone1");
    // A one-shot stock client: the terminal agent keeps its lease.
    let out = roamlab(&[
        "attach",
        "server1",
        "--lab",
        "roamrenew",
        "--dhcp-client",
        "udhcpc",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // Three lease lifetimes: without renewals the leases, and the names, would be gone.
    std::thread::sleep(Duration::from_secs(10));
    let held = leases("roamrenew");
    assert!(
        held.iter().any(|l| l["ip"] == phone.as_str()),
        "the built-in client's lease was not renewed"
    );
    assert!(
        held.iter()
            .any(|l| l["host_name"] == "server1.home.example"),
        "udhcpc's lease was not kept"
    );
    assert_eq!(
        short(
            &lab,
            "fixed1",
            &["+norec", "@192.0.2.53", "phone1.home.example"]
        ),
        phone
    );
    let events = roamlab::events::read_all(&roamlab::contract::LabDir::of("roamrenew")).unwrap();
    let count = |what: &str| events.iter().filter(|e| e.event == what).count();
    assert_eq!(count("lease bound"), 2, "a renewal bound a lease again");
    assert_eq!(count("home DNS record set"), 2, "a renewal wrote DNS again");
    let log = std::fs::read_to_string(
        roamlab::contract::LabDir::of("roamrenew").agent_log("phone1", "terminal"),
    )
    .unwrap();
    assert!(log.matches("lease renewed").count() >= 3, "{log}");
}

#[test]
fn a_rebinding_client_keeps_its_address_and_nothing_is_written_again() {
    let Some(lab) = up("roamrebind") else { return };
    let phone = attach(&lab, "phone1");
    let address: std::net::Ipv4Addr = phone.parse().unwrap();
    // The phone's MAC, read through netlink's view of its namespace (run_in switches the
    // network namespace only, so /sys would show the root's links).
    let link = Command::new("ip")
        .args(["-n", "roamrebind-phone1", "-j", "link", "show", "eth0"])
        .output()
        .unwrap();
    let link: serde_json::Value = serde_json::from_slice(&link.stdout).unwrap();
    let mac: Vec<u8> = link[0]["address"]
        .as_str()
        .unwrap()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    let mac: [u8; 6] = mac.try_into().unwrap();
    // REBINDING, as after T2: the REQUEST goes to broadcast, for any server, with the
    // address in ciaddr. The server named in the lease is one that does not exist.
    const NO_SERVER: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 51, 100, 250);
    let lease = roamlab::agents::dhcp_client::Lease {
        address,
        prefix_len: 24,
        router: None,
        server: NO_SERVER,
        dns: Vec::new(),
        lease_secs: 600,
    };
    let rebound = roamlab::kernel::netns::run_in("roamrebind-phone1", move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(runtime.block_on(roamlab::agents::dhcp_client::renew(
            &roamlab::agents::place::Link::here("eth0"),
            mac,
            &lease,
            true,
            Duration::from_secs(3),
        )))
    })
    .unwrap()
    .expect("the rebinding REQUEST was answered");
    assert_eq!(rebound.address, address);
    assert_ne!(
        rebound.server, NO_SERVER,
        "the ACK names the server that answered"
    );
    let events = roamlab::events::read_all(&roamlab::contract::LabDir::of("roamrebind")).unwrap();
    let count = |what: &str| events.iter().filter(|e| e.event == what).count();
    assert_eq!(count("lease bound"), 1, "a rebind bound the lease again");
    assert_eq!(count("home DNS record set"), 1, "a rebind wrote DNS again");
}

#[test]
fn a_stock_client_claiming_another_subscribers_name_gets_no_lease_and_no_record() {
    let Some(lab) = up("roamclaim") else { return };
    let phone = attach(&lab, "phone1");
    // udhcpc in phone1's node (an authorised MAC) claims phone2's name, by option 81 and
    // then by option 12.
    for claim in [["-F", "phone2.home.example"], ["-x", "hostname:phone2"]] {
        let mut args = common::UDHCPC_ONCE.to_vec();
        args.extend(claim);
        let out = lab.exec("phone1", &args);
        assert!(
            !out.status.success(),
            "{claim:?}: udhcpc got a lease for another subscriber's name: {}",
            text(&out)
        );
    }
    let log = std::fs::read_to_string(
        roamlab::contract::LabDir::of("roamclaim").agent_log("visited", "dhcp"),
    )
    .unwrap();
    for claim in ["phone2.home.example", "phone2"] {
        assert!(
            log.contains(&format!(
                "claims `{claim}`, not its own host name phone1.home.example"
            )),
            "the refusal of `{claim}` is not logged: {log}"
        );
    }
    assert_eq!(
        short(
            &lab,
            "fixed1",
            &["+norec", "@192.0.2.53", "phone2.home.example"]
        ),
        ""
    );
    // The phone's own lease and name are untouched.
    assert_eq!(short(&lab, "fixed1", &["phone1.home.example"]), phone);
    let held = leases("roamclaim");
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["host_name"], "phone1.home.example");
}

/// Finding 5 of the issue on the private network: a VLR crash forgot every registration,
/// so the DHCP sweep ended the leases and both records went while the terminals ran on
/// and `status` still listed them. The VLR now resumes its registrations, the terminals
/// attach again, and leases, records and `status` stay as they were.
#[test]
fn a_vlr_crash_loses_no_registration_lease_or_record() {
    let Some(lab) = up("roamvlrcrash") else {
        return;
    };
    let phone = attach(&lab, "phone1");
    let server = attach(&lab, "server1");
    assert_ne!(phone, server);
    let before = records(&lab);
    common::kill_agent(&lab.status_json(), "vlr");
    let r = roamlab(&["restart", "--lab", "roamvlrcrash", "visited/vlr"]);
    assert!(r.status.success(), "restart: {}", text(&r));
    // Past two DHCP sweeps, so that a forgotten registration would have ended its lease.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(records(&lab), before, "a record changed");
    let mut leased: Vec<String> = leases("roamvlrcrash")
        .iter()
        .map(|l| l["ip"].as_str().unwrap().to_string())
        .collect();
    leased.sort();
    let mut want = vec![phone.clone(), server.clone()];
    want.sort();
    assert_eq!(leased, want);
    let status = lab.status_json();
    let listed: Vec<&str> = status["attached"]["visited"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["imsi"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    for t in status["terminals"].as_array().unwrap() {
        assert_eq!(t["registered"], true, "{t}");
    }
    let events = roamlab::events::read_all(&roamlab::contract::LabDir::of("roamvlrcrash")).unwrap();
    let count = |what: &str| events.iter().filter(|e| e.event == what).count();
    assert_eq!(count("attached again"), 2);
    assert_eq!(count("lease ended"), 0);
    // And both still answer by name.
    for name in ["phone1", "server1"] {
        let ping = lab.exec(
            "fixed1",
            &[
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                &format!("{name}.home.example"),
            ],
        );
        assert!(ping.status.success(), "{name}: {}", text(&ping));
    }
}

/// A DHCP message from `mac` (chaddr), as a client on the cell would send it.
fn dhcp_packet(
    kind: dhcproto::v4::MessageType,
    mac: [u8; 6],
    ciaddr: std::net::Ipv4Addr,
    requested: Option<std::net::Ipv4Addr>,
    client_id: Option<Vec<u8>>,
) -> Vec<u8> {
    use dhcproto::v4::{DhcpOption, Message};
    use dhcproto::Encodable;
    let mut m = Message::new_with_id(
        0x5eed,
        ciaddr,
        std::net::Ipv4Addr::UNSPECIFIED,
        std::net::Ipv4Addr::UNSPECIFIED,
        std::net::Ipv4Addr::UNSPECIFIED,
        &mac,
    );
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    if let Some(ip) = requested {
        m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
    }
    if let Some(id) = client_id {
        m.opts_mut().insert(DhcpOption::ClientIdentifier(id));
    }
    m.to_vec().unwrap()
}

fn mac_of(address: &str) -> [u8; 6] {
    let bytes: Vec<u8> = address
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

/// Finding 4 of the issue on the private network: from a port on the cell, a REQUEST
/// with an attached terminal's MAC moved its records to the attacker's address; a RELEASE
/// or DECLINE with the victim's MAC removed its lease and records; 99 DISCOVERs with one
/// MAC and random client identifiers held the pool; every packet wrote a log line. Here
/// phone1 (itself attached) attacks server1.
#[test]
fn a_terminal_cannot_pose_as_another_on_the_cell() {
    use dhcproto::v4::MessageType;
    let Some(lab) = up("roamspoof") else { return };
    let phone = attach(&lab, "phone1");
    let server = attach(&lab, "server1");
    let before = records(&lab);
    let leases_before = leases("roamspoof");
    let status = lab.status_json();
    let server_mac = status["attached"]["visited"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["host_name"] == "server1.home.example")
        .unwrap()["mac"]
        .as_str()
        .unwrap()
        .to_string();
    let victim = mac_of(&server_mac);
    let (server_ip, phone_ip): (std::net::Ipv4Addr, std::net::Ipv4Addr) =
        (server.parse().unwrap(), phone.parse().unwrap());
    let send = |packets: Vec<Vec<u8>>| {
        roamlab::kernel::netns::run_in("roamspoof-phone1", move || {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
            socket.set_broadcast(true)?;
            for p in packets {
                socket.send_to(&p, "255.255.255.255:67")?;
            }
            Ok(())
        })
        .unwrap()
    };
    // As the victim, by chaddr, from phone1's own link: a REQUEST for the victim's address
    // from phone1's, RELEASE, DECLINE, many times over.
    let mut spoofed = Vec::new();
    for _ in 0..500 {
        spoofed.push(dhcp_packet(
            MessageType::Request,
            victim,
            phone_ip,
            Some(server_ip),
            None,
        ));
        spoofed.push(dhcp_packet(
            MessageType::Release,
            victim,
            server_ip,
            None,
            None,
        ));
        spoofed.push(dhcp_packet(
            MessageType::Decline,
            victim,
            std::net::Ipv4Addr::UNSPECIFIED,
            Some(server_ip),
            None,
        ));
    }
    send(spoofed);
    // As itself, with a hundred client identifiers: at most one offer.
    let phone_mac = mac_of(
        status["attached"]["visited"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["host_name"] == "phone1.home.example")
            .unwrap()["mac"]
            .as_str()
            .unwrap(),
    );
    send(
        (0..99u8)
            .map(|i| {
                dhcp_packet(
                    MessageType::Discover,
                    phone_mac,
                    std::net::Ipv4Addr::UNSPECIFIED,
                    None,
                    Some(vec![0xff, i, 0x42]),
                )
            })
            .collect(),
    );
    // With the victim's address on its own link: the bridge drops every frame.
    let moved = lab.exec(
        "phone1",
        &["ip", "link", "set", "eth0", "address", &server_mac],
    );
    assert!(moved.status.success(), "{}", text(&moved));
    send(
        (0..50)
            .map(|_| dhcp_packet(MessageType::Release, victim, server_ip, None, None))
            .collect(),
    );
    let ping = lab.exec("phone1", &["ping", "-c", "1", "-W", "1", "198.51.100.1"]);
    assert!(
        !ping.status.success(),
        "frames with another terminal's address crossed the cell"
    );
    std::thread::sleep(Duration::from_millis(1200));

    assert_eq!(records(&lab), before, "a record changed");
    let bound = |ls: &[serde_json::Value]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = ls
            .iter()
            .filter(|l| l["offered"] == false)
            .map(|l| (l["ip"].as_str().unwrap().to_string(), l["mac"].to_string()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        bound(&leases("roamspoof")),
        bound(&leases_before),
        "a lease changed"
    );
    assert!(leases("roamspoof").len() <= 3, "{:?}", leases("roamspoof"));
    let log = std::fs::read_to_string(
        roamlab::contract::LabDir::of("roamspoof").agent_log("visited", "dhcp"),
    )
    .unwrap();
    assert!(
        log.contains("from another link-layer address"),
        "the spoofing is not logged: {log}"
    );
    let lines = log.lines().filter(|l| l.contains(" WARN ")).count();
    assert!(
        lines <= 10,
        "{lines} warning lines for 1,649 refused packets"
    );
    // server1 still answers by name.
    let ping = lab.exec(
        "fixed1",
        &["ping", "-c", "1", "-W", "2", "server1.home.example"],
    );
    assert!(ping.status.success(), "{}", text(&ping));
}

/// A single attach starts its terminal's agent while the terminal's link is made, the agent
/// waiting at a gate. A link that cannot be made (here a link of that name already in the
/// visited network) closes the gate: the attach fails naming the cause, the early agent
/// ends, nothing of the terminal is left, and the next attach works.
#[test]
fn a_link_that_cannot_be_made_calls_the_early_agent_off_and_leaves_nothing() {
    let Some(lab) = up("roamgate") else { return };
    let visited = format!("{}-visited", lab.name);
    let squat = Command::new("ip")
        .args([
            "-n",
            &visited,
            "link",
            "add",
            "cell-phone1",
            "type",
            "bridge",
        ])
        .output()
        .expect("ip");
    assert!(squat.status.success(), "{}", text(&squat));
    let out = roamlab(&["attach", "phone1", "--lab", &lab.name]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("phone1") && said.contains("cell-phone1"),
        "{said}"
    );
    let status = lab.status_json();
    assert!(
        status["agents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["node"] != "phone1"),
        "{status}"
    );
    assert!(
        !std::path::Path::new(&format!("/run/netns/{}-phone1", lab.name)).exists(),
        "the terminal's namespace is left"
    );
    let agents = Command::new("pgrep")
        .args([
            "-f",
            &format!("/run/roamlab/{}/terminals/phone1/", lab.name),
        ])
        .output()
        .expect("pgrep");
    assert!(
        String::from_utf8_lossy(&agents.stdout).trim().is_empty(),
        "an agent of phone1 still runs: {}",
        String::from_utf8_lossy(&agents.stdout)
    );
    // What failed is removed with the terminal (its port name freed); it attaches now.
    let _ = Command::new("ip")
        .args(["-n", &visited, "link", "del", "cell-phone1"])
        .output();
    attach(&lab, "phone1");
    // Its agent passed its gate and kept nothing of it: no end of a pipe it reads from is
    // left open, for the device's software to inherit.
    let pid = common::agent_pid(&lab.status_json(), "phone1/terminal");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the agent's fds");
    for fd in fds.flatten() {
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        let read_only = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .is_some_and(|flags| flags & 3 == 0);
        assert!(
            !(target.to_string_lossy().starts_with("pipe:") && read_only),
            "the agent keeps {} open for reading",
            target.display()
        );
    }
}
