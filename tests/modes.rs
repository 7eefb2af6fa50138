//! The background art beside the method (issue 10), on real labs:
//! tests/labs/no-update.yaml is the default lab whose visited network runs `mode: no-update`
//! ([0011]–[0012]: a local address named only in the visited DNS), and
//! tests/labs/home-cell.yaml has a cell in the home network (Fig. 2), and
//! tests/labs/tunnel.yaml a visited network in tunnel mode beside the method's (Fig. 3).

mod common;

use std::time::Duration;

use common::{roamlab, text, LabGuard};

/// The status `dig` reports for `name` asked from fixed1 (`NOERROR`, `NXDOMAIN`…), and its
/// short answer.
fn dig(lab: &LabGuard, args: &[&str]) -> (String, String) {
    let out = lab.exec("fixed1", &[&["dig", "+tries=1", "+time=2"], args].concat());
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let status = said
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("no answer")
        .to_string();
    let answer = said
        .lines()
        .skip_while(|l| !l.starts_with(";; ANSWER SECTION:"))
        .nth(1)
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or_default()
        .to_string();
    (status, answer)
}

/// The address `roamlab attach` reports ("… has address A; …").
fn address_in(said: &str) -> String {
    said.split(" has address ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| panic!("no address in: {said}"))
}

fn reverse(address: &str) -> String {
    let o: Vec<&str> = address.split('.').collect();
    format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
}

/// [0011]–[0012]: without the home update the terminal is reachable by its local address and
/// its reverse lookup works, but the forward lookup fails (the home DNS owns the name and
/// knows nothing), so it cannot be reached by name; the home's HLR still registers it.
#[test]
fn without_a_home_update_the_reverse_lookup_works_and_the_forward_lookup_fails() {
    let Some((lab, _)) = common::up_lab("mdnoup", "tests/labs/no-update.yaml", &[]) else {
        return;
    };
    let out = roamlab(&["attach", "phone1", "--lab", "mdnoup"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("visited runs mode no-update: its home DNS is not told"),
        "{said}"
    );
    let address = address_in(&said);
    let ptr = || {
        dig(
            &lab,
            &["+norec", "@198.51.100.53", &reverse(&address), "PTR"],
        )
    };
    let named = common::within(Duration::from_secs(10), || {
        ptr() == ("NOERROR".into(), "phone1.home.example.".into())
    });
    assert!(named.is_some(), "no reverse record: {:?}", ptr());
    assert_eq!(
        dig(&lab, &["+norec", "@192.0.2.53", "phone1.home.example", "A"]).0,
        "NXDOMAIN",
        "the home DNS was told"
    );
    assert_eq!(
        dig(&lab, &["phone1.home.example", "A"]).0,
        "NXDOMAIN",
        "the resolver found the name"
    );
    let by_name = lab.exec("fixed1", &["ping", "-c1", "-W1", "phone1.home.example"]);
    assert!(!by_name.status.success(), "{}", text(&by_name));
    let by_address = lab.exec("fixed1", &["ping", "-c1", "-W2", &address]);
    assert!(by_address.status.success(), "{}", text(&by_address));
    let hlr = roamlab::contract::LabDir::of("mdnoup").hlr_state("home");
    let state: std::collections::BTreeMap<String, serde_json::Value> =
        roamlab::journal::read(&hlr).unwrap();
    assert_eq!(state["001010000000001"]["vlr"], "visited");
    assert_eq!(state["001010000000001"]["address"], serde_json::Value::Null);

    let out = roamlab(&["detach", "phone1", "--lab", "mdnoup"]);
    assert!(out.status.success(), "{}", text(&out));
    let gone = common::within(Duration::from_secs(10), || ptr().0 == "NXDOMAIN");
    assert!(gone.is_some(), "the reverse record stayed: {:?}", ptr());
    drop(lab);
}

/// Issue 11, deliverable 6: `up`, `attach` and `detach` speak `--json` as `status` does:
/// one document, each terminal's outcome with its reason, the exit status unchanged.
#[test]
fn up_attach_and_detach_speak_json() {
    let Some((lab, out)) = common::up_lab("mdjson", "tests/labs/no-update.yaml", &["--json"])
    else {
        return;
    };
    let up: serde_json::Value = serde_json::from_slice(&out.stdout).expect("up --json is JSON");
    assert_eq!(up, lab.status_json());
    let json = |args: &[&str]| {
        let out = roamlab(&[args, &["--lab", "mdjson", "--json"]].concat());
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?} --json: {e}: {}", text(&out)));
        (out.status.success(), doc)
    };
    let (ok, attached) = json(&["attach", "phone1", "homebound1"]);
    assert!(!ok, "a refused terminal must fail the verb: {attached}");
    assert_eq!(
        (attached["succeeded"].as_u64(), attached["failed"].as_u64()),
        (Some(1), Some(1))
    );
    let of = |doc: &serde_json::Value, t: &str| {
        doc["terminals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["terminal"] == t)
            .cloned()
            .unwrap_or_else(|| panic!("no {t} in {doc}"))
    };
    let phone1 = of(&attached, "phone1");
    assert_eq!(phone1["ok"], true, "{phone1}");
    assert_eq!(phone1["mode"], "no-update");
    assert_eq!(phone1["host_name"], "phone1.home.example");
    assert!(
        phone1["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("198.51.100.")),
        "{phone1}"
    );
    let homebound = of(&attached, "homebound1");
    assert_eq!(homebound["ok"], false);
    assert!(
        homebound["why"]
            .as_str()
            .is_some_and(|w| w.contains("roaming")),
        "{homebound}"
    );
    let (ok, detached) = json(&["detach", "--all"]);
    assert!(ok, "{detached}");
    assert_eq!(of(&detached, "phone1")["visited"], "visited");
    drop(lab);
}

/// Fig. 2, the background art at home: a cell in the home network, whose own VLR and DHCP
/// serve its terminals through the HLR directly. The terminal gets a home address, both its
/// records are in the home DNS, and every packet to it goes through the home router; a
/// subscriber whose profile forbids roaming attaches there, and only there.
#[test]
fn at_home_the_terminal_has_a_home_address_named_in_the_home_dns_both_ways() {
    let Some((lab, _)) = common::up_lab("mdhome", "tests/labs/home-cell.yaml", &[]) else {
        return;
    };
    let out = roamlab(&["attach", "homebound1", "--at", "visited", "--lab", "mdhome"]);
    assert!(!out.status.success(), "a non-roaming subscriber roamed");
    assert!(text(&out).contains("roaming not allowed"), "{}", text(&out));
    let out = roamlab(&["attach", "homebound1", "--at", "home", "--lab", "mdhome"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("resolves to it from fixed1"), "{said}");
    let address = address_in(&said);
    assert!(
        address.starts_with("198.18.48."),
        "not a home address: {address}"
    );
    let name = "homebound1.home.example";
    assert_eq!(
        dig(&lab, &["+norec", "@192.0.2.53", name, "A"]),
        ("NOERROR".into(), address.clone())
    );
    let ptr = || dig(&lab, &["+norec", "@192.0.2.53", &reverse(&address), "PTR"]);
    let named = common::within(Duration::from_secs(10), || {
        ptr() == ("NOERROR".into(), format!("{name}."))
    });
    assert!(named.is_some(), "no reverse record at home: {:?}", ptr());
    let route = lab.exec("fixed1", &["traceroute", "-n", "-q1", "-w1", &address]);
    let hops = text(&route);
    assert!(
        hops.lines()
            .any(|l| l.split_whitespace().nth(1) == Some("198.18.0.2")),
        "the path does not cross the home router: {hops}"
    );
    let by_name = lab.exec("fixed1", &["ping", "-c1", "-W2", name]);
    assert!(by_name.status.success(), "{}", text(&by_name));
    // The home cell is a cell like any other: a process in homebound1's node that asks
    // for a lease under phone1's name gets none, and phone1's name stays unwritten.
    let posing = lab.exec(
        "homebound1",
        &[&common::UDHCPC_ONCE[..], &["-F", "phone1.home.example"]].concat(),
    );
    assert!(!posing.status.success(), "{}", text(&posing));
    assert_eq!(
        dig(&lab, &["+norec", "@192.0.2.53", "phone1.home.example", "A"]).0,
        "NXDOMAIN"
    );
    let refused = text(&roamlab(&["events", "mdhome"]));
    assert!(
        refused
            .lines()
            .any(|l| l.contains("home/dhcp") && l.contains("claims `phone1.home.example`")),
        "{refused}"
    );
    drop(lab);
}

/// Bytes the home router has received on its link to the core (from /proc/net/dev, which
/// shows the namespace of the process that reads it).
fn home_rx_bytes(lab: &LabGuard) -> u64 {
    let dev = text(&lab.exec("home", &["cat", "/proc/net/dev"]));
    dev.lines()
        .find_map(|l| {
            let (name, counters) = l.split_once(':')?;
            (name.trim() == "eth-core").then(|| counters.split_whitespace().next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no eth-core in {dev}"))
}

/// Whether a traceroute's hops include `hop`.
fn crosses(hops: &str, hop: &str) -> bool {
    hops.lines()
        .any(|l| l.split_whitespace().nth(1) == Some(hop))
}

/// Fig. 3 / [0010], the background art through a tunnel: in the tunnel-mode network the
/// terminal gets a home address, named at home forward and reverse, and reachable by name;
/// but every packet to and from it goes through the home router, where the method's
/// terminal (in the other visited network) sends nothing through home.
#[test]
fn through_the_tunnel_lookups_work_and_every_packet_detours_through_home() {
    let Some((lab, up)) = common::up_lab("mdtun", "tests/labs/tunnel.yaml", &[]) else {
        return;
    };
    // Which tunnel this kernel could make is said, never assumed.
    let said = text(&up);
    assert!(
        said.contains("tnl-home (vxlan)") || said.contains("tnl-home (ipip)"),
        "{said}"
    );
    let out = roamlab(&["attach", "phone1", "--at", "tunnelled", "--lab", "mdtun"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let address = address_in(&said);
    assert!(
        address.starts_with("198.18.64."),
        "not a home address: {address}"
    );
    let name = "phone1.home.example";
    assert_eq!(
        dig(&lab, &["+norec", "@192.0.2.53", name, "A"]),
        ("NOERROR".into(), address.clone())
    );
    let ptr = || dig(&lab, &[&reverse(&address), "PTR"]);
    let named = common::within(Duration::from_secs(10), || {
        ptr() == ("NOERROR".into(), format!("{name}."))
    });
    assert!(named.is_some(), "no reverse record: {:?}", ptr());
    let by_name = lab.exec("fixed1", &["ping", "-c1", "-W2", name]);
    assert!(by_name.status.success(), "{}", text(&by_name));

    // Both ways through home: in through the home router, out through its tunnel end.
    let inbound = text(&lab.exec("fixed1", &["traceroute", "-n", "-q1", "-w1", &address]));
    assert!(crosses(&inbound, "198.18.0.2"), "{inbound}");
    let outbound = text(&lab.exec(
        "phone1",
        &["traceroute", "-n", "-q1", "-w1", "203.0.113.10"],
    ));
    assert!(crosses(&outbound, "198.19.255.253"), "{outbound}");

    // Bytes through home: 20 exchanges of 1,000-byte pings cross its link four times each
    // in the tunnel (request in, and out again encapsulated; the reply likewise).
    let ping = |to: &str| {
        let out = lab.exec(
            "fixed1",
            &["ping", "-q", "-c20", "-i0.01", "-s1000", "-W2", to],
        );
        assert!(out.status.success(), "{}", text(&out));
    };
    let before = home_rx_bytes(&lab);
    ping(&address);
    let tunnelled = home_rx_bytes(&lab) - before;
    assert!(
        tunnelled >= 2 * 20 * 1000,
        "only {tunnelled} bytes reached home"
    );

    let out = roamlab(&["attach", "server1", "--at", "visited", "--lab", "mdtun"]);
    assert!(out.status.success(), "{}", text(&out));
    let direct = address_in(&text(&out));
    let before = home_rx_bytes(&lab);
    ping(&direct);
    let method = home_rx_bytes(&lab) - before;
    assert!(
        method < 20 * 1000,
        "{method} bytes reached home for a terminal the method serves"
    );
    drop(lab);
}

/// The tunnel is a door into the home network: a VXLAN device takes frames from anyone who
/// sends to its port. Only the visited router's address may: frames a fixed host sends
/// there never reach the tunnel. And the key the tunnel-mode network names its terminals'
/// home addresses with opens its home's reverse zone only, never the home zone.
#[test]
fn only_the_tunnels_peer_gets_into_it_and_its_key_opens_the_reverse_zone_only() {
    let Some((lab, _)) = common::up_lab("mdtunx", "tests/labs/tunnel.yaml", &[]) else {
        return;
    };
    let tunnel_rx = || {
        let dev = text(&lab.exec("home", &["cat", "/proc/net/dev"]));
        dev.lines()
            .find_map(|l| {
                let (name, counters) = l.split_once(':')?;
                (name.trim() == "tnl-tunnelled")
                    .then(|| counters.split_whitespace().nth(1)?.parse::<u64>().ok())?
            })
            .unwrap_or_else(|| panic!("no tunnel in {dev}"))
    };
    // A VXLAN header (VNI 100, the lab's first tunnel) and an ARP request inside it.
    let frame = "\\x08\\x00\\x00\\x00\\x00\\x00\\x64\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\x02\\x00\\x00\\x00\\x00\\x01\\x08\\x06\\x00\\x01\\x08\\x00\\x06\\x04\\x00\\x01\\x02\\x00\\x00\\x00\\x00\\x01\\xc6\\x13\\xff\\xfe\\x00\\x00\\x00\\x00\\x00\\x00\\xc6\\x13\\xff\\xfd";
    let before = tunnel_rx();
    let sent = lab.exec(
        "fixed1",
        &[
            "bash",
            "-c",
            &format!("for i in $(seq 10); do printf '{frame}' > /dev/udp/198.18.0.2/4789; done"),
        ],
    );
    assert!(sent.status.success(), "{}", text(&sent));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        tunnel_rx(),
        before,
        "a fixed host's frames got into the tunnel"
    );

    // The tunnel still carries what its peer sends.
    let out = roamlab(&["attach", "phone1", "--at", "tunnelled", "--lab", "mdtunx"]);
    assert!(out.status.success(), "{}", text(&out));
    let ping = lab.exec("fixed1", &["ping", "-c1", "-W2", &address_in(&text(&out))]);
    assert!(ping.status.success(), "{}", text(&ping));
    assert!(tunnel_rx() > before, "the tunnel carried nothing");

    // With the tunnel-mode network's own key: the home zone refuses, the reverse zone takes it.
    let raw = std::fs::read(roamlab::contract::LabDir::of("mdtunx").key_file("tunnelled"))
        .expect("the tunnelled network's key");
    let key = format!(
        "hmac-sha256:roamlab-tunnelled:{}",
        data_encoding::BASE64.encode(&raw)
    );
    let nsupdate = |script: &str| {
        let path = format!("/tmp/roamlab-nsupdate-mdtunx-{}.txt", std::process::id());
        std::fs::write(&path, script).unwrap();
        let out = lab.exec("fixed1", &["nsupdate", "-t", "3", "-y", &key, &path]);
        let _ = std::fs::remove_file(&path);
        out
    };
    let home = nsupdate(
        "server 192.0.2.53\nzone home.example\nupdate add evil.home.example 5 A 198.18.64.150\nsend\n",
    );
    assert!(!home.status.success(), "the home zone took the update");
    assert_eq!(
        dig(&lab, &["+norec", "@192.0.2.53", "evil.home.example", "A"]).0,
        "NXDOMAIN"
    );
    let reverse_zone = nsupdate(
        "server 192.0.2.53\nzone 64.18.198.in-addr.arpa\nupdate add 150.64.18.198.in-addr.arpa 5 PTR evil.home.example.\nsend\n",
    );
    assert!(reverse_zone.status.success(), "{}", text(&reverse_zone));
    drop(lab);
}

/// A voice call by host name ([0030]) with baresip at both ends: in the method's network the
/// media goes straight to the terminal; in the tunnel's, through home.
#[test]
fn a_call_by_host_name_goes_direct_in_the_method_and_through_home_in_the_tunnel() {
    let Some((lab, _)) = common::up_lab("mdcall", "tests/labs/tunnel.yaml", &[]) else {
        return;
    };
    for (terminal, at) in [("phone1", "tunnelled"), ("server1", "visited")] {
        let out = roamlab(&["attach", terminal, "--at", at, "--lab", "mdcall"]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let call = |to: &str| {
        let out = roamlab(&["call", "fixed1", to, "--lab", "mdcall", "--json"]);
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
        (out.status.success(), report)
    };
    let (ok, direct) = call("server1");
    assert!(ok, "{direct}");
    assert_eq!(direct["uri"], "sip:server1@server1.home.example");
    assert_eq!(direct["established"], true, "{direct}");
    assert!(direct["setup_ms"].as_f64().is_some(), "{direct}");
    assert!(direct["rtp_sent"].as_u64() > Some(0), "{direct}");
    assert!(direct["rtp_received"].as_u64() > Some(0), "{direct}");
    assert_eq!(direct["media_path"], "direct", "{direct}");
    assert_eq!(direct["rtp_through_home"], 0, "{direct}");

    let (ok, tunnelled) = call("phone1");
    assert!(ok, "{tunnelled}");
    assert_eq!(tunnelled["media_path"], "through home", "{tunnelled}");
    assert!(
        tunnelled["rtp_through_home"].as_u64() > Some(0),
        "{tunnelled}"
    );

    // A terminal that has left is refused by name.
    let out = roamlab(&["detach", "server1", "--lab", "mdcall"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = roamlab(&["call", "fixed1", "server1", "--lab", "mdcall"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not an attached terminal"),
        "{}",
        text(&out)
    );
    drop(lab);
}

/// `roamlab compare` runs one scenario in every mode on its own lab and tears it down:
/// the method names and reaches the terminal without home; no-update fails forward and
/// by name; the tunnel and the home cell work by name but through home, which carries
/// every exchange. Behaviour only: the figures are the benchmark's.
#[test]
fn compare_shows_each_mode_working_or_failing_as_the_patent_says() {
    if !common::root_or_skip("mdcmp") {
        return;
    }
    let guard = LabGuard::new("mdcmp");
    let out = roamlab(&["compare", "--name", "mdcmp", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let row = |mode: &str| {
        c["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["mode"] == mode)
            .unwrap_or_else(|| panic!("no {mode} row in {c}"))
            .clone()
    };
    let pings_bytes = 1000;
    let method = row("method");
    assert_eq!(method["forward_ok"], true, "{method}");
    assert_eq!(method["reverse_ok"], true, "{method}");
    assert_eq!(method["ping_by_name"], true, "{method}");
    assert_eq!(method["via_home"], false, "{method}");
    assert!(
        method["home_bytes_per_exchange"].as_u64() < Some(100),
        "{method}"
    );
    assert_eq!(method["media_path"], "direct", "{method}");

    let no_update = row("no-update");
    assert_eq!(no_update["forward"], "NXDOMAIN", "{no_update}");
    assert_eq!(no_update["reverse_ok"], true, "{no_update}");
    assert_eq!(no_update["ping_by_name"], false, "{no_update}");
    assert!(no_update["call_setup_ms"].is_null(), "{no_update}");

    for mode in ["tunnel", "home"] {
        let r = row(mode);
        assert_eq!(r["forward_ok"], true, "{r}");
        assert_eq!(r["reverse_ok"], true, "{r}");
        assert_eq!(r["ping_by_name"], true, "{r}");
        assert_eq!(r["via_home"], true, "{r}");
        assert!(
            r["home_bytes_per_exchange"].as_u64() >= Some(2 * pings_bytes),
            "{r}"
        );
        assert_eq!(r["media_path"], "through home", "{r}");
    }
    // The tunnel crosses the home router's link four times an exchange, the home cell twice.
    assert!(
        row("tunnel")["home_bytes_per_exchange"].as_u64()
            > row("home")["home_bytes_per_exchange"].as_u64(),
        "{c}"
    );
    assert!(
        c["tunnel"].as_str().unwrap().starts_with("vxlan") || c["tunnel"] == "ipip",
        "{c}"
    );
    // Torn down: nothing of the lab is left.
    common::assert_nothing_left("mdcmp", &[]);
    drop(guard);
}
