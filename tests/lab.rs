//! Root and end-to-end tests: real labs in namespaces, real `ping`, real processes.
//! Each test has its own lab name and removes its lab however it ends.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{agent_pids, assert_nothing_left, roamlab, root_or_skip, text, LabGuard};

#[test]
fn default_lab_routes_across_the_core_and_down_leaves_nothing() {
    if !root_or_skip("default_lab_routes_across_the_core_and_down_leaves_nothing") {
        return;
    }
    let lab = LabGuard::new("e2edefault");
    let out = lab.up(None, &[]);
    assert!(out.status.success(), "up failed: {}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("e2edefault-visited") && table.contains("198.51.100.1/24"),
        "{table}"
    );

    // fixed1 reaches the visited and home routers, on their core links and their LANs.
    for target in ["198.18.0.6", "198.51.100.1", "198.18.0.2", "192.0.2.53"] {
        let ping = lab.exec("fixed1", &["ping", "-c", "1", "-W", "2", target]);
        assert!(
            ping.status.success(),
            "ping {target} from fixed1: {}",
            text(&ping)
        );
        assert!(String::from_utf8_lossy(&ping.stdout).contains("1 received"));
    }
    // Sealed: nothing outside the lab is routed.
    let internet = lab.exec("fixed1", &["ip", "route", "get", "9.9.9.9"]);
    assert!(
        !internet.status.success(),
        "a route leaves the lab: {}",
        text(&internet)
    );

    // exec gives the node its own resolv.conf and hosts.
    let resolv = lab.exec("fixed2", &["cat", "/etc/resolv.conf"]);
    assert!(
        String::from_utf8_lossy(&resolv.stdout).contains("written by roamlab for lab e2edefault")
    );
    let hosts = lab.exec("fixed2", &["getent", "hosts", "visited"]);
    assert!(
        String::from_utf8_lossy(&hosts.stdout).contains("198.51.100.1"),
        "{}",
        text(&hosts)
    );
    // ... and a sysfs of its own (mounted over the host's): its own interfaces, no others.
    for (node, own) in [
        ("fixed2", "eth0 lo"),
        (
            "core",
            "eth-home eth-visited hosts hosts-fixed1 hosts-fixed2 lo",
        ),
    ] {
        let listed = lab.exec(node, &["ls", "/sys/class/net"]);
        let mut names: Vec<String> = String::from_utf8_lossy(&listed.stdout)
            .split_whitespace()
            .map(String::from)
            .collect();
        names.sort();
        assert_eq!(names.join(" "), own, "{node}: {}", text(&listed));
    }

    let status = lab.status_json();
    assert_eq!(status["phase"], "running");
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 5);
    assert!(nodes.iter().all(|n| n["exists"] == true));
    let core = nodes.iter().find(|n| n["node"] == "core").unwrap();
    let names: Vec<&str> = core["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    for expected in [
        "lo",
        "hosts",
        "eth-home",
        "eth-visited",
        "hosts-fixed1",
        "hosts-fixed2",
    ] {
        assert!(
            names.contains(&expected),
            "core lacks {expected}: {names:?}"
        );
    }
    assert!(core["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["up"] == true));

    let down = roamlab(&["down", "e2edefault"]);
    assert!(down.status.success(), "down failed: {}", text(&down));
    assert_nothing_left("e2edefault", &[]);
}

#[test]
fn agents_start_inside_their_nodes_and_stop_at_down() {
    if !root_or_skip("agents_start_inside_their_nodes_and_stop_at_down") {
        return;
    }
    let lab = LabGuard::new("e2eagents");
    let out = lab.up(Some("tests/labs/agents.yaml"), &[]);
    assert!(out.status.success(), "up failed: {}", text(&out));
    // up waited for readiness: the echo service answers at once, from another node.
    let echo = lab.exec(
        "fixed2",
        &["bash", "-c", "exec 3<>/dev/tcp/203.0.113.10/7; echo hello-lab >&3; read -t 2 line <&3; echo \"$line\""],
    );
    assert_eq!(
        String::from_utf8_lossy(&echo.stdout).trim(),
        "hello-lab",
        "{}",
        text(&echo)
    );

    let status = lab.status_json();
    let agents = status["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 2);
    assert!(agents.iter().all(|a| a["alive"] == true), "{status}");
    let log = agents.iter().find(|a| a["node"] == "fixed1").unwrap()["log"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("echo agent ready"));
    let pids = agent_pids(&status);
    // The agent really runs in its node's namespace.
    let ns_of = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let node_ns = std::fs::metadata("/run/netns/e2eagents-fixed1").unwrap();
    let agent_ns = std::fs::metadata(format!("/proc/{}/ns/net", pids[0])).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (node_ns.dev(), node_ns.ino()),
        (agent_ns.dev(), agent_ns.ino()),
        "{:?}",
        ns_of(pids[0])
    );

    let down = roamlab(&["down", "e2eagents"]);
    assert!(down.status.success(), "down failed: {}", text(&down));
    assert_nothing_left("e2eagents", &pids);
}

#[test]
fn up_refuses_a_running_lab_of_the_same_name() {
    if !root_or_skip("up_refuses_a_running_lab_of_the_same_name") {
        return;
    }
    let lab = LabGuard::new("e2etwice");
    assert!(lab.up(None, &["--no-agents"]).status.success());
    let again = lab.up(None, &["--no-agents"]);
    assert_eq!(again.status.code(), Some(1));
    let msg = text(&again);
    assert!(msg.contains("lab e2etwice is already running"), "{msg}");
    assert_eq!(msg.trim().lines().count(), 1, "not one line: {msg}");
    // The running lab is untouched.
    assert!(lab
        .exec("fixed1", &["ping", "-c", "1", "-W", "2", "198.18.0.1"])
        .status
        .success());
}

#[test]
fn an_agent_that_never_becomes_ready_fails_up_and_leaves_nothing() {
    if !root_or_skip("an_agent_that_never_becomes_ready_fails_up_and_leaves_nothing") {
        return;
    }
    let lab = LabGuard::new("e2estall");
    let out = lab.up(Some("tests/labs/stall.yaml"), &["--ready-timeout", "0.5"]);
    assert_eq!(out.status.code(), Some(1));
    let msg = text(&out);
    assert!(
        msg.contains("agent fixed1/echo was not ready within 0.5s"),
        "{msg}"
    );
    assert!(
        msg.contains("e2estall/agents/fixed1.echo.log"),
        "names the log: {msg}"
    );
    assert_nothing_left("e2estall", &[]);
    let stray = Command::new("pgrep")
        .args(["-f", "ready-after-ms 60000"])
        .output()
        .unwrap();
    assert!(stray.stdout.is_empty(), "the stalled agent still runs");
}

#[test]
fn an_agent_that_cannot_bind_fails_up_naming_it_and_showing_its_log() {
    if !root_or_skip("an_agent_that_cannot_bind_fails_up_naming_it_and_showing_its_log") {
        return;
    }
    let lab = LabGuard::new("e2eclash");
    let out = lab.up(Some("tests/labs/clash.yaml"), &[]);
    assert_eq!(out.status.code(), Some(1));
    let msg = text(&out);
    // The agents start side by side: whichever binds second is the one that fails.
    assert!(
        msg.contains("agent fixed1/second exited before it was ready")
            || msg.contains("agent fixed1/first exited before it was ready"),
        "{msg}"
    );
    assert!(
        msg.contains("Address already in use"),
        "shows the log tail: {msg}"
    );
    assert_nothing_left("e2eclash", &[]);
}

#[test]
fn down_removes_a_lab_whose_agents_already_died() {
    if !root_or_skip("down_removes_a_lab_whose_agents_already_died") {
        return;
    }
    let lab = LabGuard::new("e2edead");
    assert!(lab.up(Some("tests/labs/agents.yaml"), &[]).status.success());
    let pids = agent_pids(&lab.status_json());
    for pid in &pids {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    // A process started by hand inside the lab is removed too.
    let mut sleeper = Command::new(common::bin())
        .args(["exec", "--lab", "e2edead", "fixed1", "--", "sleep", "300"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let down = roamlab(&["down", "e2edead"]);
    assert!(down.status.success(), "down failed: {}", text(&down));
    let _ = sleeper.wait();
    assert_nothing_left("e2edead", &[sleeper.id() as i32]);
}

#[test]
fn cleanup_after_kill_9_of_up_half_way_leaves_nothing() {
    if !root_or_skip("cleanup_after_kill_9_of_up_half_way_leaves_nothing") {
        return;
    }
    let lab = LabGuard::new("e2ekill");
    let path = common::repo("tests/labs/stall.yaml");
    let mut up = Command::new(common::bin())
        .args([
            "up",
            "--name",
            "e2ekill",
            "-t",
            path.to_str().unwrap(),
            "--ready-timeout",
            "60",
        ])
        .spawn()
        .unwrap();
    // Half-way: the fabric is built and `up` waits for the stalled agent, which runs in
    // its node (its log can exist a moment before the process does).
    let deadline = Instant::now() + Duration::from_secs(10);
    let agent_runs = || {
        let pids = Command::new("ip")
            .args(["netns", "pids", "e2ekill-fixed1"])
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        roamlab::contract::LabDir::of("e2ekill")
            .agent_log("fixed1", "echo")
            .exists()
            && !pids.trim_ascii().is_empty()
    };
    while !agent_runs() {
        assert!(Instant::now() < deadline, "up never reached its agents");
        std::thread::sleep(Duration::from_millis(10));
    }
    up.kill().unwrap();
    up.wait().unwrap();
    assert!(
        std::path::Path::new("/run/netns/e2ekill-fixed1").exists(),
        "the kill left a half-built lab"
    );

    let out = roamlab(&["cleanup"]);
    assert!(out.status.success(), "cleanup failed: {}", text(&out));
    let said = text(&out);
    assert!(said.contains("removed namespace e2ekill-fixed1"), "{said}");
    assert!(
        said.contains("process(es) left"),
        "the orphaned agent was not reported: {said}"
    );
    assert_nothing_left("e2ekill", &[]);
    drop(lab);
}

#[test]
fn a_stale_netns_entry_from_a_crash_does_not_block_up() {
    if !root_or_skip("a_stale_netns_entry_from_a_crash_does_not_block_up") {
        return;
    }
    let lab = LabGuard::new("e2estale");
    std::fs::create_dir_all("/run/netns").unwrap();
    std::fs::write("/run/netns/e2estale-core", b"").unwrap();
    let out = lab.up(None, &["--no-agents"]);
    assert!(out.status.success(), "up failed: {}", text(&out));
    assert!(lab
        .exec("fixed1", &["ping", "-c", "1", "-W", "2", "198.18.0.6"])
        .status
        .success());
    assert!(roamlab(&["down", "e2estale"]).status.success());
    assert_nothing_left("e2estale", &[]);
}

#[test]
fn interrupting_up_removes_what_was_built() {
    if !root_or_skip("interrupting_up_removes_what_was_built") {
        return;
    }
    let lab = LabGuard::new("e2eint");
    let path = common::repo("tests/labs/stall.yaml");
    let up = Command::new(common::bin())
        .args([
            "up",
            "--name",
            "e2eint",
            "-t",
            path.to_str().unwrap(),
            "--ready-timeout",
            "60",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !roamlab::contract::LabDir::of("e2eint")
        .agent_log("fixed1", "echo")
        .exists()
    {
        assert!(Instant::now() < deadline, "up never reached its agents");
        std::thread::sleep(Duration::from_millis(10));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = up.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("interrupted"), "{msg}");
    assert_nothing_left("e2eint", &[]);
    drop(lab);
}

#[test]
fn a_bad_topology_creates_nothing_and_exits_2() {
    if !root_or_skip("a_bad_topology_creates_nothing_and_exits_2") {
        return;
    }
    let out = roamlab(&[
        "up",
        "-t",
        common::repo("tests/fixtures/bad/duplicate-address.yaml")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("address 198.18.0.2 is already used"));
    assert_nothing_left("lab", &[]);
}

#[test]
fn dual_stack_routes_work_across_a_router() {
    if !root_or_skip("dual_stack_routes_work_across_a_router") {
        return;
    }
    let lab = LabGuard::new("e2esix");
    let out = lab.up(Some("tests/labs/ipv6.yaml"), &[]);
    assert!(out.status.success(), "up failed: {}", text(&out));
    for target in ["198.18.0.6", "2001:db8:2::2"] {
        let ping = lab.exec("a", &["ping", "-c", "1", "-W", "2", target]);
        assert!(ping.status.success(), "ping {target}: {}", text(&ping));
    }
}

#[test]
fn link_impairment_is_applied_with_netem_or_refused_clearly() {
    if !root_or_skip("link_impairment_is_applied_with_netem_or_refused_clearly") {
        return;
    }
    let lab = LabGuard::new("e2enetem");
    let out = lab.up(Some("tests/labs/impaired.yaml"), &[]);
    if out.status.success() {
        let ping = lab.exec("a", &["ping", "-c", "1", "-W", "2", "198.18.0.2"]);
        let said = String::from_utf8_lossy(&ping.stdout).to_string();
        let rtt: f64 = said
            .split("time=")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .expect(&said);
        assert!(
            rtt >= 50.0,
            "25 ms each way should give a round trip of 50 ms or more, got {rtt} ms"
        );
    } else {
        // This kernel has no netem (CONFIG_NET_SCH_NETEM): the refusal is clear and clean.
        let msg = text(&out);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            msg.contains("add netem to e2enetem-a/eth-b") && msg.contains("CONFIG_NET_SCH_NETEM"),
            "{msg}"
        );
        assert!(msg.contains("the lab was removed"), "{msg}");
        assert_nothing_left("e2enetem", &[]);
    }
}

/// `roamlab capture NODE/INTERFACE -w FILE` writes a pcap that tcpdump reads: a ping from
/// fixed1 shows its echo requests going out and the replies coming in. A node or interface
/// that is not there is refused by name.
#[test]
fn capture_writes_a_pcap_of_a_nodes_traffic_that_tcpdump_reads() {
    let Some((lab, _)) = common::up_lab("labcap", "topologies/roaming.yaml", &[]) else {
        return;
    };
    let file = format!("/tmp/roamlab-capture-{}.pcap", std::process::id());
    let mut capture = std::process::Command::new(common::bin())
        .args([
            "capture",
            "--lab",
            "labcap",
            "fixed1/eth0",
            "-w",
            &file,
            "--seconds",
            "3",
        ])
        .spawn()
        .expect("roamlab capture");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let ping = lab.exec("fixed1", &["ping", "-c", "2", "-i", "0.2", "203.0.113.1"]);
    assert!(ping.status.success(), "{}", text(&ping));
    assert!(capture.wait().unwrap().success());
    let read = std::process::Command::new("tcpdump")
        .args(["-n", "-r", &file])
        .output()
        .expect("tcpdump");
    let _ = std::fs::remove_file(&file);
    let shown = text(&read);
    assert!(read.status.success(), "{shown}");
    let count = |what: &str| shown.lines().filter(|l| l.contains(what)).count();
    assert_eq!(
        count("203.0.113.10 > 203.0.113.1: ICMP echo request"),
        2,
        "{shown}"
    );
    assert_eq!(
        count("203.0.113.1 > 203.0.113.10: ICMP echo reply"),
        2,
        "{shown}"
    );

    for (target, says) in [
        ("nosuch", "no node or attached terminal `nosuch`"),
        ("fixed1/nosuch", "no interface nosuch"),
    ] {
        let out = roamlab(&["capture", "--lab", "labcap", target, "--count", "1"]);
        assert!(!out.status.success(), "{target}");
        assert!(text(&out).contains(says), "{target}: {}", text(&out));
    }
    drop(lab);
}

/// A verb given a lab that does not exist says so in one line, naming the lab, whatever
/// it is asked of it, and leaves no trace of that lab.
#[test]
fn verbs_on_a_lab_that_does_not_exist_name_it_and_make_nothing() {
    if !root_or_skip("verbs_on_a_lab_that_does_not_exist_name_it_and_make_nothing") {
        return;
    }
    let lab = "nolab-verbs";
    for args in [
        vec!["attach", "phone1", "--lab", lab],
        vec!["attach", "phone*", "--lab", lab],
        vec!["attach", "--all", "--lab", lab],
        vec!["detach", "phone1", "--lab", lab],
        vec!["detach", "--all", "--lab", lab],
        vec!["restart", "home/hlr", "--lab", lab],
    ] {
        let out = roamlab(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains(&format!("no lab named {lab}")),
            "{args:?}: {err}"
        );
        assert!(
            !std::path::Path::new("/run/roamlab").join(lab).exists(),
            "{args:?} left a directory for {lab}"
        );
    }
}

/// The files a lab's namespaces are mounted on in /run/netns are one inode, each a hard
/// link of the first: a new inode on this machine's disk costs a scan of its bitmap.
#[test]
fn a_labs_namespace_files_are_links_of_one_inode() {
    if !root_or_skip("a_labs_namespace_files_are_links_of_one_inode") {
        return;
    }
    let lab = LabGuard::new("e2einode");
    assert!(lab.up(None, &["--no-agents"]).status.success());
    let names: Vec<String> = ["core", "home", "visited", "fixed1", "fixed2"]
        .iter()
        .map(|n| format!("e2einode-{n}"))
        .collect();
    let inodes = common::netns_file_inodes(&names);
    assert!(
        inodes.iter().all(|i| *i == inodes[0]),
        "{names:?}: {inodes:?}"
    );
    // Each is still a namespace of its own.
    let ids: std::collections::BTreeSet<String> = names
        .iter()
        .map(|n| {
            std::fs::metadata(format!("/run/netns/{n}"))
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m).to_string())
                .unwrap()
        })
        .collect();
    assert_eq!(ids.len(), names.len(), "two nodes share a namespace");
    assert!(common::roamlab(&["down", "e2einode"]).status.success());
    assert_nothing_left("e2einode", &[]);
}

/// A node's /etc files live on the lab's own tmpfs, and /etc/netns/<namespace> links to
/// them (so `ip netns exec` sees them too); a link there that is not the lab's makes `up`
/// fail naming it, and is left as it was; nothing of the lab is left.
#[test]
fn etc_netns_links_to_the_labs_own_files_and_a_foreign_link_is_left_alone() {
    if !root_or_skip("etc_netns_links_to_the_labs_own_files_and_a_foreign_link_is_left_alone") {
        return;
    }
    let lab = LabGuard::new("e2eetc");
    assert!(lab.up(None, &["--no-agents"]).status.success());
    let link = std::path::Path::new("/etc/netns/e2eetc-fixed1");
    assert_eq!(
        std::fs::read_link(link).unwrap(),
        std::path::Path::new("/run/roamlab/e2eetc/etc/e2eetc-fixed1")
    );
    let seen = Command::new("ip")
        .args(["netns", "exec", "e2eetc-fixed1", "cat", "/etc/resolv.conf"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&seen.stdout).contains("written by roamlab for lab e2eetc"),
        "{seen:?}"
    );
    assert!(common::roamlab(&["down", "e2eetc"]).status.success());
    assert!(
        !link.exists() && link.symlink_metadata().is_err(),
        "link left"
    );

    // Someone else's link where the lab would put its own.
    let foreign = std::path::Path::new("/etc/netns/e2eetc-home");
    let _ = std::fs::remove_file(foreign);
    std::os::unix::fs::symlink("/nonexistent/theirs", foreign).unwrap();
    let out = lab.up(None, &["--no-agents"]);
    let theirs = std::fs::read_link(foreign);
    let _ = std::fs::remove_file(foreign);
    assert_eq!(
        theirs.ok().as_deref(),
        Some(std::path::Path::new("/nonexistent/theirs")),
        "the foreign link was touched"
    );
    assert!(
        !out.status.success(),
        "up took a foreign link: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("/etc/netns/e2eetc-home links elsewhere: not this lab's"),
        "{}",
        text(&out)
    );
    assert_nothing_left("e2eetc", &[]);
}
