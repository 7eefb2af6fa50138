//! A crowd: 300 terminals attached at once with the bulk verbs, every name checked
//! forward and reverse from a fixed host, then all detached with nothing of them left; and
//! terminals leased through a DHCP relay (Kea's perfdhcp).
//! Correctness only; the timing lives in scripts/bench-crowd.sh. Root only; each test
//! builds its own lab, in a test binary of its own so that no other lab shares the cores.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// A lab of `count` terminals t1 … tCOUNT, written by scripts/crowd-lab.sh.
fn crowd(name: &str, count: usize) -> Option<LabGuard> {
    crowd_with(name, count, false, |yaml| yaml)
}

/// The crowd lab, with a node `relay` (198.18.0.10) that is the visited DHCP server's
/// relay for 198.18.16.0/20 when `relay` is set, and its topology changed by `edit`.
fn crowd_with(
    name: &str,
    count: usize,
    relay: bool,
    edit: impl Fn(String) -> String,
) -> Option<LabGuard> {
    if !root_or_skip(name) {
        return None;
    }
    let lab = LabGuard::new(name);
    let yaml = Command::new(repo("scripts/crowd-lab.sh"))
        .args([&count.to_string(), name])
        .env("RELAY", if relay { "1" } else { "0" })
        .output()
        .expect("run crowd-lab.sh");
    assert!(yaml.status.success(), "crowd-lab.sh: {}", text(&yaml));
    let path = std::env::temp_dir().join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        edit(String::from_utf8_lossy(&yaml.stdout).into_owned()),
    )
    .unwrap();
    let out = roamlab(&["up", "-t", &path.display().to_string()]);
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "up failed: {}", text(&out));
    Some(lab)
}

/// Takes the lab down (its agents as `status` listed them) and checks nothing is left.
fn down_leaving_nothing(lab: &LabGuard, status: &serde_json::Value) {
    let pids = agent_pids(status);
    let out = roamlab(&["down", &lab.name]);
    assert!(out.status.success(), "down: {}", text(&out));
    assert_nothing_left(&lab.name, &pids);
}

/// Each terminal's address as `status` reports it.
fn addresses(lab: &LabGuard) -> BTreeMap<String, Ipv4Addr> {
    lab.status_json()["terminals"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| {
            let address = t["address"].as_str()?.parse().ok()?;
            Some((t["name"].as_str()?.to_string(), address))
        })
        .collect()
}

