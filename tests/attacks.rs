//! The attacks of the issue "The private network is private and every identity is proven",
//! each performed for real from where an attacker would stand (a process in a node, an
//! unprivileged user of the machine, a namespace that only shares a lab's prefix), and each
//! asserting the refusal and that nothing of the lab changed.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use common::{root_or_skip, text, LabGuard};

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
    let lab = LabGuard::new("atkmodes");
    let out = lab.up(None, &[]);
    assert!(out.status.success(), "up failed: {}", text(&out));
    let mode = |p: &str| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("/run/roamlab"), 0o700);
    assert_eq!(mode("/run/roamlab/atkmodes"), 0o700);
    for file in ["topology.yaml", "events.jsonl", "state.json"] {
        let path = format!("/run/roamlab/atkmodes/{file}");
        assert_eq!(mode(&path), 0o600, "{path}");
    }
    // An unprivileged user cannot read the subscribers' keys.
    let nobody = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "cat",
            "/run/roamlab/atkmodes/topology.yaml",
        ])
        .output()
        .expect("setpriv");
    assert!(
        !nobody.status.success(),
        "nobody read the topology: {}",
        text(&nobody)
    );
}

/// Finding 3: a second connection naming itself `visited` took over the HLR's route to
/// the real VLR; once it closed, every attach failed with cause 17 until a VLR restart.
#[test]
fn a_second_link_claiming_a_connected_vlr_is_refused_and_displaces_nothing() {
    use roamlab::protocols::ipa::{self, Frame};
    if !root_or_skip("a_second_link_claiming_a_connected_vlr_is_refused_and_displaces_nothing") {
        return;
    }
    let lab = LabGuard::new("atkimpost");
    let out = lab.up(None, &[]);
    assert!(out.status.success(), "up failed: {}", text(&out));
    let attach = common::roamlab(&["attach", "phone1", "--lab", "atkimpost"]);
    assert!(attach.status.success(), "{}", text(&attach));

    let socket = "/run/roamlab/atkimpost/signaling/hlr-home.sock";
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        assert!(matches!(
            ipa::read_frame(&mut reader).await.unwrap(),
            Frame::IdGet(_)
        ));
        ipa::write_frame(
            &mut writer,
            &Frame::IdResp(vec![(ipa::TAG_UNIT_NAME, "visited".into())]),
        )
        .await
        .unwrap();
        assert_eq!(ipa::read_frame(&mut reader).await.unwrap(), Frame::IdNack);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    });
    let log = std::fs::read_to_string("/run/roamlab/atkimpost/agents/home.hlr.log").unwrap();
    assert!(
        log.contains("refused: a second connection claims an identity whose link is up"),
        "{log}"
    );
    let events = common::roamlab(&["events", "atkimpost", "--json"]);
    assert!(
        text(&events).contains("identity already connected"),
        "no event for the refusal: {}",
        text(&events)
    );
    // The real VLR's link still carries attaches.
    let attach = common::roamlab(&["attach", "server1", "--lab", "atkimpost"]);
    assert!(attach.status.success(), "{}", text(&attach));
}
