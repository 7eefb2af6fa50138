//! Helpers for tests that build real labs: the root check (a skip is a failure when
//! ROAMLAB_E2E=required), a bound on how many labs run at once, and a guard that removes
//! a test's lab however the test ends.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Condvar, Mutex};

/// Labs built at once by one test binary: enough to overlap, few enough for 2 cores.
const MAX_LABS: usize = 2;
static SLOTS: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();

/// True when the test may touch the kernel. Outside root it prints a skip, or fails the
/// test when ROAMLAB_E2E=required (as CI sets it).
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("ROAMLAB_E2E").as_deref() == Ok("required") {
        panic!("{test}: needs root, and ROAMLAB_E2E=required forbids skipping it");
    }
    eprintln!("SKIPPED {test}: needs root (set ROAMLAB_E2E=required to make this a failure)");
    false
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_roamlab")
}

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

pub fn roamlab(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("run roamlab")
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A slot to build one lab in; the lab is removed when this is dropped.
pub struct LabGuard {
    pub name: String,
}

impl LabGuard {
    pub fn new(name: &str) -> Self {
        let mut used = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= MAX_LABS {
            used = FREED.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
        drop(used);
        // Whatever an earlier, killed run of this test left must not fail this one.
        roamlab(&["cleanup", "--lab", name]);
        LabGuard {
            name: name.to_string(),
        }
    }

    /// `roamlab up` of `topology` (None: the built-in lab) under this lab's name.
    pub fn up(&self, topology: Option<&str>, extra: &[&str]) -> Output {
        let mut args = vec!["up", "--name", &self.name];
        let path;
        if let Some(t) = topology {
            path = repo(t).display().to_string();
            args.extend(["-t", &path]);
        }
        args.extend(extra);
        roamlab(&args)
    }

    pub fn exec(&self, node: &str, command: &[&str]) -> Output {
        let mut args = vec!["exec", "--lab", &self.name, node, "--"];
        args.extend(command);
        roamlab(&args)
    }

    pub fn status_json(&self) -> serde_json::Value {
        let out = roamlab(&["status", &self.name, "--json"]);
        assert!(out.status.success(), "status failed: {}", text(&out));
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        roamlab(&["cleanup", "--lab", &self.name]);
        *SLOTS.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        FREED.notify_one();
    }
}

/// Brings up lab `name` from `topology` with `extra` arguments, when the test may touch the
/// kernel (see [`root_or_skip`]); the guard, and what `up` printed.
pub fn up_lab(name: &str, topology: &str, extra: &[&str]) -> Option<(LabGuard, Output)> {
    if !root_or_skip(name) {
        return None;
    }
    let lab = LabGuard::new(name);
    let out = lab.up(Some(topology), extra);
    assert!(out.status.success(), "up failed: {}", text(&out));
    Some((lab, out))
}

/// Asserts that nothing of `lab` is left: namespaces, mounts, state, /etc/netns files,
/// and none of `pids` still running.
pub fn assert_nothing_left(lab: &str, pids: &[i32]) {
    let prefix = format!("{lab}-");
    let leftovers = |dir: &str| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        leftovers("/run/netns"),
        Vec::<String>::new(),
        "namespaces of {lab} left in /run/netns"
    );
    assert_eq!(
        leftovers("/etc/netns"),
        Vec::<String>::new(),
        "/etc/netns files of {lab} left"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&format!("/run/netns/{prefix}")),
        "namespace mounts of {lab} left"
    );
    assert!(
        !Path::new("/run/roamlab").join(lab).exists(),
        "state directory of {lab} left"
    );
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "process {pid} of {lab} still running: {stat}"
        );
    }
    let ip = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let listed = String::from_utf8_lossy(&ip.stdout);
    assert!(
        !listed.lines().any(|l| l.starts_with(&prefix)),
        "ip netns list still shows {lab}: {listed}"
    );
}

