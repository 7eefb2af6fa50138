//! The attacks of the issue "The private network is private and every identity is proven",
//! each performed for real from where an attacker would stand (a process in a node, an
//! unprivileged user of the machine, a namespace that only shares a lab's prefix), and each
//! asserting the refusal and that nothing of the lab changed.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use common::{root_or_skip, text, LabGuard};

/// The built-in lab under `name`, up with its agents.
fn default_lab(name: &str) -> LabGuard {
    let lab = LabGuard::new(name);
    let out = lab.up(None, &[]);
    assert!(out.status.success(), "up failed: {}", text(&out));
    lab
}

/// `roamlab attach TERMINAL`, which must succeed.
fn attach(lab: &LabGuard, terminal: &str) {
    let out = common::roamlab(&["attach", terminal, "--lab", &lab.name]);
    assert!(out.status.success(), "attach {terminal}: {}", text(&out));
}

/// Removes a namespace made by hand with `ip netns`, however the test ends.
struct ForeignNamespace {
    name: String,
    sleeper: std::process::Child,
}

impl ForeignNamespace {
    fn new(name: &str) -> Self {
        let _ = Command::new("ip").args(["netns", "del", name]).status();
        let added = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .expect("ip netns add");
        assert!(added.success(), "ip netns add {name}");
        std::fs::create_dir_all(format!("/etc/netns/{name}")).unwrap();
        std::fs::write(format!("/etc/netns/{name}/hosts"), "# not roamlab's\n").unwrap();
        let sleeper = Command::new("ip")
            .args(["netns", "exec", name, "sleep", "60"])
            .stdout(Stdio::null())
            .spawn()
            .expect("a process in the foreign namespace");
        ForeignNamespace {
            name: name.to_string(),
            sleeper,
        }
    }

    fn intact(&mut self) -> bool {
        std::path::Path::new(&format!("/run/netns/{}", self.name)).exists()
            && std::path::Path::new(&format!("/etc/netns/{}/hosts", self.name)).exists()
            && self.sleeper.try_wait().unwrap().is_none()
    }
}

impl Drop for ForeignNamespace {
    fn drop(&mut self) {
        let _ = self.sleeper.kill();
        let _ = self.sleeper.wait();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}

/// Finding 7: `down` and `cleanup --lab` removed a namespace that only shared the lab's
/// prefix, its /etc/netns files, and killed the process inside it.
#[test]
fn down_and_cleanup_leave_a_namespace_they_did_not_make() {
    if !root_or_skip("down_and_cleanup_leave_a_namespace_they_did_not_make") {
        return;
    }
    let lab = LabGuard::new("atkforeign");
    let mut foreign = ForeignNamespace::new("atkforeign-foreign");
    let out = lab.up(None, &["--no-agents"]);
    assert!(out.status.success(), "up failed: {}", text(&out));

    let down = common::roamlab(&["down", "atkforeign"]);
    assert!(down.status.success(), "down failed: {}", text(&down));
    assert!(
        text(&down).contains("left alone: namespace atkforeign-foreign"),
        "down does not say what it left alone: {}",
        text(&down)
    );
    assert!(foreign.intact(), "down touched a namespace it did not make");
    assert!(!std::path::Path::new("/run/netns/atkforeign-core").exists());

    // (Not `cleanup --all`: it would take down the labs of tests running alongside.)
    for args in [&["cleanup", "--lab", "atkforeign"][..], &["cleanup"][..]] {
        let cleanup = common::roamlab(args);
        assert!(cleanup.status.success(), "{args:?}: {}", text(&cleanup));
        assert!(
            foreign.intact(),
            "{args:?} touched a namespace it did not make"
        );
    }
}

/// Finding 8: the topology (every subscriber's K and OPc) and the event log (IMSIs,
/// MSISDNs) were readable by any user.
#[test]
fn lab_state_is_closed_to_other_users() {
    if !root_or_skip("lab_state_is_closed_to_other_users") {
        return;
    }
    let _lab = default_lab("atkmodes");
    let mode = |p: &str| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("/run/roamlab"), 0o700);
    assert_eq!(mode("/run/roamlab/atkmodes"), 0o700);
    for file in [
        "topology.yaml",
        "topology.json",
        "events.jsonl",
        "state.json",
        "namespaces.jsonl",
    ] {
        let path = format!("/run/roamlab/atkmodes/{file}");
        assert_eq!(mode(&path), 0o600, "{path}");
    }
    // An unprivileged user cannot read the subscribers' keys, in the YAML or the model.
    for file in ["topology.yaml", "topology.json"] {
        let nobody = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "cat",
                &format!("/run/roamlab/atkmodes/{file}"),
            ])
            .output()
            .expect("setpriv");
        assert!(
            !nobody.status.success(),
            "nobody read {file}: {}",
            text(&nobody)
        );
    }
}

