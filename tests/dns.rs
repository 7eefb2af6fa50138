//! DNS end to end: real hickory servers in namespaces, real `dig` and `nsupdate`.
//! The test lab (tests/labs/dns.yaml) gives dynamic records and negative answers a 2 s TTL.

mod common;

use std::time::Duration;

use common::{normalise_dig as normalise, roamlab, root_or_skip, text, within, LabGuard, XorShift};

/// Seconds a removed record may still be answered by the resolver: the zone's TTL.
const TTL_BOUND: Duration = Duration::from_secs(2);

fn up(name: &str) -> Option<LabGuard> {
    common::up_lab(name, "tests/labs/dns.yaml", &[]).map(|(lab, _)| lab)
}

fn dig(lab: &LabGuard, node: &str, args: &[&str]) -> String {
    dig_waiting(lab, node, "+time=2", args)
}

/// For lookups the resolver answers only after giving up on a stopped server (~5 s).
fn dig_patiently(lab: &LabGuard, node: &str, args: &[&str]) -> String {
    dig_waiting(lab, node, "+time=10", args)
}

fn dig_waiting(lab: &LabGuard, node: &str, time: &str, args: &[&str]) -> String {
    let mut cmd = vec!["dig", time, "+tries=1"];
    cmd.extend(args);
    let out = lab.exec(node, &cmd);
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn short(lab: &LabGuard, node: &str, args: &[&str]) -> String {
    let mut all = vec!["+short"];
    all.extend(args);
    dig(lab, node, &all).trim().to_string()
}

/// `roamlab dns update LAB ZONE OP NAME TYPE DATA`.
fn dns_update(args: &[&str]) -> std::process::Output {
    let mut all = vec!["dns", "update"];
    all.extend(args);
    roamlab(&all)
}

fn secret(lab: &str, node: &str) -> String {
    let raw = std::fs::read(roamlab::contract::LabDir::of(lab).key_file(node)).expect("key file");
    data_encoding::BASE64.encode(&raw)
}

fn nsupdate(lab: &LabGuard, key: Option<&str>, script: &str) -> std::process::Output {
    // Under /tmp: a process in a node sees no lab state, so not the script there either.
    let path = format!(
        "/tmp/roamlab-nsupdate-{}-{}.txt",
        lab.name,
        std::process::id()
    );
    std::fs::write(&path, script).unwrap();
    let mut cmd = vec!["nsupdate", "-t", "3"];
    if let Some(k) = key {
        cmd.extend(["-y", k]);
    }
    cmd.push(&path);
    let out = lab.exec("fixed1", &cmd);
    let _ = std::fs::remove_file(&path);
    out
}

fn serial(lab: &LabGuard, server: &str, zone: &str) -> u64 {
    let soa = short(
        lab,
        "fixed1",
        &["+norec", &format!("@{server}"), zone, "SOA"],
    );
    soa.split_whitespace()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no serial in {soa:?}"))
}

#[test]
fn lookups_through_the_resolver_and_at_each_authority() {
    let Some(lab) = up("dnslookups") else { return };
    assert!(dns_update(&[
        "dnslookups",
        "100.51.198.in-addr.arpa",
        "add",
        "100.100.51.198.in-addr.arpa",
        "PTR",
        "phone1.home.example"
    ])
    .status
    .success());

    // Through the lab's resolver (every node's resolv.conf names it).
    let forward = dig(&lab, "fixed1", &["www.home.example"]);
    assert!(
        forward.contains("status: NOERROR") && forward.contains("192.0.2.80"),
        "{forward}"
    );
    assert!(forward.contains("SERVER: 203.0.113.53#53"), "{forward}");
    let reverse = dig(&lab, "fixed2", &["-x", "198.51.100.100"]);
    assert!(reverse.contains("phone1.home.example."), "{reverse}");
    let missing = dig(&lab, "fixed1", &["nope.home.example"]);
    assert!(missing.contains("status: NXDOMAIN"), "{missing}");
    let soa = dig(&lab, "fixed1", &["visited.example", "SOA"]);
    assert!(
        soa.contains("ns-visited.example. hostmaster.visited.example."),
        "{soa}"
    );
    // getent and ping resolve names too, with no @server.
    let getent = lab.exec("fixed1", &["getent", "hosts", "www.home.example"]);
    assert!(
        String::from_utf8_lossy(&getent.stdout).contains("192.0.2.80"),
        "{}",
        text(&getent)
    );

    // Directly at each authority: answers carry the aa flag.
    let home = dig(
        &lab,
        "fixed1",
        &["+norec", "@192.0.2.53", "www.home.example"],
    );
    assert!(home.contains("flags: qr aa;"), "{home}");
    let visited = dig(
        &lab,
        "fixed1",
        &["+norec", "@198.51.100.53", "-x", "198.51.100.100"],
    );
    assert!(
        visited.contains("flags: qr aa;") && visited.contains("phone1.home.example."),
        "{visited}"
    );
    let root = dig(
        &lab,
        "fixed1",
        &["+norec", "@203.0.113.54", "ns-home.example"],
    );
    assert!(
        root.contains("flags: qr aa;") && root.contains("192.0.2.53"),
        "{root}"
    );

    insta::assert_snapshot!("forward_via_resolver", normalise(&forward));
    insta::assert_snapshot!("reverse_via_resolver", normalise(&reverse));
    insta::assert_snapshot!("nxdomain_via_resolver", normalise(&missing));
    insta::assert_snapshot!("forward_at_home_authority", normalise(&home));
    insta::assert_snapshot!("reverse_at_visited_authority", normalise(&visited));
}

#[test]
fn the_soa_serial_increases_with_each_update() {
    let Some(lab) = up("dnsserial") else { return };
    let first = serial(&lab, "192.0.2.53", "home.example");
    for (i, ip) in ["192.0.2.81", "192.0.2.82"].iter().enumerate() {
        let out = roamlab(&[
            "dns",
            "update",
            "dnsserial",
            "home.example",
            "replace",
            "host.home.example",
            "A",
            ip,
        ]);
        assert!(out.status.success(), "{}", text(&out));
        let now = serial(&lab, "192.0.2.53", "home.example");
        assert!(
            now > first + i as u64,
            "serial {now} after update {} (was {first})",
            i + 1
        );
    }
    // A replace leaves exactly one record.
    assert_eq!(
        short(
            &lab,
            "fixed1",
            &["+norec", "@192.0.2.53", "host.home.example"]
        ),
        "192.0.2.82"
    );
}

#[test]
fn nsupdate_with_tsig_adds_and_the_resolver_forgets_a_deleted_record_within_its_ttl() {
    let Some(lab) = up("dnsnsupdate") else { return };
    let key = format!("hmac-sha256:roamlab-home:{}", secret("dnsnsupdate", "home"));
    let add = nsupdate(&lab, Some(&key), "server 192.0.2.53\nzone home.example\nupdate add phone7.home.example 2 A 198.51.100.107\nsend\n");
    assert!(add.status.success(), "{}", text(&add));
    let seen = within(TTL_BOUND * 2, || {
        short(&lab, "fixed2", &["phone7.home.example"]) == "198.51.100.107"
    });
    assert!(
        seen.is_some(),
        "the resolver never returned the added record"
    );

    let delete = nsupdate(
        &lab,
        Some(&key),
        "server 192.0.2.53\nzone home.example\nupdate delete phone7.home.example A\nsend\n",
    );
    assert!(delete.status.success(), "{}", text(&delete));
    // The resolver may answer from its cache for at most the record's TTL (plus polling).
    let gone = within(TTL_BOUND + Duration::from_millis(1500), || {
        short(&lab, "fixed2", &["phone7.home.example"]).is_empty()
    });
    assert!(
        gone.is_some(),
        "the resolver still returns a record deleted {TTL_BOUND:?} ago"
    );
    let nx = dig(&lab, "fixed2", &["phone7.home.example"]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
}

#[test]
fn unsigned_wrong_and_unknown_key_updates_are_refused_and_change_nothing() {
    let Some(lab) = up("dnsrefuse") else { return };
    let script = "server 192.0.2.53\nzone home.example\nupdate add evil.home.example 2 A 198.51.100.66\nsend\n";
    let serial_before = serial(&lab, "192.0.2.53", "home.example");

    let unsigned = nsupdate(&lab, None, script);
    assert!(
        !unsigned.status.success() && text(&unsigned).contains("REFUSED"),
        "{}",
        text(&unsigned)
    );
    let wrong = nsupdate(
        &lab,
        Some("hmac-sha256:roamlab-home:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        script,
    );
    assert!(
        !wrong.status.success() && text(&wrong).contains("NOTAUTH"),
        "{}",
        text(&wrong)
    );
    let unknown = format!("hmac-sha256:somebody-else:{}", secret("dnsrefuse", "home"));
    let unknown = nsupdate(&lab, Some(&unknown), script);
    assert!(
        !unknown.status.success() && text(&unknown).contains("NOTAUTH"),
        "{}",
        text(&unknown)
    );
    // The visited network's key cannot write the home zone.
    let foreign = format!(
        "hmac-sha256:roamlab-visited:{}",
        secret("dnsrefuse", "visited")
    );
    let foreign = nsupdate(&lab, Some(&foreign), script);
    assert!(!foreign.status.success(), "{}", text(&foreign));

    assert_eq!(
        short(
            &lab,
            "fixed1",
            &["+norec", "@192.0.2.53", "evil.home.example"]
        ),
        ""
    );
    assert_eq!(serial(&lab, "192.0.2.53", "home.example"), serial_before);
    let log = std::fs::read_to_string(
        roamlab::contract::LabDir::of("dnsrefuse").agent_log("home", "dns"),
    )
    .unwrap();
    assert!(
        log.contains("invalid TSIG signature") && log.contains("no TSIG key name matched"),
        "refusals are not logged"
    );
    assert!(
        !log.contains(&secret("dnsrefuse", "home")),
        "the secret is in the log"
    );
}

#[test]
fn forward_answers_come_from_home_and_reverse_answers_from_visited() {
    let Some(lab) = up("dnsowners") else { return };
    assert!(dns_update(&[
        "dnsowners",
        "home.example",
        "add",
        "phone1.home.example",
        "A",
        "198.51.100.100"
    ])
    .status
    .success());
    assert!(dns_update(&[
        "dnsowners",
        "100.51.198.in-addr.arpa",
        "add",
        "100.100.51.198.in-addr.arpa",
        "PTR",
        "phone1.home.example"
    ])
    .status
    .success());

    let pid_of = |agent: &str| common::agent_pid(&lab.status_json(), agent);
    let stop = |agent: &str| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid_of(agent)),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(300));
    };

    stop("visited/dns");
    assert_eq!(
        short(&lab, "fixed1", &["phone1.home.example"]),
        "198.51.100.100",
        "forward needs only the home DNS"
    );
    let reverse = dig_patiently(&lab, "fixed2", &["-x", "198.51.100.100"]);
    assert!(
        reverse.contains("status: SERVFAIL"),
        "reverse answered without the visited DNS: {reverse}"
    );
    assert!(roamlab(&["restart", "--lab", "dnsowners", "visited/dns"])
        .status
        .success());

    stop("home/dns");
    assert_eq!(
        short(&lab, "fixed2", &["-x", "198.51.100.100"]),
        "phone1.home.example.",
        "reverse needs only the visited DNS"
    );
    // Wait out the resolver's cache of the forward answer before asking again.
    std::thread::sleep(TTL_BOUND + Duration::from_millis(200));
    let forward = dig_patiently(&lab, "fixed1", &["phone1.home.example"]);
    assert!(
        forward.contains("status: SERVFAIL"),
        "forward answered without the home DNS: {forward}"
    );
}