/// `dig` in batch mode from a node: one line of answers per query, in order.
fn dig_batch(lab: &LabGuard, node: &str, server: Option<&str>, queries: &[String]) -> Vec<String> {
    let args = ["exec", "--lab", &lab.name, node, "--", "dig", "-f", "-"];
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dig");
    let batch: String = queries
        .iter()
        .map(|q| format!("{q} {} +short +tries=2 +time=2\n", server.unwrap_or("")))
        .collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(batch.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "dig: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Whether the visited network holds no registration and no lease, and each server in
/// `asks` answers none of its queries.
fn nothing_recorded(lab: &LabGuard, asks: &[(&str, &[String])]) -> bool {
    let dir = roamlab::contract::LabDir::of(&lab.name);
    let leases: BTreeMap<String, serde_json::Value> =
        roamlab::journal::read(&dir.dhcp_leases("visited")).unwrap();
    roamlab::contract::published::read_attached(&dir.vlr_attached("visited")).is_empty()
        && leases.is_empty()
        && asks.iter().all(|(server, queries)| {
            dig_batch(lab, "fixed1", Some(server), queries)
                .iter()
                .all(|l| l.is_empty())
        })
}

#[test]
fn three_hundred_terminals_attach_at_once_resolve_both_ways_and_leave_nothing() {
    const COUNT: usize = 300;
    let Some(lab) = crowd("crowdci", COUNT) else {
        return;
    };
    let before = lab.status_json();
    let out = roamlab(&["attach", "--all", "--lab", &lab.name]);
    let said = text(&out);
    assert!(out.status.success(), "attach --all: {said}");
    assert!(
        said.contains(&format!("{COUNT} terminals: {COUNT} attached, 0 failed")),
        "{said}"
    );

    // Every terminal's namespace file is a link of the visited network's (no inode of its
    // own on the disk), and its link came without IPv6.
    let mut files: Vec<String> = (1..=COUNT).map(|i| format!("crowdci-t{i}")).collect();
    files.push("crowdci-visited".into());
    let inodes = netns_file_inodes(&files);
    assert!(inodes.iter().all(|i| *i == inodes[COUNT]), "{inodes:?}");
    for terminal in ["t1", "t150", "t300"] {
        let v6 = lab.exec(
            terminal,
            &["cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"],
        );
        let said = String::from_utf8_lossy(&v6.stdout);
        assert_eq!(
            said.trim(),
            "1",
            "{terminal} has IPv6 on its link: {}",
            text(&v6)
        );
    }

    // Every terminal has its own address, and its name resolves to it, both ways, from a
    // fixed host through the lab's resolver. Each one is asked, none sampled.
    let addresses = addresses(&lab);
    assert_eq!(addresses.len(), COUNT, "{addresses:?}");
    let distinct: std::collections::BTreeSet<_> = addresses.values().collect();
    assert_eq!(distinct.len(), COUNT, "two terminals share an address");
    let names: Vec<&String> = addresses.keys().collect();
    let forward: Vec<String> = names
        .iter()
        .map(|n| format!("{n}.home.example A"))
        .collect();
    let answers = dig_batch(&lab, "fixed1", None, &forward);
    let reverse: Vec<String> = names
        .iter()
        .map(|n| format!("-x {}", addresses[*n]))
        .collect();
    let pointers = dig_batch(&lab, "fixed1", None, &reverse);
    let mut wrong = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let want = addresses[*name].to_string();
        if answers.get(i) != Some(&want) {
            wrong.push(format!("{name} A → {:?}, not {want}", answers.get(i)));
        }
        let host = format!("{name}.home.example.");
        if pointers.get(i) != Some(&host) {
            wrong.push(format!("{want} PTR → {:?}, not {host}", pointers.get(i)));
        }
    }
    assert!(wrong.is_empty(), "{} wrong answers: {wrong:?}", wrong.len());

    let out = roamlab(&["detach", "--all", "--lab", &lab.name]);
    let said = text(&out);
    assert!(out.status.success(), "detach --all: {said}");
    assert!(
        said.contains(&format!("{COUNT} terminals: {COUNT} detached, 0 failed")),
        "{said}"
    );

    // Nothing of a terminal is left: no namespace, no cell port, no record at the VLR,
    // no link record, no lease, and neither record at the authoritative servers.
    let status = lab.status_json();
    assert_eq!(status["terminals"], serde_json::json!([]), "{status}");
    assert_eq!(status["nodes"], before["nodes"], "the lab's nodes changed");
    let netns = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(
        !netns.contains("crowdci-t"),
        "terminal namespaces left: {netns}"
    );
    let dir = roamlab::contract::LabDir::of(&lab.name);
    assert!(roamlab::contract::published::read_attached(&dir.vlr_attached("visited")).is_empty());
    let links = std::fs::read_dir(dir.vlr_cell_links("visited"))
        .unwrap()
        .count();
    assert_eq!(links, 0, "link records left");
    let records_gone = within(Duration::from_secs(15), || {
        nothing_recorded(
            &lab,
            &[("@192.0.2.53", &forward), ("@198.18.8.53", &reverse)],
        )
    });
    assert!(
        records_gone.is_some(),
        "leases or DNS records of the crowd left"
    );
    down_leaving_nothing(&lab, &status);
}

#[test]
fn a_bulk_attach_killed_midway_leaves_nothing_after_detach_all() {
    // Enough, one at a time, that some are still on their way at the kill.
    const COUNT: usize = 200;
    let Some(lab) = crowd("crowdkill", COUNT) else {
        return;
    };
    let dir = roamlab::contract::LabDir::of(&lab.name);
    let mut attach = Command::new(bin())
        .args(["attach", "--all", "--parallel", "1", "--lab", &lab.name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once some terminals are attached and others are still on their way.
    let some_attached = within(Duration::from_secs(20), || {
        roamlab::contract::published::read_attached(&dir.vlr_attached("visited")).len() >= 10
    });
    attach.kill().unwrap();
    attach.wait().unwrap();
    assert!(
        some_attached.is_some(),
        "no terminal attached before the kill"
    );
    let attached = roamlab::contract::published::read_attached(&dir.vlr_attached("visited")).len();
    assert!(attached < COUNT, "the kill came too late to test anything");

    // The agents the killed `attach` never recorded are stopped and detach too; one
    // stopped in the middle of its attach (before the accept) is purged by the VLR's
    // implicit-detach timer (30 s), as a real network purges a terminal whose radio link
    // was lost.
    detach_all_leaves_nothing(&lab, COUNT);
}

/// `detach --all`, after which no terminal of the crowd is left: no record in the lab's
/// state, no namespace, no link record, no terminal host, and (within the VLR's
/// implicit-detach time) no registration, lease or home DNS record; then `down`.
fn detach_all_leaves_nothing(lab: &LabGuard, count: usize) {
    let dir = roamlab::contract::LabDir::of(&lab.name);
    let out = roamlab(&["detach", "--all", "--lab", &lab.name]);
    assert!(out.status.success(), "detach --all: {}", text(&out));
    let status = lab.status_json();
    assert_eq!(status["terminals"], serde_json::json!([]), "{status}");
    assert!(
        !status["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "terminal-host"),
        "a terminal host is still recorded: {status}"
    );
    let netns = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(
        !netns.contains(&format!("{}-t", lab.name)),
        "terminal namespaces left: {netns}"
    );
    assert_eq!(
        std::fs::read_dir(dir.vlr_cell_links("visited"))
            .unwrap()
            .count(),
        0
    );
    let names: Vec<String> = (1..=count)
        .map(|i| format!("t{i}.home.example A"))
        .collect();
    let clean = within(Duration::from_secs(45), || {
        nothing_recorded(lab, &[("@192.0.2.53", &names)])
    });
    assert!(clean.is_some(), "registrations, leases or records left");
    down_leaving_nothing(lab, &status);
}

/// Issue 9: the one process that hosts a bulk attach's terminals, killed (SIGKILL) while
/// they attach: the verb names the terminals it lost, and after `detach --all` nothing of
/// any of them is left, at the visited network or in either DNS.
#[test]
fn a_terminal_host_killed_midway_leaves_nothing_after_detach_all() {
    // Enough, one at a time, that the first host is still attaching when it is killed.
    const COUNT: usize = 200;
    let Some(lab) = crowd("hostkill", COUNT) else {
        return;
    };
    let dir = roamlab::contract::LabDir::of(&lab.name);
    let attach = Command::new(bin())
        .args(["attach", "--all", "--parallel", "1", "--lab", &lab.name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let some_attached = within(Duration::from_secs(20), || {
        roamlab::contract::published::read_attached(&dir.vlr_attached("visited")).len() >= 10
    });
    assert!(some_attached.is_some(), "no terminal attached");
    // Read from the state file: `status` would take long enough for the host to finish.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.state()).unwrap()).unwrap();
    let host = state["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "terminal-host")
        .unwrap_or_else(|| panic!("no terminal host: {state}"));
    let pid = host["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = attach.wait_with_output().unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "attach --all did not fail: {said}");
    assert!(
        said.contains("ended before it settled"),
        "the lost terminals are not named: {said}"
    );

    // The VLR saw each radio link go with the host, and purges each at home after its
    // implicit-detach time.
    detach_all_leaves_nothing(&lab, COUNT);
}

/// Issue 9: terminals in one host fail alone. With a pool of two addresses, a bulk attach
/// of three leases two, and names the third with the pool it could not get an address
/// from; the two attached are named both ways and reach each other by name, through their
/// network (their ports on the cell are isolated: the neighbour a terminal sees for the
/// other is the network's router).
#[test]
fn a_terminal_that_fails_in_a_bulk_attach_fails_alone() {
    let two_addresses = |yaml: String| {
        let pool = "pool: { start: 198.18.8.100, end: 198.18.12.254 }";
        assert!(yaml.contains(pool), "crowd-lab.sh changed its pool");
        yaml.replace(pool, "pool: { start: 198.18.8.100, end: 198.18.8.101 }")
    };
    let Some(lab) = crowd_with("bulkpool", 3, false, two_addresses) else {
        return;
    };
    let out = roamlab(&["attach", "t1", "t2", "t3", "--lab", &lab.name]);
    let said = text(&out);
    assert!(
        !out.status.success(),
        "three attached to two addresses: {said}"
    );
    assert!(
        said.contains("3 terminals: 2 attached, 1 failed")
            && said.contains("pool 198.18.8.100-198.18.8.101 exhausted"),
        "the failed terminal and its pool are not named: {said}"
    );
    let addresses = addresses(&lab);
    assert_eq!(addresses.len(), 2, "{addresses:?}");
    let names: Vec<&String> = addresses.keys().collect();
    let (a, b) = (names[0], names[1]);
    let out = roamlab(&[
        "exec",
        "--lab",
        &lab.name,
        a,
        "--",
        "ping",
        "-c1",
        "-W2",
        &format!("{b}.home.example"),
    ]);
    assert!(
        out.status.success(),
        "{a} cannot ping {b} by name: {}",
        text(&out)
    );
    let neighbours = roamlab(&["exec", "--lab", &lab.name, a, "--", "ip", "neigh", "show"]);
    let neighbours = text(&neighbours);
    let mac_of = |address: &str| {
        neighbours
            .lines()
            .find(|l| l.starts_with(&format!("{address} ")))
            .and_then(|l| l.split("lladdr ").nth(1))
            .map(|rest| rest.split(' ').next().unwrap_or_default().to_string())
    };
    let router = mac_of("198.18.8.1");
    assert!(
        router.is_some(),
        "no neighbour entry of the router: {neighbours}"
    );
    assert_eq!(
        mac_of(&addresses[b].to_string()),
        router,
        "{a} reaches {b} directly, not through the network: {neighbours}"
    );
    down_leaving_nothing(&lab, &lab.status_json());
}

/// Each registered terminal's link-layer address, as its VLR publishes it.
fn registered_macs(lab: &LabGuard) -> BTreeMap<String, String> {
    let dir = roamlab::contract::LabDir::of(&lab.name);
    roamlab::contract::published::read_attached(&dir.vlr_attached("visited"))
        .into_iter()
        .filter_map(|t| Some((t.host_name?, t.mac?)))
        .collect()
}

/// RFC 2131 §4.1 relaying, with Kea's perfdhcp as the relay: terminals registered through
/// the VLR and HLR without a DHCP client of their own are leased from the relay's pool and
/// named both ways; a hardware address the VLR never registered gets nothing; a terminal
/// on the cell that poses as a relay is refused, by name, in the events.
#[test]
fn relayed_terminals_are_leased_and_named_and_only_they() {
    let Some(lab) = crowd_with("relayci", 3, true, |yaml| yaml) else {
        return;
    };
    let out = roamlab(&[
        "attach",
        "t1",
        "t2",
        "--dhcp-client",
        "none",
        "--lab",
        &lab.name,
    ]);
    assert!(out.status.success(), "attach: {}", text(&out));
    let out = roamlab(&["attach", "t3", "--lab", &lab.name]);
    assert!(out.status.success(), "attach t3: {}", text(&out));
    let macs = registered_macs(&lab);
    let relayed = ["t1.home.example", "t2.home.example"];
    let stranger = "02:99:00:00:00:01";
    let list = std::env::temp_dir().join("relayci-macs.txt");
    let mut lines: Vec<&str> = relayed.iter().map(|n| macs[*n].as_str()).collect();
    lines.push(stranger);
    std::fs::write(&list, lines.join("\n") + "\n").unwrap();
    let out = lab.exec(
        "relay",
        &[
            "perfdhcp",
            "-4",
            "-l",
            "198.18.0.10",
            "-M",
            &list.display().to_string(),
            "-r",
            "30",
            "-n",
            "30",
            "-W",
            "500000",
            "198.18.0.9",
        ],
    );
    let _ = std::fs::remove_file(&list);
    let said = text(&out);
    assert!(said.contains("REQUEST-ACK"), "perfdhcp: {said}");

    // Both relayed terminals hold a lease from the relay's pool, and only they.
    let dir = roamlab::contract::LabDir::of(&lab.name);
    let leases: BTreeMap<String, serde_json::Value> =
        roamlab::journal::read(&dir.dhcp_leases("visited")).unwrap();
    let bound: BTreeMap<String, String> = leases
        .iter()
        .filter(|(_, l)| l["offered"] == false)
        .map(|(ip, l)| (l["host_name"].as_str().unwrap().to_string(), ip.clone()))
        .collect();
    for name in relayed {
        let ip: Ipv4Addr = bound[name].parse().unwrap();
        assert!(
            "198.18.16.0/20"
                .parse::<ipnet::Ipv4Net>()
                .unwrap()
                .contains(&ip),
            "{name} leased {ip}, outside the relay's pool"
        );
    }
    assert!(
        leases
            .values()
            .all(|l| l["mac"] != serde_json::json!([2, 0x99, 0, 0, 0, 1])),
        "a stranger got a lease: {leases:?}"
    );
    assert!(
        bound["t3.home.example"].starts_with("198.18.8."),
        "{bound:?}"
    );

    // Their names resolve to those addresses, both ways, at the authorities.
    let forward: Vec<String> = relayed.iter().map(|n| format!("{n} A")).collect();
    let reverse: Vec<String> = relayed
        .iter()
        .map(|n| format!("-x {}", bound[*n]))
        .collect();
    let named = within(Duration::from_secs(10), || {
        let a = dig_batch(&lab, "fixed1", Some("@192.0.2.53"), &forward);
        let ptr = dig_batch(&lab, "fixed1", Some("@198.18.8.53"), &reverse);
        relayed
            .iter()
            .enumerate()
            .all(|(i, n)| a.get(i) == Some(&bound[*n]) && ptr.get(i) == Some(&format!("{n}.")))
    });
    assert!(named.is_some(), "relayed terminals not named both ways");

    // A fixed host elsewhere in the lab takes the relay's address and relays for t3 to the
    // server's address towards the relay: not heard, as that socket takes only what
    // arrives on the relay's own link. t3 keeps its lease on the cell.
    let t3_list = std::env::temp_dir().join("relayci-t3.txt");
    std::fs::write(&t3_list, format!("{}\n", macs["t3.home.example"])).unwrap();
    let out = lab.exec(
        "fixed1",
        &["ip", "address", "add", "198.18.0.10/32", "dev", "eth0"],
    );
    assert!(
        out.status.success(),
        "fixed1 takes the relay's address: {}",
        text(&out)
    );
    let out = lab.exec(
        "fixed1",
        &[
            "perfdhcp",
            "-4",
            "-l",
            "198.18.0.10",
            "-M",
            &t3_list.display().to_string(),
            "-r",
            "5",
            "-n",
            "5",
            "-W",
            "300000",
            "198.18.0.9",
        ],
    );
    let _ = std::fs::remove_file(&t3_list);
    assert!(
        text(&out).contains("DISCOVER-OFFER"),
        "perfdhcp on fixed1: {}",
        text(&out)
    );
    let leases: BTreeMap<String, serde_json::Value> =
        roamlab::journal::read(&dir.dhcp_leases("visited")).unwrap();
    let t3_leases: Vec<&String> = leases
        .iter()
        .filter(|(_, l)| l["host_name"] == "t3.home.example")
        .map(|(ip, _)| ip)
        .collect();
    assert_eq!(
        t3_leases,
        [&bound["t3.home.example"]],
        "a posing relay moved t3's lease: {leases:?}"
    );

    // t3, on the cell, sends a relayed request of its own: refused, and said so.
    let t3_mac = &macs["t3.home.example"];
    let t3_ip = &bound["t3.home.example"];
    let out = lab.exec(
        "t3",
        &[
            "perfdhcp",
            "-4",
            "-l",
            t3_ip,
            "-b",
            &format!("mac={t3_mac}"),
            "-r",
            "5",
            "-n",
            "5",
            "-W",
            "300000",
            "198.18.8.1",
        ],
    );
    assert!(
        text(&out).contains("DISCOVER-OFFER"),
        "perfdhcp on t3: {}",
        text(&out)
    );
    let refused = within(Duration::from_secs(5), || {
        roamlab::events::read_all(&dir).is_ok_and(|events| {
            events.iter().any(|e| {
                e.event == "DHCP request refused"
                    && e.fields["why"]
                        .as_str()
                        .is_some_and(|w| w.contains("on the cell"))
            })
        })
    });
    assert!(
        refused.is_some(),
        "the cell's relayed request was not refused by name"
    );
    let leases: BTreeMap<String, serde_json::Value> =
        roamlab::journal::read(&dir.dhcp_leases("visited")).unwrap();
    assert_eq!(
        leases.len(),
        3,
        "the refused request changed the leases: {leases:?}"
    );

    down_leaving_nothing(&lab, &lab.status_json());
}

/// Issue 9: an exhausted pool is a refusal that names the pool, not a hang.
#[test]
fn an_exhausted_pool_is_named_in_the_refusal() {
    let one_address = |yaml: String| {
        let pool = "pool: { start: 198.18.8.100, end: 198.18.12.254 }";
        assert!(yaml.contains(pool), "crowd-lab.sh changed its pool");
        yaml.replace(pool, "pool: { start: 198.18.8.100, end: 198.18.8.100 }")
    };
    let Some(lab) = crowd_with("poolci", 2, false, one_address) else {
        return;
    };
    let out = roamlab(&["attach", "t1", "--lab", &lab.name]);
    assert!(out.status.success(), "attach t1: {}", text(&out));
    let out = roamlab(&["attach", "t2", "--lab", &lab.name]);
    let said = text(&out);
    assert!(!out.status.success(), "t2 attached to a full pool: {said}");
    assert!(
        said.contains("t2") && said.contains("pool 198.18.8.100-198.18.8.100 exhausted"),
        "the refusal does not name the pool: {said}"
    );
    down_leaving_nothing(&lab, &lab.status_json());
}

/// A DHCP reply goes to its client's port alone: a terminal on the cell sees none of
/// another's OFFER and ACK (which, broadcast, reached every terminal: each reply then
/// cost work in every one of them).
#[test]
fn a_terminal_sees_no_other_terminals_dhcp_replies() {
    let Some(lab) = crowd("replyci", 2) else {
        return;
    };
    let out = roamlab(&["attach", "t2", "--lab", &lab.name]);
    assert!(out.status.success(), "attach t2: {}", text(&out));
    let capture = std::env::temp_dir().join("replyci-t2.txt");
    let file = std::fs::File::create(&capture).unwrap();
    let mut tcpdump = Command::new(bin())
        .args([
            "exec", "--lab", &lab.name, "t2", "--", "tcpdump", "-i", "eth0", "-n", "-l", "udp",
            "src", "port", "67",
        ])
        .stdout(file)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // tcpdump says on stderr when it listens.
    let mut stderr = std::io::BufReader::new(tcpdump.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("listening") {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        assert!(n > 0, "tcpdump ended: {said}");
        said += &line;
    }
    let out = roamlab(&["attach", "t1", "--lab", &lab.name]);
    assert!(out.status.success(), "attach t1: {}", text(&out));
    std::thread::sleep(Duration::from_millis(300));
    let _ = tcpdump.kill();
    let _ = tcpdump.wait();
    let seen = std::fs::read_to_string(&capture).unwrap();
    let _ = std::fs::remove_file(&capture);
    assert!(
        seen.trim().is_empty(),
        "t2 saw DHCP replies meant for t1: {seen}"
    );
    down_leaving_nothing(&lab, &lab.status_json());
}

/// Processes whose command line is `args` (a terminal's agent keeps its CLI's).
fn processes_running(args: &[&str]) -> Vec<i32> {
    let wanted: Vec<u8> = args
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.ends_with(&wanted) && c.len() > wanted.len())
        })
        .collect()
}

/// One terminal's agent starts before its node is made (it enters the node once it is
/// there): an attach whose node cannot be made calls it off, and it ends, leaving nothing.
#[test]
fn an_attach_whose_node_cannot_be_made_calls_its_early_agent_off() {
    let Some(lab) = crowd("earlyoff", 2) else {
        return;
    };
    let foreign = std::path::PathBuf::from(format!("/etc/netns/{}-t1", lab.name));
    let _ = std::fs::remove_file(&foreign);
    std::os::unix::fs::symlink("/nonexistent/theirs", &foreign).unwrap();
    let out = roamlab(&["attach", "t1", "--lab", &lab.name]);
    let theirs = std::fs::read_link(&foreign);
    let _ = std::fs::remove_file(&foreign);
    assert_eq!(
        theirs.ok().as_deref(),
        Some(std::path::Path::new("/nonexistent/theirs")),
        "the foreign link was touched"
    );
    assert!(
        !out.status.success() && text(&out).contains("links elsewhere: not this lab's"),
        "{}",
        text(&out)
    );
    let agent = ["attach", "t1", "--lab", lab.name.as_str()];
    assert!(
        within(Duration::from_secs(5), || processes_running(&agent)
            .is_empty())
        .is_some(),
        "t1's agent stayed: {:?}",
        processes_running(&agent)
    );
    // It ended because its start was called off, not because the wait for it ran out.
    let log = format!("/run/roamlab/{}/agents/t1.terminal.log", lab.name);
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log.contains("its start was called off"), "t1's log: {log}");
    // The node is free again: the same terminal attaches.
    let out = roamlab(&["attach", "t1", "--lab", &lab.name]);
    assert!(out.status.success(), "{}", text(&out));
    down_leaving_nothing(&lab, &lab.status_json());
}