/// Finding 3: a second connection naming itself `visited` took over the HLR's route to
/// the real VLR; once it closed, every attach failed with cause 17 until a VLR restart.
/// Now the HLR asks the kernel who a peer is before it asks the peer: anything but the
/// lab's own VLR agents is refused before the identity exchange, a VLR agent must claim
/// its own network, and a second link for a connected identity is refused (HlrCore's
/// unit tests cover the last). The real link carries attaches throughout.
#[test]
fn a_process_posing_as_a_vlr_is_refused_and_displaces_nothing() {
    use roamlab::protocols::ipa;
    if !root_or_skip("a_process_posing_as_a_vlr_is_refused_and_displaces_nothing") {
        return;
    }
    let lab = default_lab("atkimpost");
    attach(&lab, "phone1");

    let socket = "/run/roamlab/atkimpost/signaling/hlr-home/hlr.sock";
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for _ in 0..20 {
            let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
            let (mut reader, _writer) = stream.into_split();
            assert!(
                ipa::read_frame(&mut reader).await.is_err(),
                "the HLR began an identity exchange with an impostor"
            );
        }
    });
    let log = std::fs::read_to_string(
        roamlab::contract::LabDir::of("atkimpost").agent_log("home", "hlr"),
    )
    .unwrap();
    assert!(
        log.contains("refused a peer that is not a VLR agent"),
        "{log}"
    );
    let lines = log
        .lines()
        .filter(|l| l.contains("not a VLR agent"))
        .count();
    assert!(lines <= 2, "{lines} lines for 20 refusals");
    // The real VLR's link still carries attaches.
    attach(&lab, "server1");
}

mod dns_wire {
    //! Signed updates built and sent by hand, as an attacker who captured one would.
    use hickory_proto::op::Message;
    use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
    use hickory_proto::rr::{Name, TSigner};
    use roamlab::dns::update::{self, Change, RecordData};

    pub fn signed_add(key: &[u8], algorithm: TsigAlgorithm, name: &str, address: &str) -> Vec<u8> {
        let change = Change::Add {
            name: name.to_string(),
            data: RecordData::Address(address.parse().unwrap()),
        };
        let mut message = update::message("home.example.", 10, &change).unwrap();
        let signer = TSigner::new(
            key.to_vec(),
            algorithm,
            Name::from_ascii("roamlab-home.").unwrap(),
            300,
        )
        .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        message.finalize(&signer, now).unwrap();
        message.to_vec().unwrap()
    }

    /// A zone transfer query for home.example.
    pub fn transfer_query(rtype: hickory_proto::rr::RecordType) -> Vec<u8> {
        use hickory_proto::op::{MessageType, OpCode, Query};
        let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(
            Name::from_ascii("home.example.").unwrap(),
            rtype,
        ));
        m.to_vec().unwrap()
    }

    /// One query over TCP (two-byte length framing) from inside `namespace`; the answer.
    pub fn exchange_tcp(namespace: &str, server: &str, query: Vec<u8>) -> Message {
        use std::io::{Read, Write};
        let server: std::net::SocketAddr = server.parse().unwrap();
        roamlab::kernel::netns::run_in(namespace, move || {
            let mut stream = std::net::TcpStream::connect(server)?;
            stream.set_read_timeout(Some(std::time::Duration::from_secs(3)))?;
            let mut framed = (query.len() as u16).to_be_bytes().to_vec();
            framed.extend(&query);
            stream.write_all(&framed)?;
            let mut len = [0u8; 2];
            stream.read_exact(&mut len)?;
            let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
            stream.read_exact(&mut buf)?;
            Message::from_vec(&buf).map_err(std::io::Error::other)
        })
        .unwrap()
    }

    /// Sends `datagrams` one after another from inside `namespace`; the answers.
    pub fn exchange(namespace: &str, server: &str, datagrams: Vec<Vec<u8>>) -> Vec<Message> {
        let server: std::net::SocketAddr = server.parse().unwrap();
        roamlab::kernel::netns::run_in(namespace, move || {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
            socket.set_read_timeout(Some(std::time::Duration::from_secs(3)))?;
            let mut answers = Vec::new();
            for d in datagrams {
                socket.send_to(&d, server)?;
                let mut buf = [0u8; 4096];
                let n = socket.recv(&mut buf)?;
                answers.push(Message::from_vec(&buf[..n]).map_err(std::io::Error::other)?);
            }
            Ok(answers)
        })
        .unwrap()
    }
}