#[test]
fn a_restarted_dns_agent_still_serves_its_updates() {
    let Some(lab) = up("dnsrestart") else { return };
    assert!(dns_update(&[
        "dnsrestart",
        "home.example",
        "add",
        "kept.home.example",
        "A",
        "192.0.2.90"
    ])
    .status
    .success());
    let before = serial(&lab, "192.0.2.53", "home.example");
    let out = roamlab(&["restart", "--lab", "dnsrestart", "home/dns"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        short(
            &lab,
            "fixed1",
            &["+norec", "@192.0.2.53", "kept.home.example"]
        ),
        "192.0.2.90"
    );
    assert_eq!(serial(&lab, "192.0.2.53", "home.example"), before);
    assert_eq!(
        short(
            &lab,
            "fixed1",
            &["+norec", "@192.0.2.53", "www.home.example"]
        ),
        "192.0.2.80"
    );
}

#[test]
fn garbage_and_truncated_messages_never_crash_a_dns_agent() {
    let Some(lab) = up("dnsgarbage") else { return };
    let pids_before = common::agent_pids(&lab.status_json());
    // A valid query to truncate: www.home.example A, id 0x1234, RD.
    let query: Vec<u8> = {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["www", "home", "example"] {
            q.push(label.len() as u8);
            q.extend(label.as_bytes());
        }
        q.extend([0, 0, 1, 0, 1]);
        q
    };
    roamlab::kernel::netns::run_in("dnsgarbage-fixed1", move || {
        use std::io::Write;
        let mut rng = XorShift(0x5eed_1234_abcd_ef01);
        let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
        for target in [
            "192.0.2.53:53",
            "203.0.113.53:53",
            "203.0.113.54:53",
            "198.51.100.53:53",
        ] {
            for round in 0..400 {
                let datagram: Vec<u8> = match round % 4 {
                    0 => query[..(rng.next() as usize % query.len())].to_vec(),
                    1 => (0..rng.next() % 600).map(|_| rng.next() as u8).collect(),
                    2 => {
                        let mut q = query.clone();
                        let at = rng.next() as usize % q.len();
                        q[at] = rng.next() as u8;
                        q
                    }
                    _ => {
                        // A header claiming thousands of records it does not carry.
                        let mut q = query.clone();
                        q[4..12].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
                        q
                    }
                };
                socket.send_to(&datagram, target)?;
            }
            // TCP: a length prefix promising more than is sent, then a hang-up.
            if let Ok(mut tcp) = std::net::TcpStream::connect(target) {
                let _ = tcp.write_all(&[0xff, 0xff, 1, 2, 3]);
            }
        }
        Ok(())
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        common::agent_pids(&lab.status_json()),
        pids_before,
        "an agent was replaced or died"
    );
    assert!(lab.status_json()["agents"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["alive"] == true));
    assert_eq!(short(&lab, "fixed2", &["www.home.example"]), "192.0.2.80");
}

#[test]
fn a_dns_agent_that_cannot_bind_port_53_fails_up_naming_the_address() {
    if !root_or_skip("a_dns_agent_that_cannot_bind_port_53_fails_up_naming_the_address") {
        return;
    }
    let lab = LabGuard::new("dnsclash");
    let out = lab.up(Some("tests/labs/dns-clash.yaml"), &[]);
    assert_eq!(out.status.code(), Some(1));
    let msg = text(&out);
    assert!(
        msg.contains("agent home/dns exited before it was ready"),
        "{msg}"
    );
    assert!(
        msg.contains("cannot bind udp 192.0.2.53:53") && msg.contains("Address already in use"),
        "{msg}"
    );
    common::assert_nothing_left("dnsclash", &[]);
}

#[test]
fn a_new_lab_of_the_same_name_starts_from_its_zone_files_not_an_old_journal() {
    let Some(lab) = up("dnsfresh") else { return };
    assert!(dns_update(&[
        "dnsfresh",
        "home.example",
        "add",
        "old.home.example",
        "A",
        "192.0.2.91"
    ])
    .status
    .success());
    assert_eq!(
        short(
            &lab,
            "fixed1",
            &["+norec", "@192.0.2.53", "old.home.example"]
        ),
        "192.0.2.91"
    );
    assert!(roamlab(&["down", "dnsfresh"]).status.success());
    let out = lab.up(Some("tests/labs/dns.yaml"), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        short(
            &lab,
            "fixed1",
            &["+norec", "@192.0.2.53", "old.home.example"]
        ),
        ""
    );
    assert_eq!(serial(&lab, "192.0.2.53", "home.example"), 1);
}

/// BIND 9 swapped in as the home and the visited DNS (`{ kind: dns, server: bind }`): the
/// HLR's and the visited DHCP server's signed updates reach it unchanged, both lookups work
/// through the lab's resolver and by name, and detach removes both records. BIND opens each
/// zone to its own key only: an unsigned update, and one signed with the visited network's
/// key, are refused at home.
#[test]
fn bind_as_home_and_visited_dns_takes_the_labs_updates_and_no_others() {
    let Some((lab, _)) = common::up_lab("dnsbind", "tests/labs/bind.yaml", &[]) else {
        return;
    };
    let named =
        std::fs::read_to_string(roamlab::contract::LabDir::of("dnsbind").agent_log("home", "dns"))
            .unwrap_or_default();
    assert!(
        named.contains("named ready"),
        "home/dns is not BIND: {named}"
    );
    let out = roamlab(&["attach", "phone1", "--lab", "dnsbind"]);
    assert!(out.status.success(), "{}", text(&out));
    let address = "198.51.100.100";
    assert!(text(&out).contains(address), "{}", text(&out));
    assert_eq!(short(&lab, "fixed1", &["phone1.home.example"]), address);
    let reverse = within(Duration::from_secs(5), || {
        short(&lab, "fixed2", &["-x", address]) == "phone1.home.example."
    });
    assert!(
        reverse.is_some(),
        "{}",
        dig(&lab, "fixed2", &["-x", address])
    );
    let ping = lab.exec("fixed1", &["ping", "-c1", "-W2", "phone1.home.example"]);
    assert!(ping.status.success(), "{}", text(&ping));

    let add = "server 192.0.2.53\nzone home.example\nupdate add evil.home.example 5 A 198.51.100.150\nsend\n";
    let unsigned = nsupdate(&lab, None, add);
    assert!(!unsigned.status.success(), "BIND took an unsigned update");
    let visited_key = format!(
        "hmac-sha256:roamlab-visited:{}",
        secret("dnsbind", "visited")
    );
    let wrong_key = nsupdate(&lab, Some(&visited_key), add);
    assert!(
        !wrong_key.status.success(),
        "BIND took the visited network's key at home"
    );
    assert!(short(
        &lab,
        "fixed1",
        &["+norec", "@192.0.2.53", "evil.home.example"]
    )
    .is_empty());

    let out = roamlab(&["detach", "phone1", "--lab", "dnsbind"]);
    assert!(out.status.success(), "{}", text(&out));
    for (server, query) in [
        ("@192.0.2.53", vec!["phone1.home.example"]),
        ("@198.51.100.53", vec!["-x", address]),
    ] {
        let gone = within(Duration::from_secs(5), || {
            let mut args = vec!["+norec", server];
            args.extend(&query);
            dig(&lab, "fixed1", &args).contains("status: NXDOMAIN")
        });
        assert!(gone.is_some(), "{server} still answers {query:?}");
    }
    drop(lab);
}
