//! Issue 11: the CI container, proven. The project's Dockerfile is built with podman and
//! the demo runs in a privileged container of it, as the README says to. No registry can
//! be reached from these machines, so the base image is made from Debian's packages
//! (debootstrap, then `podman import`) and the build stage is given the host's Rust
//! toolchain; the Dockerfile itself is the one a registry user builds.
//!
//! Everything podman makes lives under the test's own folder (its own storage and
//! configuration, by CONTAINERS_CONF and CONTAINERS_STORAGE_CONF), removed when the test ends, pass or fail: the machine's own container
//! storage and settings are never touched.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use common::{root_or_skip, text};

/// The test's folder: podman's storage, its configuration, the base image's root.
struct Workspace(PathBuf);

impl Workspace {
    fn new() -> Self {
        let dir = PathBuf::from(format!("/var/tmp/roamlab-container-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Workspace(dir)
    }

    fn podman(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", self.0.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.0.join("storage.conf"))
            .args(args);
        cmd
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        // Podman's own reset unmounts what it mounted under this root before it goes.
        let _ = self.podman(&["system", "reset", "--force"]).output();
        let _ = Command::new("umount")
            .args(["-R", "-l"])
            .arg(self.0.join("storage"))
            .output();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(what: &str, mut cmd: Command) -> Output {
    let started = Instant::now();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    eprintln!("{what}: {:.1} s", started.elapsed().as_secs_f64());
    assert!(out.status.success(), "{what} failed: {}", text(&out));
    out
}

/// The tools the test needs, or why it cannot run (naming the packages).
fn missing_tools() -> Option<String> {
    let missing: Vec<&str> = [
        ("podman", "podman"),
        ("runc", "runc"),
        ("debootstrap", "debootstrap"),
    ]
    .into_iter()
    .filter(|(tool, _)| {
        !["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(tool).exists())
    })
    .map(|(_, package)| package)
    .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "the container test needs the Debian packages {} (scripts/install-deps.sh --tests)",
            missing.join(", ")
        )
    })
}

#[test]
fn the_dockerfile_builds_and_the_demo_passes_in_a_privileged_container() {
    if !root_or_skip("container") {
        return;
    }
    if let Some(why) = missing_tools() {
        if std::env::var("ROAMLAB_E2E").as_deref() == Ok("required") {
            panic!("{why}");
        }
        eprintln!("SKIPPED: {why}");
        return;
    }
    let ws = Workspace::new();
    // runc, not crun: crun refuses this kernel's hybrid cgroup layout. Limits no higher
    // than this machine's: a process here may not raise them (no CAP_SYS_RESOURCE).
    let hard = |flag: &str, most: u64| -> u64 {
        let out = Command::new("sh")
            .args(["-c", &format!("ulimit -H{flag}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .map_or(most, |n| n.min(most))
    };
    let (nofile, nproc) = (hard("n", 65536), hard("u", 4096));
    std::fs::write(
        ws.0.join("containers.conf"),
        format!(
            "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n\
             [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        ws.0.join("storage.conf"),
        format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            ws.0.join("storage").display(),
            ws.0.join("run").display()
        ),
    )
    .unwrap();

    // The base image: Debian 12 from Debian's own packages.
    let rootfs = ws.0.join("rootfs");
    let mut debootstrap = Command::new("debootstrap");
    debootstrap
        .args(["--variant=minbase", "bookworm"])
        .arg(&rootfs)
        .arg(debian_mirror());
    run("debootstrap bookworm", debootstrap);
    let mut tar = Command::new("tar");
    tar.arg("-C")
        .arg(&rootfs)
        .args(["-cf"])
        .arg(ws.0.join("rootfs.tar"))
        .arg(".");
    run("tar the root", tar);
    let base_tar = ws.0.join("rootfs.tar").display().to_string();
    run(
        "podman import",
        ws.podman(&["import", &base_tar, "localhost/roamlab-debian:12"]),
    );

    // The project's Dockerfile, with the local base and the host's toolchain.
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let rustup = std::env::var("RUSTUP_HOME").unwrap_or_else(|_| format!("{home}/.rustup"));
    let cargo = std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{home}/.cargo"));
    let repo = common::repo("").display().to_string();
    run(
        "podman build",
        ws.podman(&[
            "build",
            "--network",
            "host",
            "--build-arg",
            "BUILDER=localhost/roamlab-debian:12",
            "--build-arg",
            "BASE=localhost/roamlab-debian:12",
            // Minutes faster than release, on CI's clock; the same Dockerfile otherwise.
            "--build-arg",
            "PROFILE=dev",
            "-v",
            &format!("{rustup}:/usr/local/rustup:ro"),
            "-v",
            &format!("{cargo}:/usr/local/cargo"),
            "-t",
            "localhost/roamlab:test",
            &repo,
        ]),
    );

    // As the README runs it: privileged, and with no network of the host's.
    let in_container = |what: &str, args: &[&str]| -> String {
        let mut all = vec!["run", "--rm", "--privileged", "--network", "none"];
        all.extend_from_slice(args);
        text(&run(what, ws.podman(&all)))
    };
    let said = in_container("podman run roamlab demo", &["localhost/roamlab:test"]);
    assert!(
        said.contains("16 of 16 checks passed") && !said.contains("✗"),
        "{said}"
    );
    // A scenario of the repository's (on a topology file of its own), mounted in read-only
    // and checked against its committed transcript.
    let mount = format!("{repo}:/repo:ro");
    let check = in_container(
        "podman run roamlab run --check",
        &[
            "-v",
            &mount,
            "localhost/roamlab:test",
            "run",
            "/repo/scenarios/no-update.yaml",
            "--check",
        ],
    );
    assert!(check.contains("6 of 6 checks passed"), "{check}");
}

/// The mirror this machine's apt uses (its sources name it), else Debian's own.
fn debian_mirror() -> String {
    let sources = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
        .or_else(|_| std::fs::read_to_string("/etc/apt/sources.list"))
        .unwrap_or_default();
    sources
        .lines()
        .map(str::trim)
        .filter_map(|l| {
            let words = l.strip_prefix("URIs:").or_else(|| l.strip_prefix("deb "))?;
            words
                .split_whitespace()
                .find(|w| w.starts_with("http"))
                .map(str::to_string)
        })
        .find(|uri| !uri.contains("security"))
        .unwrap_or_else(|| "http://deb.debian.org/debian".into())
}
