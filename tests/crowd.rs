//! A crowd: 300 terminals attached at once with the bulk verbs, every name checked
//! forward and reverse from a fixed host, then all detached with nothing of them left.
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
    if !root_or_skip(name) {
        return None;
    }
    let lab = LabGuard::new(name);
    let yaml = Command::new(repo("scripts/crowd-lab.sh"))
        .args([&count.to_string(), name])
        .output()
        .expect("run crowd-lab.sh");
    assert!(yaml.status.success(), "crowd-lab.sh: {}", text(&yaml));
    let path = std::env::temp_dir().join(format!("{name}.yaml"));
    std::fs::write(&path, &yaml.stdout).unwrap();
    let out = roamlab(&["up", "-t", &path.display().to_string()]);
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "up failed: {}", text(&out));
    Some(lab)
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
    let pids = agent_pids(&status);
    let out = roamlab(&["down", &lab.name]);
    assert!(out.status.success(), "down: {}", text(&out));
    assert_nothing_left(&lab.name, &pids);
}

#[test]
fn a_bulk_attach_killed_midway_leaves_nothing_after_detach_all() {
    const COUNT: usize = 60;
    let Some(lab) = crowd("crowdkill", COUNT) else {
        return;
    };
    let dir = roamlab::contract::LabDir::of(&lab.name);
    let mut attach = Command::new(bin())
        .args(["attach", "--all", "--parallel", "8", "--lab", &lab.name])
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

    let out = roamlab(&["detach", "--all", "--lab", &lab.name]);
    assert!(out.status.success(), "detach --all: {}", text(&out));
    let status = lab.status_json();
    assert_eq!(status["terminals"], serde_json::json!([]), "{status}");
    let netns = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(
        !netns.contains("crowdkill-t"),
        "terminal namespaces left: {netns}"
    );
    assert_eq!(
        std::fs::read_dir(dir.vlr_cell_links("visited"))
            .unwrap()
            .count(),
        0
    );
    // No stale record: the VLR's list, the leases and the home DNS all empty again. The
    // agents the killed `attach` never recorded are stopped and detach too; one stopped in
    // the middle of its attach (before the accept) is purged by the VLR's implicit-detach
    // timer (30 s), as a real network purges a terminal whose radio link was lost.
    let names: Vec<String> = (1..=COUNT)
        .map(|i| format!("t{i}.home.example A"))
        .collect();
    let clean = within(Duration::from_secs(45), || {
        nothing_recorded(&lab, &[("@192.0.2.53", &names)])
    });
    assert!(
        clean.is_some(),
        "registrations, leases or records left after the kill"
    );
    let pids = agent_pids(&status);
    let out = roamlab(&["down", &lab.name]);
    assert!(out.status.success(), "down: {}", text(&out));
    assert_nothing_left(&lab.name, &pids);
}