/// Finding 9: a captured signed update, replayed after the record was removed, was taken
/// again (hickory's 300 s fudge window); the right key name with another algorithm got
/// BADSIG instead of BADKEY; IXFR got an empty NOERROR instead of a refusal.
#[test]
fn replayed_updates_wrong_algorithms_and_ixfr_are_refused() {
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
    if !root_or_skip("replayed_updates_wrong_algorithms_and_ixfr_are_refused") {
        return;
    }
    let lab = default_lab("atkreplay");
    let key = std::fs::read("/run/roamlab/atkreplay/keys/home.key").unwrap();
    let lookup = || {
        let out = lab.exec(
            "fixed1",
            &["dig", "+short", "@192.0.2.53", "replayed.home.example", "A"],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };

    let captured = dns_wire::signed_add(
        &key,
        TsigAlgorithm::HmacSha256,
        "replayed.home.example.",
        "192.0.2.77",
    );
    let answers = dns_wire::exchange("atkreplay-fixed1", "192.0.2.53:53", vec![captured.clone()]);
    assert_eq!(answers[0].metadata.response_code, ResponseCode::NoError);
    assert_eq!(lookup(), "192.0.2.77");
    let deleted = common::roamlab(&[
        "dns",
        "update",
        "atkreplay",
        "home.example",
        "delete",
        "replayed.home.example",
        "A",
    ]);
    assert!(deleted.status.success(), "{}", text(&deleted));
    assert_eq!(lookup(), "");

    // The replay gets the first answer again (as a retransmitting client would), and
    // nothing is applied.
    let replayed = dns_wire::exchange("atkreplay-fixed1", "192.0.2.53:53", vec![captured]);
    assert_eq!(replayed[0].metadata.response_code, ResponseCode::NoError);
    assert!(
        replayed[0].signature.is_some(),
        "the answer again is signed"
    );
    assert_eq!(lookup(), "", "the replay brought the record back");

    let wrong = dns_wire::signed_add(
        &key,
        TsigAlgorithm::HmacSha512,
        "wrongalg.home.example.",
        "192.0.2.78",
    );
    let answer = &dns_wire::exchange("atkreplay-fixed1", "192.0.2.53:53", vec![wrong])[0];
    assert_eq!(answer.metadata.response_code, ResponseCode::NotAuth);
    let tsig = answer
        .signature
        .as_ref()
        .expect("a TSIG record in the answer");
    assert_eq!(tsig.data.error, Some(TsigError::BadKey));

    let log = std::fs::read_to_string(
        roamlab::contract::LabDir::of("atkreplay").agent_log("home", "dns"),
    )
    .unwrap();
    assert!(
        log.contains("an update seen before (a retransmission or a replay)"),
        "{log}"
    );
    assert!(log.contains("(BADKEY)"), "{log}");

    // IXFR is refused like AXFR, over both transports.
    use hickory_proto::rr::RecordType;
    for rtype in [RecordType::IXFR, RecordType::AXFR] {
        let tcp = dns_wire::exchange_tcp(
            "atkreplay-fixed1",
            "192.0.2.53:53",
            dns_wire::transfer_query(rtype),
        );
        assert_eq!(
            tcp.metadata.response_code,
            ResponseCode::Refused,
            "{rtype} over TCP"
        );
    }
    let udp = dns_wire::exchange(
        "atkreplay-fixed1",
        "192.0.2.53:53",
        vec![dns_wire::transfer_query(RecordType::IXFR)],
    );
    assert_eq!(
        udp[0].metadata.response_code,
        ResponseCode::Refused,
        "IXFR over UDP"
    );
}

/// Findings 1 and 2: every process in every node ran as full root with the whole of
/// /run/roamlab in view: every lab's TSIG keys and signaling sockets (a forged
/// SessionAddress on the VLR's local socket rewrote a home record). A process in a
/// fixed-host node, in a terminal's node, and the terminal's own agent now see none of
/// it, cannot undo that, and cannot see or signal the lab's agents.
#[test]
fn processes_in_nodes_see_no_lab_state_and_reach_no_agent() {
    if !root_or_skip("processes_in_nodes_see_no_lab_state_and_reach_no_agent") {
        return;
    }
    let lab = default_lab("atkview");
    attach(&lab, "phone1");
    let status = lab.status_json();
    let hlr_pid = status["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "hlr")
        .unwrap()["pid"]
        .to_string();

    for node in ["fixed1", "phone1"] {
        let sh = |script: &str| lab.exec(node, &["sh", "-c", script]);
        let listing = sh("ls -A /run/roamlab");
        assert!(listing.status.success(), "{node}: {}", text(&listing));
        assert_eq!(
            String::from_utf8_lossy(&listing.stdout).trim(),
            "",
            "{node} sees lab state"
        );
        for attempt in [
            "cat /run/roamlab/atkview/keys/home.key",
            "cat /run/roamlab/atkview/topology.yaml",
            "cat /run/roamlab/atkview/topology.json",
            "umount /run/roamlab",
            // The node's sysfs lies over the host's: lifting it would show the host's.
            "umount /sys",
            "umount -l /sys",
            "mount -t tmpfs none /mnt",
            "nsenter --mount=/proc/1/ns/mnt ls /run/roamlab/atkview",
            "test -S /run/roamlab/atkview/signaling/local-visited/local.sock",
            // Another node's /etc files, through its link or where the link points.
            "cat /etc/netns/atkview-fixed2/resolv.conf",
            "echo nameserver 192.0.2.99 > /etc/netns/atkview-fixed2/resolv.conf",
            "echo nameserver 192.0.2.99 > /run/roamlab/atkview/etc/atkview-fixed2/resolv.conf",
        ] {
            let out = sh(attempt);
            assert!(
                !out.status.success(),
                "{node}: `{attempt}` worked: {}",
                text(&out)
            );
        }
        // The HLR's pid means nothing in the node's own PID namespace.
        let kill = sh(&format!("kill -9 {hlr_pid}"));
        assert!(!kill.status.success(), "{node}: kill reached pid {hlr_pid}");
        let ps = sh("ls /proc | grep -c '^[0-9]'");
        let count: u32 = String::from_utf8_lossy(&ps.stdout).trim().parse().unwrap();
        assert!(count <= 3, "{node} sees {count} processes");
        let caps = sh("grep CapBnd /proc/self/status");
        let bound = u64::from_str_radix(
            String::from_utf8_lossy(&caps.stdout)
                .split_whitespace()
                .nth(1)
                .unwrap(),
            16,
        )
        .unwrap();
        const SYS_ADMIN: u64 = 1 << 21;
        const SYS_PTRACE: u64 = 1 << 19;
        const DAC_READ_SEARCH: u64 = 1 << 2;
        const MKNOD: u64 = 1 << 27;
        assert_eq!(
            bound & (SYS_ADMIN | SYS_PTRACE | DAC_READ_SEARCH | MKNOD),
            0,
            "{node}: {bound:x}"
        );
    }
    // The HLR is unharmed.
    assert!(common::agent_pids(&lab.status_json())
        .iter()
        .all(|p| std::path::Path::new(&format!("/proc/{p}")).exists()));

    // The terminal's agent (the subscriber's device) sees its own files and its cell only.
    let terminal = lab.status_json()["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "terminal")
        .unwrap()["pid"]
        .to_string();
    let seen = Command::new("nsenter")
        .args(["-t", &terminal, "-m", "--", "find", "/run/roamlab"])
        .output()
        .unwrap();
    let seen = String::from_utf8_lossy(&seen.stdout);
    let mut paths: Vec<&str> = seen.lines().collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/run/roamlab",
            "/run/roamlab/atkview",
            "/run/roamlab/atkview/signaling",
            "/run/roamlab/atkview/signaling/cell-visited",
            "/run/roamlab/atkview/signaling/cell-visited/cell.sock",
            "/run/roamlab/atkview/terminals",
            "/run/roamlab/atkview/terminals/phone1",
            "/run/roamlab/atkview/terminals/phone1/config.json",
            "/run/roamlab/atkview/terminals/phone1/events.jsonl",
            "/run/roamlab/atkview/terminals/phone1/state.json",
        ]
    );
    // It is what an exec'd agent would be, though one attach runs it without `exec`
    // (supervisor::zygote): the capabilities it holds are no more than its bounding set's,
    // none ambient, in a PID namespace of its own, and holding nothing of the CLI that
    // started it (this test's pipes among them): /dev/null in, its log out.
    let status = std::fs::read_to_string(format!("/proc/{terminal}/status")).unwrap();
    let field = |name: &str| {
        let value = status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {status}"));
        u64::from_str_radix(value.trim(), 16).unwrap()
    };
    let bound = field("CapBnd");
    assert_eq!(
        bound & (1 << 21 | 1 << 19 | 1 << 2 | 1 << 27),
        0,
        "{status}"
    );
    for set in ["CapEff", "CapPrm", "CapInh"] {
        assert_eq!(
            field(set) & !bound,
            0,
            "{set} beyond the bounding set:\n{status}"
        );
    }
    assert_eq!(field("CapAmb"), 0, "{status}");
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert_eq!(nspid.split_whitespace().count(), 3, "{nspid}");
    let log = "/run/roamlab/atkview/agents/phone1.terminal.log";
    for entry in std::fs::read_dir(format!("/proc/{terminal}/fd")).unwrap() {
        let entry = entry.unwrap();
        let fd: u32 = entry.file_name().to_str().unwrap().parse().unwrap();
        let to = std::fs::read_link(entry.path())
            .unwrap()
            .display()
            .to_string();
        match fd {
            0 => assert_eq!(to, "/dev/null"),
            1 | 2 => assert_eq!(to, log),
            _ => assert!(!to.starts_with("pipe:"), "fd {fd} is a pipe: {to}"),
        }
    }

    // The operator can still look at everything.
    let privileged = common::roamlab(&[
        "exec",
        "--privileged",
        "--lab",
        "atkview",
        "fixed1",
        "--",
        "ls",
        "/run/roamlab/atkview/keys",
    ]);
    assert!(privileged.status.success(), "{}", text(&privileged));
}

/// Finding 6: about 20,000 idle connections to the VLR's local socket reached the
/// file-descriptor limit and its listener stopped for good, silently; new leases never
/// reached DNS again. Now connections per peer are capped and running out of
/// descriptors is waited out: once the flood ends, attaches reach DNS as before.
#[test]
fn a_flood_of_connections_never_stops_a_listener() {
    if !root_or_skip("a_flood_of_connections_never_stops_a_listener") {
        return;
    }
    let lab = default_lab("atkflood");
    let status = lab.status_json();
    let vlr = status["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "vlr")
        .unwrap()["pid"]
        .to_string();
    // Few descriptors, so that the flood reaches the limit before the per-peer cap (only
    // the soft limit: raising a hard one back needs CAP_SYS_RESOURCE).
    let before = Command::new("prlimit")
        .args([
            "--pid",
            &vlr,
            "--nofile",
            "--raw",
            "--noheadings",
            "--output",
            "SOFT,HARD",
        ])
        .output()
        .unwrap();
    let before = String::from_utf8_lossy(&before.stdout).to_string();
    let (soft, hard) = before
        .trim()
        .split_once(' ')
        .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
        .unwrap();
    let limited = Command::new("prlimit")
        .args(["--pid", &vlr, &format!("--nofile=48:{hard}")])
        .status()
        .unwrap();
    assert!(limited.success());
    let socket = "/run/roamlab/atkflood/signaling/local-visited/local.sock";
    let mut flood = Vec::new();
    for _ in 0..200 {
        if let Ok(s) = std::os::unix::net::UnixStream::connect(socket) {
            flood.push(s);
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let log = || {
        std::fs::read_to_string(
            roamlab::contract::LabDir::of("atkflood").agent_log("visited", "vlr"),
        )
        .unwrap()
    };
    assert!(
        log().contains("local socket: accept failed")
            || log().contains("local socket: connection refused: over the limit")
            || log().contains("local socket: refused: process"),
        "{}",
        log()
    );
    drop(flood);
    let limited = Command::new("prlimit")
        .args(["--pid", &vlr, &format!("--nofile={soft}:{hard}")])
        .status()
        .unwrap();
    assert!(limited.success());
    // The listener still serves: a new lease reaches the home DNS through it.
    attach(&lab, "phone1");
    let lines = log()
        .lines()
        .filter(|l| l.contains("local socket:"))
        .count();
    assert!(
        lines <= 4,
        "the flood was logged line by line ({lines} lines)"
    );
}

/// Finding 2: one forged SessionAddress frame on the VLR's local socket rewrote a home
/// record. The socket now serves only its own node's DHCP agent, by what the kernel says
/// of the peer (its namespace, executable, command and capabilities): a root process
/// elsewhere that reaches the socket is refused without an answer.
#[test]
fn the_vlr_local_socket_serves_only_its_own_dhcp_agent() {
    use roamlab::protocols::gsup::{msg, Message};
    use roamlab::protocols::ipa::{self, Frame};
    if !root_or_skip("the_vlr_local_socket_serves_only_its_own_dhcp_agent") {
        return;
    }
    let lab = default_lab("atklocal");
    attach(&lab, "server1");
    let lookup = || {
        let out = lab.exec(
            "fixed1",
            &["dig", "+short", "@192.0.2.53", "server1.home.example"],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let before = lookup();
    assert!(!before.is_empty());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answered = rt.block_on(async {
        let stream = tokio::net::UnixStream::connect(
            "/run/roamlab/atklocal/signaling/local-visited/local.sock",
        )
        .await
        .unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let mut forged = Message::new(msg::SESSION_ADDRESS_REQUEST, "001010000000002");
        forged.session_address = Some("198.51.100.150".parse().unwrap());
        let _ = ipa::write_frame(&mut writer, &Frame::Gsup(forged.encode())).await;
        tokio::time::timeout(
            std::time::Duration::from_secs(2),
            ipa::read_frame(&mut reader),
        )
        .await
        .ok()
        .and_then(|r| r.ok())
    });
    assert!(
        answered.is_none(),
        "the forged report was answered: {answered:?}"
    );
    assert_eq!(
        lookup(),
        before,
        "the forged report changed the home record"
    );
    let log = std::fs::read_to_string(
        roamlab::contract::LabDir::of("atklocal").agent_log("visited", "vlr"),
    )
    .unwrap();
    assert!(log.contains("local socket: refused: process"), "{log}");
}

/// Finding 1, the agents' half: each of the lab's own agents sees its own directory, the
/// sockets it serves and reaches, the key it signs with and the event log — nothing of
/// another agent's files (the HLR's subscriber keys stay the HLR's), nor the topology.
#[test]
fn each_agent_sees_only_what_it_needs() {
    if !root_or_skip("each_agent_sees_only_what_it_needs") {
        return;
    }
    let lab = default_lab("atkagents");
    let status = lab.status_json();
    let view = |agent: &str| -> Vec<String> {
        let pid = common::agent_pid(&status, agent).to_string();
        let found = Command::new("nsenter")
            .args(["-t", &pid, "-m", "--", "find", "/run/roamlab/atkagents"])
            .output()
            .unwrap();
        let mut seen: Vec<String> = String::from_utf8_lossy(&found.stdout)
            .lines()
            .map(|l| l.trim_start_matches("/run/roamlab/atkagents").to_string())
            .collect();
        seen.sort();
        seen
    };
    let hlr = view("home/hlr");
    let vlr = view("visited/vlr");
    let dhcp = view("visited/dhcp");
    let dns = view("home/dns");
    for (agent, seen) in [("hlr", &hlr), ("vlr", &vlr), ("dhcp", &dhcp), ("dns", &dns)] {
        assert!(
            !seen
                .iter()
                .any(|p| p == "/topology.yaml" || p == "/topology.json" || p == "/state.json"),
            "{agent}: {seen:?}"
        );
        if agent != "hlr" {
            assert!(
                !seen.iter().any(|p| p.starts_with("/hlr-home")),
                "{agent} sees the HLR's files: {seen:?}"
            );
        }
        if agent != "dhcp" {
            assert!(
                !seen.iter().any(|p| p.starts_with("/dhcp-")),
                "{agent} sees the DHCP server's files: {seen:?}"
            );
        }
    }
    assert!(
        hlr.contains(&"/hlr-home/config.json".to_string()),
        "{hlr:?}"
    );
    assert!(hlr.contains(&"/keys/home.key".to_string()), "{hlr:?}");
    assert!(
        !hlr.iter().any(|p| p.starts_with("/keys/visited")),
        "{hlr:?}"
    );
    assert!(
        vlr.contains(&"/signaling/hlr-home/hlr.sock".to_string()),
        "{vlr:?}"
    );
    assert!(
        !vlr.iter().any(|p| p.starts_with("/keys")),
        "the VLR signs nothing: {vlr:?}"
    );
    assert!(
        dhcp.contains(&"/vlr-visited/published/attached.jsonl".to_string()),
        "{dhcp:?}"
    );
    assert!(
        !dhcp.contains(&"/vlr-visited/config.json".to_string()),
        "the DHCP server sees the VLR's list, not the VLR's files: {dhcp:?}"
    );
    assert!(
        !dns.iter().any(|p| p.starts_with("/dns-visited")),
        "one DNS server sees another's zones: {dns:?}"
    );
    assert!(
        !dhcp.iter().any(|p| p.starts_with("/signaling/hlr-")),
        "{dhcp:?}"
    );
    assert!(!dns.iter().any(|p| p.starts_with("/signaling")), "{dns:?}");
    // And the lab still works end to end.
    attach(&lab, "phone1");
}

/// The lab's own agents run as root only in name: once bound, each holds no capability
/// (none permitted, effective, inheritable, ambient or in its bounding set, in any of its
/// threads), may gain none, and is not dumpable. Code running as one of them — here a
/// shell in the HLR's node and view with the same privileges, as a compromise of the HLR
/// would have — reads its own files and nothing else: not the VLR's through
/// /proc/<pid>/root or its descriptors, not a key it was not granted, and it cannot undo
/// its view.
#[test]
fn agents_give_up_their_privileges_once_bound() {
    if !root_or_skip("agents_give_up_their_privileges_once_bound") {
        return;
    }
    let lab = default_lab("atkprivs");
    attach(&lab, "phone1");
    let status = lab.status_json();
    for agent in status["agents"].as_array().unwrap() {
        let (node, name) = (
            agent["node"].as_str().unwrap(),
            agent["name"].as_str().unwrap(),
        );
        if agent["kind"] == "terminal" {
            continue;
        }
        let pid = agent["pid"].as_i64().unwrap();
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
        for task in tasks.flatten() {
            let s = std::fs::read_to_string(task.path().join("status")).unwrap();
            assert!(
                !roamlab::kernel::privileges::capabilities_held(&s),
                "{node}/{name} thread {:?} holds capabilities:\n{s}",
                task.file_name()
            );
            assert!(s.contains("NoNewPrivs:\t1"), "{node}/{name}:\n{s}");
        }
    }
    let hlr = common::agent_pid(&status, "home/hlr").to_string();
    let vlr = common::agent_pid(&status, "visited/vlr");
    let as_the_hlr = |script: &str| {
        Command::new("nsenter")
            .args(["-t", &hlr, "-m", "-n", "--", "setpriv"])
            .args([
                "--securebits=+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked",
                "--bounding-set=-all",
                "--inh-caps=-all",
                "--ambient-caps=-all",
                "--no-new-privs",
                "--",
                "sh",
                "-c",
                script,
            ])
            .output()
            .unwrap()
    };
    let own = as_the_hlr("cat /run/roamlab/atkprivs/hlr-home/config.json >/dev/null");
    assert!(
        own.status.success(),
        "the HLR's own files are its own: {}",
        text(&own)
    );
    let caps = as_the_hlr("grep CapEff /proc/self/status");
    assert!(
        text(&caps).contains("0000000000000000"),
        "the shell is as unprivileged as the HLR: {}",
        text(&caps)
    );
    for attempt in [
        format!("cat /proc/{vlr}/root/run/roamlab/atkprivs/vlr-visited/config.json"),
        format!("readlink /proc/{vlr}/fd/0"),
        format!("cat /proc/{vlr}/environ"),
        "cat /run/roamlab/atkprivs/keys/visited.key".to_string(),
        "cat /run/roamlab/atkprivs/dhcp-visited/leases.jsonl".to_string(),
        "umount /run/roamlab".to_string(),
        "mount -t tmpfs none /mnt".to_string(),
        "nsenter --mount=/proc/1/ns/mnt true".to_string(),
    ] {
        let out = as_the_hlr(&attempt);
        assert!(
            !out.status.success(),
            "as the HLR, `{attempt}` worked: {}",
            text(&out)
        );
    }
    // And the lab still works end to end.
    attach(&lab, "server1");
}

/// Found while fuzzing the lease book (a link the VLR lists for another subscriber): the
/// VLR registered whatever link-layer address a terminal reported, so a terminal could
/// register another terminal's link as its own, and the DHCP server would then lease on
/// that link in its name. Now the VLR takes the address of the link the lab made for the
/// IMSI (the one its port is locked to): another terminal's address, or any address from
/// a terminal the lab made no link for, ends the attach before its home is asked.
#[test]
fn a_terminal_cannot_register_another_terminals_link() {
    use roamlab::agents::terminal::{AttachError, Terminal};
    use roamlab::contract::published::read_attached;
    use roamlab::protocols::milenage::Milenage;
    if !root_or_skip("a_terminal_cannot_register_another_terminals_link") {
        return;
    }
    let lab = default_lab("atklink");
    attach(&lab, "phone1");
    attach(&lab, "server1");
    let dir = roamlab::contract::LabDir::of("atklink");
    let before = read_attached(&dir.vlr_attached("visited"));
    assert_eq!(before.len(), 2);
    let phone1 = before.iter().find(|t| t.imsi == "001010000000001").unwrap();
    let phone1_mac: Vec<u8> = phone1
        .mac
        .as_deref()
        .unwrap()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    let topology = roamlab::topology::Topology::builtin();
    let subscriber = |name: &str| {
        topology
            .subscribers
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .clone()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // server1, with its own keys, reporting phone1's link; then homebound1, for which
        // the lab made no link on the cell, reporting an address of its own.
        for (name, mac) in [
            ("server1", phone1_mac.clone()),
            ("homebound1", vec![2, 0x5e, 0, 0, 0, 9]),
        ] {
            let who = subscriber(name);
            let keys = Milenage::new(&who.k, &who.opc);
            let mut t = Terminal::connect(&dir.cell_socket("visited"), &who.imsi)
                .await
                .unwrap();
            let mut sqn_ms = 0;
            let refused = t
                .attach_with_mac(&keys, &mut sqn_ms, None, Some(mac.try_into().unwrap()))
                .await;
            assert!(
                matches!(refused, Err(AttachError::Rejected(3))),
                "{:?}",
                refused.map(|_| ())
            );
        }
    });
    // Nothing changed: both terminals are registered with their own links.
    let after = read_attached(&dir.vlr_attached("visited"));
    assert_eq!(after, before);
    // The record is the VLR's alone: neither the DHCP server nor a terminal sees it.
    let status = lab.status_json();
    let sees_links = |agent: &str| {
        let pid = common::agent_pid(&status, agent).to_string();
        let found = Command::new("nsenter")
            .args(["-t", &pid, "-m", "--", "find", "/run/roamlab/atklink"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&found.stdout).contains("/vlr-visited/links")
    };
    assert!(sees_links("visited/vlr"));
    assert!(
        !sees_links("visited/dhcp"),
        "the DHCP server sees the cell's links"
    );
    assert!(
        !sees_links("phone1/terminal"),
        "a terminal sees the cell's links"
    );
    let log = std::fs::read_to_string(dir.agent_log("visited", "vlr")).unwrap();
    assert!(
        log.contains("but its link on this cell is")
            && log.contains("but has no link on this cell"),
        "{log}"
    );
}
