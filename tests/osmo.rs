//! Osmocom's osmo-hlr (Debian's) as the home HLR: roamlab's VLR reaches it over TCP 4222,
//! does the IPA identity exchange the way libosmocore does (unit name, unit ID, serial
//! number; no ID_ACK from osmo-hlr), and a terminal attaches and detaches through it with
//! Milenage keys provisioned by osmo-hlr's own VTY: SendAuthInfo, challenge and response,
//! UpdateLocation, InsertSubscriberData, PurgeMS.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{roamlab, root_or_skip, text, LabGuard};

const K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
const OPC: &str = "cd63cb71954a9f4e48a5994e37a02baf";
const IMSI: &str = "001010000000001";

/// osmo-hlr running in the lab's home node; stopped, and its files removed, however the
/// test ends.
struct OsmoHlr {
    child: Child,
    dir: std::path::PathBuf,
}

impl OsmoHlr {
    fn start(lab: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("roamlab-osmo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("osmo-hlr.cfg"),
            "log stderr\n logging filter all 1\n logging color 0\n logging level main info\n logging level linp info\n\
             line vty\n bind 127.0.0.1\nctrl\n bind 127.0.0.1\nhlr\n gsup\n  bind ip 192.0.2.1\n",
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("osmo-hlr.log")).unwrap();
        let child = Command::new(common::bin())
            .args([
                "exec",
                "--privileged",
                "--lab",
                lab,
                "home",
                "--",
                "osmo-hlr",
                "-c",
            ])
            .arg(dir.join("osmo-hlr.cfg"))
            .arg("-l")
            .arg(dir.join("hlr.db"))
            .arg("-U")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("osmo-hlr");
        OsmoHlr { child, dir }
    }

    /// Runs VTY commands (on 127.0.0.1:4258 inside the home node) and returns what it said.
    fn vty(&self, lab: &str, commands: &[&str]) -> String {
        let namespace = format!("{lab}-home");
        let commands: Vec<String> = commands.iter().map(|c| c.to_string()).collect();
        roamlab::kernel::netns::run_in(&namespace, move || {
            let mut stream = None;
            for _ in 0..50 {
                match std::net::TcpStream::connect("127.0.0.1:4258") {
                    Ok(s) => {
                        stream = Some(s);
                        break;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
            let mut s = stream.ok_or_else(|| std::io::Error::other("no VTY"))?;
            s.set_read_timeout(Some(Duration::from_millis(300)))?;
            let mut said = Vec::new();
            let mut buf = [0u8; 4096];
            for c in std::iter::once("enable".to_string()).chain(commands) {
                s.write_all(format!("{c}\r\n").as_bytes())?;
                std::thread::sleep(Duration::from_millis(100));
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    said.extend_from_slice(&buf[..n]);
                }
            }
            Ok(String::from_utf8_lossy(&said).replace('\r', ""))
        })
        .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("osmo-hlr.log")).unwrap_or_default()
    }
}

impl Drop for OsmoHlr {
    fn drop(&mut self) {
        // SIGTERM to `roamlab exec`, which passes it on to osmo-hlr.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_terminal_attaches_through_osmo_hlr() {
    if !root_or_skip("a_terminal_attaches_through_osmo_hlr") {
        return;
    }
    if Command::new("osmo-hlr").arg("--version").output().is_err() {
        if std::env::var("ROAMLAB_E2E").as_deref() == Ok("required") {
            panic!("osmo-hlr is not installed (scripts/install-deps.sh installs it)");
        }
        eprintln!("SKIPPED a_terminal_attaches_through_osmo_hlr: no osmo-hlr");
        return;
    }
    let lab = LabGuard::new("osmointer");
    let out = lab.up(Some("tests/labs/osmo.yaml"), &[]);
    assert!(out.status.success(), "up failed: {}", text(&out));
    let hlr = OsmoHlr::start("osmointer");
    let provisioned = hlr.vty(
        "osmointer",
        &[
            &format!("subscriber imsi {IMSI} create"),
            &format!("subscriber imsi {IMSI} update msisdn 15550000001"),
            &format!("subscriber imsi {IMSI} update aud3g milenage k {K} opc {OPC}"),
            &format!("show subscriber imsi {IMSI}"),
        ],
    );
    assert!(provisioned.contains("MILENAGE"), "{provisioned}");

    // The VLR's link: osmo-hlr routes to it by the serial number it sent.
    let linked = common::within(Duration::from_secs(10), || {
        hlr.log().contains("Adding GSUP route for visited")
    });
    assert!(linked.is_some(), "no GSUP route at osmo-hlr: {}", hlr.log());

    let attach = roamlab(&["attach", "phone1", "--lab", "osmointer"]);
    assert!(attach.status.success(), "{}", text(&attach));
    assert!(
        text(&attach).contains("MSISDN 15550000001"),
        "{}",
        text(&attach)
    );
    let events = roamlab::events::read_all(&roamlab::contract::LabDir::of("osmointer")).unwrap();
    let seen = |what: &str| {
        events
            .iter()
            .any(|e| e.agent == "visited/vlr" && e.event == what)
    };
    for step in [
        "SendAuthInfo result",
        "Authentication response",
        "InsertSubscriberData request",
        "UpdateLocation result",
        "Attach accept",
    ] {
        assert!(seen(step), "{step} missing: {events:#?}");
    }
    // osmo-hlr knows where the subscriber is.
    let shown = hlr.vty("osmointer", &[&format!("show subscriber imsi {IMSI}")]);
    assert!(shown.contains("visited"), "{shown}");

    // roamlab's own session-address messages are not sent on: said once, plainly.
    let vlr_log = || {
        std::fs::read_to_string(
            roamlab::contract::LabDir::of("osmointer").agent_log("visited", "vlr"),
        )
        .unwrap_or_default()
    };
    let told = common::within(Duration::from_secs(5), || {
        vlr_log().contains("does not know roamlab's session-address messages")
    });
    assert!(told.is_some(), "{}", vlr_log());
    assert_eq!(
        vlr_log()
            .matches("does not know roamlab's session-address messages")
            .count(),
        1
    );

    let detach = roamlab(&["detach", "phone1", "--lab", "osmointer"]);
    assert!(detach.status.success(), "{}", text(&detach));
    let purged = common::within(Duration::from_secs(5), || {
        roamlab::events::read_all(&roamlab::contract::LabDir::of("osmointer"))
            .unwrap()
            .iter()
            .any(|e| e.agent == "visited/vlr" && e.event == "PurgeMS result")
    });
    assert!(purged.is_some(), "no PurgeMS result from osmo-hlr");
}
