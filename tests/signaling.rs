//! The control plane end to end: HLR and VLR agents over GSUP on the private network,
//! terminals attaching over the cell with Milenage. Real agents in a real lab; the
//! refusal cases use a terminal built from the library's client with a wrong key, a wrong
//! claim or a replayed answer.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{roamlab, text, LabGuard};
use roamlab::agents::terminal::{AttachError, Terminal};
use roamlab::contract::published::read_attached;
use roamlab::contract::LabDir;
use roamlab::protocols::gsup::{cause, msg, Message};
use roamlab::protocols::ipa::{self, Frame};
use roamlab::protocols::milenage::Milenage;

const PHONE1: (&str, &str, &str) = (
    "001010000000001",
    "465b5ce8b199b49faa5f0a2ee238a6bc",
    "cd63cb71954a9f4e48a5994e37a02baf",
);
const SERVER1_K: &str = "0396eb317b6d1c36f19c1c84cd6ffd16";

fn up(name: &str, topology: &str) -> Option<LabGuard> {
    common::up_lab(name, topology, &[]).map(|(lab, _)| lab)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn cell(lab: &str, visited: &str) -> PathBuf {
    LabDir::of(lab).cell_socket(visited)
}

fn keys(k: &str, opc: &str) -> Milenage {
    let key = |h: &str| -> [u8; 16] {
        data_encoding::HEXLOWER
            .decode(h.as_bytes())
            .unwrap()
            .try_into()
            .unwrap()
    };
    Milenage::new(&key(k), &key(opc))
}

/// The IMSIs a VLR lists as attached.
fn attached(lab: &str, visited: &str) -> Vec<String> {
    read_attached(&LabDir::of(lab).vlr_attached(visited))
        .into_iter()
        .map(|t| t.imsi)
        .collect()
}

/// Where the HLR believes a subscriber is registered.
fn registered_at(lab: &str, home: &str, imsi: &str) -> Option<String> {
    let state = hlr_state(lab, home);
    state.get(imsi)?["vlr"].as_str().map(String::from)
}

fn sqn(lab: &str, home: &str, imsi: &str) -> u64 {
    hlr_state(lab, home)[imsi]["sqn"].as_u64().unwrap()
}

/// The HLR's journal of its subscribers' state, as it stands.
fn hlr_state(lab: &str, home: &str) -> std::collections::BTreeMap<String, serde_json::Value> {
    roamlab::journal::read(&LabDir::of(lab).hlr_state(home)).unwrap_or_default()
}

fn events(lab: &str) -> Vec<(String, String)> {
    roamlab::events::read_all(&LabDir::of(lab))
        .unwrap()
        .into_iter()
        .map(|e| (e.agent, e.event))
        .collect()
}

/// Asserts that `wanted` (agent, event) pairs occur in this order among `all`.
fn in_order(all: &[(String, String)], wanted: &[(&str, &str)]) {
    let mut at = 0;
    for (agent, event) in wanted {
        match all[at..].iter().position(|(a, e)| a == agent && e == event) {
            Some(i) => at += i + 1,
            None => panic!("{agent}: {event} missing (or out of order) in {all:#?}"),
        }
    }
}

/// Attaches phone1, retrying for a while (a restarted HLR's VLR link takes a moment).
fn attach_eventually(lab: &str) -> bool {
    (0..25).any(|_| {
        roamlab(&["attach", "phone1", "--lab", lab])
            .status
            .success()
            || {
                std::thread::sleep(Duration::from_millis(100));
                false
            }
    })
}

async fn fake_attach(
    lab: &str,
    visited: &str,
    imsi: &str,
    k: &str,
    opc: &str,
    claim: Option<&str>,
) -> Result<(Terminal, Option<[u8; 8]>), AttachError> {
    let mut t = Terminal::connect(&cell(lab, visited), imsi).await?;
    let mut sqn_ms = 0;
    let (_, res) = t.attach(&keys(k, opc), &mut sqn_ms, claim).await?;
    Ok((t, res))
}

#[test]
fn attach_and_detach_follow_the_gsup_message_sequence() {
    let Some(_lab) = up("sigflow", "topologies/roaming.yaml") else {
        return;
    };
    let out = roamlab(&["attach", "phone1", "--lab", "sigflow"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("phone1 attached at visited as phone1.home.example (IMSI 001010000000001, MSISDN 15550000001)"), "{}", text(&out));
    assert_eq!(attached("sigflow", "visited"), ["001010000000001"]);
    assert_eq!(
        registered_at("sigflow", "home", "001010000000001").as_deref(),
        Some("visited")
    );
    let status = roamlab(&["status", "sigflow"]);
    assert!(
        text(&status).contains(
            "attached at visited (its VLR's list): phone1.home.example (001010000000001)"
        ),
        "{}",
        text(&status)
    );

    let out = roamlab(&["detach", "phone1", "--lab", "sigflow"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(attached("sigflow", "visited").is_empty());
    assert_eq!(registered_at("sigflow", "home", "001010000000001"), None);
    assert!(
        !std::path::Path::new("/run/netns/sigflow-phone1").exists(),
        "the terminal's namespace is left"
    );

    in_order(
        &events("sigflow"),
        &[
            ("visited/vlr", "Attach request"),
            ("visited/vlr", "SendAuthInfo request"),
            ("home/hlr", "SendAuthInfo request"),
            ("home/hlr", "SendAuthInfo result"),
            ("visited/vlr", "Authentication request"),
            ("visited/vlr", "Authentication response"),
            ("visited/vlr", "UpdateLocation request"),
            ("home/hlr", "InsertSubscriberData request"),
            ("visited/vlr", "InsertSubscriberData result"),
            ("home/hlr", "UpdateLocation result"),
            ("visited/vlr", "Attach accept"),
            ("phone1/terminal", "attached"),
            ("visited/vlr", "Detach request"),
            ("home/hlr", "PurgeMS request"),
            ("visited/vlr", "PurgeMS result"),
            ("visited/vlr", "Detach accept"),
        ],
    );
    let listed = roamlab(&["events", "sigflow"]);
    assert!(
        text(&listed).contains("InsertSubscriberData request"),
        "{}",
        text(&listed)
    );
}

#[test]
fn refusals_carry_causes_and_leave_nothing_authorised() {
    let Some(_lab) = up("sigrefuse", "topologies/roaming.yaml") else {
        return;
    };
    let (imsi, k, opc) = PHONE1;

    let out = roamlab(&["attach", "homebound1", "--lab", "sigrefuse"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .contains("homebound1: attach at visited refused: roaming not allowed (GMM cause 13)"),
        "{}",
        text(&out)
    );
    assert!(!std::path::Path::new("/run/netns/sigrefuse-homebound1").exists());

    rt().block_on(async {
        let unknown = fake_attach("sigrefuse", "visited", "001019999999999", k, opc, None).await;
        assert!(
            matches!(unknown, Err(AttachError::Rejected(cause::IMSI_UNKNOWN))),
            "{:?}",
            unknown.err()
        );

        let wrong_key = fake_attach("sigrefuse", "visited", imsi, SERVER1_K, opc, None).await;
        assert!(
            matches!(wrong_key, Err(AttachError::NetworkNotAuthentic)),
            "{:?}",
            wrong_key.err()
        );

        let not_own = fake_attach(
            "sigrefuse",
            "visited",
            imsi,
            k,
            opc,
            Some("server1.home.example"),
        )
        .await;
        assert!(
            matches!(not_own, Err(AttachError::Rejected(cause::ILLEGAL_MS))),
            "{:?}",
            not_own.err()
        );
        assert_eq!(
            registered_at("sigrefuse", "home", imsi),
            None,
            "a refused claim left a registration"
        );

        // A replayed RES: take one from a real attach, answer a fresh challenge with it.
        let (mut t, res) = fake_attach(
            "sigrefuse",
            "visited",
            imsi,
            k,
            opc,
            Some("phone1.home.example"),
        )
        .await
        .unwrap();
        t.detach().await.unwrap();
        let old_res = res.unwrap();
        let mut replay = Terminal::connect(&cell("sigrefuse", "visited"), imsi)
            .await
            .unwrap();
        replay
            .send(&Message::new(msg::ATTACH_REQUEST, imsi))
            .await
            .unwrap();
        let challenge = replay.receive().await.unwrap();
        assert_eq!(challenge.msg_type, msg::AUTH_REQUEST);
        let mut answer = Message::new(msg::AUTH_RESPONSE, imsi);
        answer.res = Some(old_res.to_vec());
        replay.send(&answer).await.unwrap();
        let verdict = replay.receive().await.unwrap();
        assert_eq!(
            (verdict.msg_type, verdict.cause),
            (msg::ATTACH_REJECT, Some(cause::ILLEGAL_MS))
        );
    });
    assert!(
        attached("sigrefuse", "visited").is_empty(),
        "a refused terminal is listed"
    );
    assert_eq!(registered_at("sigrefuse", "home", imsi), None);
    let log = std::fs::read_to_string(LabDir::of("sigrefuse").agent_log("visited", "vlr")).unwrap();
    for why in [
        "IMSI unknown in HLR",
        "the terminal could not authenticate the network",
        "claims a host name that is not its own",
        "RES does not match",
    ] {
        assert!(log.contains(why), "the VLR log does not say {why:?}");
    }
}

#[test]
fn no_roaming_agreement_is_refused_by_the_vlr_and_by_the_hlr() {
    let Some(_lab) = up("sigpartner", "topologies/two-visited.yaml") else {
        return;
    };
    let out = roamlab(&["attach", "alien1", "--at", "visited", "--lab", "sigpartner"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("PLMN not allowed (no roaming agreement) (GMM cause 11)"),
        "{}",
        text(&out)
    );
    assert!(
        !events("sigpartner").iter().any(|(a, _)| a == "home2/hlr"),
        "home2's HLR was asked without an agreement"
    );
    // visited2 has an agreement with home2.
    let out = roamlab(&[
        "attach",
        "alien1",
        "--at",
        "visited2",
        "--lab",
        "sigpartner",
    ]);
    assert!(out.status.success(), "{}", text(&out));

    // A process that is not a VLR agent of the lab and reaches the HLR's socket anyway
    // (root, outside every node) is refused before the identity exchange: the kernel says
    // who it is, whatever unit name it would send.
    let socket = LabDir::of("sigpartner").hlr_socket("home2");
    rt().block_on(async {
        let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
        let (mut reader, _writer) = stream.into_split();
        assert!(
            ipa::read_frame(&mut reader).await.is_err(),
            "the HLR spoke to a peer that is not a VLR agent"
        );
    });
    let log = std::fs::read_to_string(LabDir::of("sigpartner").agent_log("home2", "hlr")).unwrap();
    assert!(
        log.contains("refused a peer that is not a VLR agent"),
        "{log}"
    );
}

#[test]
fn attaching_at_a_second_visited_network_cancels_the_first() {
    let Some(_lab) = up("sigmove", "topologies/two-visited.yaml") else {
        return;
    };
    assert!(
        roamlab(&["attach", "phone1", "--at", "visited", "--lab", "sigmove"])
            .status
            .success()
    );
    assert_eq!(attached("sigmove", "visited"), ["001010000000001"]);
    let out = roamlab(&["attach", "phone1", "--at", "visited2", "--lab", "sigmove"]);
    assert!(out.status.success(), "{}", text(&out));
    let dropped = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        attached("sigmove", "visited").is_empty()
    });
    assert!(
        dropped,
        "visited still lists phone1 after it registered at visited2"
    );
    assert_eq!(attached("sigmove", "visited2"), ["001010000000001"]);
    assert_eq!(
        registered_at("sigmove", "home", "001010000000001").as_deref(),
        Some("visited2")
    );
    in_order(
        &events("sigmove"),
        &[
            ("visited2/vlr", "UpdateLocation request"),
            ("home/hlr", "CancelLocation request"),
            ("visited/vlr", "CancelLocation request"),
            ("visited/vlr", "CancelLocation result"),
        ],
    );
}

#[test]
fn a_restarted_hlr_keeps_subscribers_and_sequence_numbers() {
    let Some(_lab) = up("sighlr", "topologies/roaming.yaml") else {
        return;
    };
    assert!(roamlab(&["attach", "phone1", "--lab", "sighlr"])
        .status
        .success());
    assert!(roamlab(&["detach", "phone1", "--lab", "sighlr"])
        .status
        .success());
    let before = sqn("sighlr", "home", "001010000000001");
    let out = roamlab(&["restart", "--lab", "sighlr", "home/hlr"]);
    assert!(out.status.success(), "{}", text(&out));
    // The VLR reconnects by itself; an attach may need a moment for that.
    let ok = attach_eventually("sighlr");
    assert!(ok, "no attach after the HLR restarted");
    assert_eq!(
        sqn("sighlr", "home", "001010000000001"),
        before + 1,
        "the HLR lost its sequence number"
    );
    assert!(
        !events("sighlr")
            .iter()
            .any(|(_, e)| e == "Authentication failure"),
        "a resynchronisation was needed"
    );
}

#[test]
fn a_vlr_whose_hlr_is_down_rejects_with_a_cause_and_recovers() {
    let Some(lab) = up("sigdown", "topologies/roaming.yaml") else {
        return;
    };
    common::kill_agent(&lab.status_json(), "hlr");
    std::thread::sleep(Duration::from_millis(200));
    let out = roamlab(&["attach", "phone1", "--lab", "sigdown"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("network failure (GMM cause 17)"),
        "{}",
        text(&out)
    );
    assert!(roamlab(&["restart", "--lab", "sigdown", "home/hlr"])
        .status
        .success());
    let ok = attach_eventually("sigdown");
    assert!(ok, "the VLR did not recover when its HLR came back");
}

#[test]
fn garbage_silence_and_hang_ups_on_every_socket_leave_the_agents_serving() {
    let Some(lab) = up("siggarbage", "topologies/roaming.yaml") else {
        return;
    };
    let pids = common::agent_pids(&lab.status_json());
    let hlr_socket = LabDir::of("siggarbage").hlr_socket("home");
    let cell_socket = cell("siggarbage", "visited");
    rt().block_on(async {
        use tokio::io::AsyncWriteExt;
        // A peer that connects to the HLR and never speaks, held open throughout.
        let _silent = tokio::net::UnixStream::connect(&hlr_socket).await.unwrap();
        let _silent_terminal = tokio::net::UnixStream::connect(&cell_socket).await.unwrap();
        let mut seed = 0x0bad_f00d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for socket in [&hlr_socket, &cell_socket] {
            for round in 0..60 {
                let mut s = tokio::net::UnixStream::connect(socket).await.unwrap();
                let bytes: Vec<u8> = match round % 5 {
                    // Random bytes.
                    0 => (0..next() % 300).map(|_| next() as u8).collect(),
                    // An oversized frame header.
                    1 => vec![0xff, 0xff, 0xee, 0x05, 1, 2, 3],
                    // A truncated GSUP message in a well-formed frame.
                    2 => ipa::encode(&Frame::Gsup(vec![msg::ATTACH_REQUEST, 0x01, 0x08, 0x00])),
                    // An unknown message type.
                    3 => ipa::encode(&Frame::Gsup(Message::new(0x7c, "001010000000001").encode())),
                    // An attach, then a hang-up mid-procedure.
                    _ => ipa::encode(&Frame::Gsup(
                        Message::new(msg::ATTACH_REQUEST, "001010000000001").encode(),
                    )),
                };
                let _ = s.write_all(&bytes).await;
                if round % 2 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
        // Everyone else is still served.
        let (imsi, k, opc) = PHONE1;
        let (mut t, _) = fake_attach("siggarbage", "visited", imsi, k, opc, None)
            .await
            .expect("attach after the garbage");
        t.detach().await.unwrap();
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        common::agent_pids(&lab.status_json()),
        pids,
        "an agent died or was replaced"
    );
    assert!(lab.status_json()["agents"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["alive"] == true));
}

#[test]
fn an_hlr_that_lost_its_sequence_numbers_resynchronises_with_auts() {
    let Some(lab) = up("sigresync", "topologies/roaming.yaml") else {
        return;
    };
    for _ in 0..3 {
        let out = roamlab(&["attach", "phone1", "--lab", "sigresync"]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(roamlab(&["detach", "phone1", "--lab", "sigresync"])
            .status
            .success());
    }
    common::kill_agent(&lab.status_json(), "hlr");
    std::fs::remove_file(LabDir::of("sigresync").hlr_state("home")).unwrap();
    assert!(roamlab(&["restart", "--lab", "sigresync", "home/hlr"])
        .status
        .success());
    let ok = attach_eventually("sigresync");
    assert!(ok, "no attach after the HLR lost its sequence numbers");
    in_order(
        &events("sigresync"),
        &[
            ("visited/vlr", "Authentication failure"),
            ("home/hlr", "SendAuthInfo request"),
            ("visited/vlr", "Attach accept"),
        ],
    );
    assert!(
        sqn("sigresync", "home", "001010000000001") > 3,
        "the HLR did not adopt the terminal's sequence number"
    );
}

/// Claim 23 from the command line (issue 10: `attach` could not make a terminal claim a
/// name): a terminal that claims its own host name attaches; one that claims another
/// subscriber's is refused as an illegal MS, the refusal names both names, and nothing of
/// it is registered or written.
#[test]
fn a_terminal_claims_its_own_host_name_at_attach_and_no_other() {
    let Some(_lab) = up("sigclaim", "topologies/roaming.yaml") else {
        return;
    };
    let out = roamlab(&[
        "attach",
        "phone1",
        "--host-name",
        "server1.home.example",
        "--lab",
        "sigclaim",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("illegal MS")
            && said.contains(
                "visited/vlr: it claimed server1.home.example, and its home holds phone1.home.example"
            ),
        "{said}"
    );
    assert!(attached("sigclaim", "visited").is_empty());
    assert_eq!(registered_at("sigclaim", "home", "001010000000001"), None);
    let out = roamlab(&[
        "attach",
        "phone1",
        "server1",
        "--host-name",
        "phone1.home.example",
        "--lab",
        "sigclaim",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("--host-name is one terminal's claim, and 2 terminals were named"),
        "{}",
        text(&out)
    );
    let out = roamlab(&[
        "attach",
        "phone1",
        "--host-name",
        "PHONE1.home.example",
        "--lab",
        "sigclaim",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("resolves to it from fixed1"),
        "{}",
        text(&out)
    );
    assert_eq!(
        registered_at("sigclaim", "home", "001010000000001").as_deref(),
        Some("visited")
    );
}

/// `roamlab capture signaling` records the private network, which no packet socket sees:
/// tshark decodes the pcap as GSUP over IPA and names every message of an attach and a
/// detach. The tap goes when the capture ends. `events --format mermaid|svg` draws the
/// same flow, a lane per agent and terminal.
#[test]
fn capture_signaling_writes_gsup_that_tshark_decodes_by_name() {
    let Some((lab, _)) = common::up_lab("sigcap", "topologies/roaming.yaml", &[]) else {
        return;
    };
    let file = format!("/tmp/roamlab-gsup-{}.pcap", std::process::id());
    let mut capture = std::process::Command::new(common::bin())
        .args([
            "capture",
            "--lab",
            "sigcap",
            "signaling",
            "-w",
            &file,
            "--seconds",
            "4",
        ])
        .spawn()
        .expect("roamlab capture");
    let tap = roamlab::contract::LabDir::of("sigcap").gsup_tap("visited");
    let listening = common::within(std::time::Duration::from_secs(3), || tap.exists());
    assert!(listening.is_some(), "no tap at {}", tap.display());
    for verb in ["attach", "detach"] {
        let out = common::roamlab(&[verb, "phone1", "--lab", "sigcap"]);
        assert!(out.status.success(), "{}", common::text(&out));
    }
    assert!(capture.wait().unwrap().success());
    assert!(!tap.exists(), "the tap outlived the capture");
    // The same flow as the events draw it: a lane each, a message an arrow.
    let drawn = common::text(&common::roamlab(&[
        "events", "sigcap", "--format", "mermaid",
    ]));
    for arrow in [
        "phone1->>visited_vlr: Attach request",
        "visited_vlr->>home_hlr: SendAuthInfo request (phone1)",
        "visited_vlr->>phone1: Authentication request",
        "visited_dhcp->>phone1: DHCPACK 198.51.100.100",
        "home_hlr->>home_dns: UPDATE A phone1.home.example 198.51.100.100",
        "visited_dhcp->>visited_dns: UPDATE PTR 198.51.100.100 phone1.home.example",
        "visited_vlr->>home_hlr: PurgeMS request (phone1)",
    ] {
        assert!(drawn.contains(arrow), "no `{arrow}` in:\n{drawn}");
    }
    let picture = common::text(&common::roamlab(&["events", "sigcap", "--format", "svg"]));
    assert!(
        picture.starts_with("<svg") && picture.contains("class=\"message\""),
        "{picture}"
    );
    let read = std::process::Command::new("tshark")
        .args(["-r", &file, "-d", "tcp.port==4222,gsm_ipa"])
        .output()
        .expect("tshark (Debian package tshark)");
    let _ = std::fs::remove_file(&file);
    let shown = common::text(&read);
    assert!(read.status.success(), "{shown}");
    for message in [
        "SendAuthInfo Request",
        "SendAuthInfo Result",
        "UpdateLocation Request",
        "InsertSubscriberData Request",
        "UpdateLocation Result",
        "PurgeMS Request",
        "PurgeMS Result",
    ] {
        assert!(
            shown
                .lines()
                .any(|l| l.contains("GSUP") && l.contains(message)),
            "no {message} in:\n{shown}"
        );
    }
    drop(lab);
}