/// The inodes of the files in /run/netns that `names`' namespaces are mounted on (not
/// the namespaces'), seen through a clone of the /run/netns mount without those mounts.
#[allow(dead_code)]
pub fn netns_file_inodes(names: &[String]) -> Vec<u64> {
    use std::os::unix::ffi::OsStrExt;
    const SYS_OPEN_TREE: libc::c_long = 428;
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let dir = std::ffi::CString::new("/run/netns").unwrap();
    // SAFETY: a syscall on a NUL-terminated path; the descriptor is closed below.
    let tree = unsafe {
        libc::syscall(
            SYS_OPEN_TREE,
            libc::AT_FDCWD,
            dir.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    } as libc::c_int;
    assert!(
        tree >= 0,
        "open_tree /run/netns: {}",
        std::io::Error::last_os_error()
    );
    let inodes = names
        .iter()
        .map(|name| {
            let name = std::ffi::CString::new(std::ffi::OsStr::new(name).as_bytes()).unwrap();
            // SAFETY: fstatat into a zeroed stat we own, on a descriptor we hold.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            let rc =
                unsafe { libc::fstatat(tree, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
            assert_eq!(rc, 0, "{name:?}: {}", std::io::Error::last_os_error());
            st.st_ino
        })
        .collect();
    // SAFETY: the descriptor opened above.
    unsafe { libc::close(tree) };
    inodes
}

/// Agent pids from `status --json`.
pub fn agent_pids(status: &serde_json::Value) -> Vec<i32> {
    status["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["pid"].as_i64().unwrap() as i32)
        .collect()
}

/// The pid of agent `node/name` in `status --json`.
pub fn agent_pid(status: &serde_json::Value, agent: &str) -> i32 {
    status["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| {
            format!(
                "{}/{}",
                a["node"].as_str().unwrap(),
                a["name"].as_str().unwrap()
            ) == agent
        })
        .unwrap_or_else(|| panic!("no agent {agent}"))["pid"]
        .as_i64()
        .unwrap() as i32
}

/// Kills the agent named `name` with SIGKILL, as a crash would (found in `status --json`).
pub fn kill_agent(status: &serde_json::Value, name: &str) {
    let pid = status["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no agent {name}"))["pid"]
        .as_i64()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// udhcpc asking once for a lease on eth0 (two tries, a second each) and leaving the
/// interface alone (`-s /bin/true`): it exits non-zero when no lease came.
pub const UDHCPC_ONCE: [&str; 12] = [
    "udhcpc",
    "-i",
    "eth0",
    "-f",
    "-n",
    "-q",
    "-t",
    "2",
    "-T",
    "1",
    "-s",
    "/bin/true",
];

/// Polls `check` every 100 ms until it holds or `limit` passes; how long it took.
pub fn within(
    limit: std::time::Duration,
    mut check: impl FnMut() -> bool,
) -> Option<std::time::Duration> {
    let start = std::time::Instant::now();
    loop {
        if check() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A dig transcript without what changes from run to run: ids, timings, cookies, dates,
/// dig's version and the remaining TTLs of cached answers.
pub fn normalise_dig(transcript: &str) -> String {
    transcript
        .lines()
        .filter(|l| {
            !(l.starts_with(";; Query time")
                || l.starts_with(";; WHEN")
                || l.starts_with(";; MSG SIZE")
                || l.starts_with("; COOKIE")
                || l.starts_with("; <<>> DiG"))
        })
        .map(|l| {
            if let (true, Some(i)) = (l.starts_with(";; ->>HEADER"), l.find("id: ")) {
                return format!("{}id: N", &l[..i]);
            }
            // `name. TTL IN TYPE data` → TTL replaced.
            let fields: Vec<&str> = l.split_whitespace().collect();
            if !l.starts_with(';')
                && fields.len() >= 4
                && fields[1].parse::<u32>().is_ok()
                && fields[2] == "IN"
            {
                let mut f = fields.clone();
                f[1] = "TTL";
                f.join("\t")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A tiny deterministic generator, so a failing garbage test can be replayed.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The `.yaml` files of a folder of the repository, sorted.
pub fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let root = repo(dir);
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}
