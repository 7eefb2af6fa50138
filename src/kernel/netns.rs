//! Named network namespaces the way `ip netns` keeps them: a file under /run/netns with
//! the namespace bind-mounted on it. Work inside a namespace happens on a short-lived OS
//! thread that enters it, never on a tokio worker.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::plan::Sysctl;

/// Where named namespaces live, shared with iproute2.
/// Where `ip netns exec` (and our own entry) finds a namespace's hosts and resolv.conf.
pub const ETC_NETNS: &str = "/etc/netns";

pub fn etc_dir(namespace: &str) -> std::path::PathBuf {
    std::path::Path::new(ETC_NETNS).join(namespace)
}

pub const NETNS_DIR: &str = "/run/netns";

pub fn path_of(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

// The new mount API (Linux 5.2); the numbers are the same on every architecture but alpha.
pub(crate) const SYS_OPEN_TREE: libc::c_long = 428;
pub(crate) const SYS_MOVE_MOUNT: libc::c_long = 429;
pub(crate) const OPEN_TREE_CLONE: libc::c_uint = 1;
pub(crate) const AT_RECURSIVE: libc::c_uint = 0x8000;

/// A clone of the /run/netns mount without the namespaces mounted on its files (nor, on
/// this kernel, those mounted later: a detached clone gets no propagation), made once per
/// process; None where the kernel refuses one.
fn bare_netns_dir() -> Option<BorrowedFd<'static>> {
    static TREE: OnceLock<Option<OwnedFd>> = OnceLock::new();
    TREE.get_or_init(|| {
        let dir = CString::new(NETNS_DIR).ok()?;
        // SAFETY: a syscall on a NUL-terminated path; the fd it returns is ours alone.
        let fd = unsafe {
            libc::syscall(
                SYS_OPEN_TREE,
                libc::AT_FDCWD,
                dir.as_ptr(),
                OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
            )
        };
        // SAFETY: a new descriptor nothing else owns.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
    })
    .as_ref()
    .map(|fd| fd.as_fd())
}

/// Makes /run/netns/`name`, the file a namespace gets mounted on. Where it can, the file
/// is a hard link of `sibling`'s (another namespace of the same lab), made in the bare
/// clone of /run/netns, where `sibling` is its file and not the namespace mounted on it:
/// a new name costs the disk no inode. On an ext4 without a journal, like this machine's
/// root, a new inode costs a scan of the inode bitmap that grows with the files made and
/// removed lately (30 µs for one file, 0.3 ms each for a thousand; a link takes 5–9 µs).
/// Otherwise, and if the link fails for any reason, a new file.
fn make_file(name: &str, sibling: Option<&str>) -> io::Result<()> {
    if let (Some(sibling), Some(dir)) = (sibling, bare_netns_dir()) {
        if let (Ok(from), Ok(to)) = (CString::new(sibling), CString::new(name)) {
            // SAFETY: linkat on NUL-terminated names relative to a descriptor we hold.
            let linked = unsafe {
                libc::linkat(
                    dir.as_raw_fd(),
                    from.as_ptr(),
                    dir.as_raw_fd(),
                    to.as_ptr(),
                    0,
                )
            };
            if linked == 0 {
                return Ok(());
            }
        }
    }
    let path = path_of(name);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map(drop)
        .map_err(|e| with_path(e, &path))
}

/// Makes /run/netns a shared mount point, as `ip netns add` does, so the namespace mounts
/// we put there are seen by every mount namespace (and by `ip netns`).
pub fn prepare_dir() -> io::Result<()> {
    fs::create_dir_all(NETNS_DIR)?;
    let shared = || {
        mount(
            None::<&str>,
            NETNS_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) => {
            // Not a mount point yet: bind it on itself, then make it shared.
            mount(
                Some(NETNS_DIR),
                NETNS_DIR,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
            Ok(shared()?)
        }
        Err(e) => Err(e.into()),
    }
}

/// True when /run/netns/NAME holds a mounted namespace (not just a stale file).
pub fn is_mounted(name: &str) -> bool {
    let (Ok(file), Ok(dir)) = (fs::metadata(path_of(name)), fs::metadata(NETNS_DIR)) else {
        return false;
    };
    file.dev() != dir.dev()
}

/// The (device, inode) that identifies a mounted namespace, to find processes inside it.
pub fn identity(name: &str) -> Option<(u64, u64)> {
    if !is_mounted(name) {
        return None;
    }
    fs::metadata(path_of(name)).ok().map(|m| (m.dev(), m.ino()))
}

/// What tells one namespace from every other for as long as the machine runs: its nsfs
/// inode (which the kernel may reuse once the namespace is gone) together with its netns
/// cookie (which it never reuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NsIdentity {
    pub ino: u64,
    pub cookie: u64,
}

/// `SO_NETNS_COOKIE` (Linux 5.14); not in the libc crate yet.
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The identity of the namespace the calling thread is in.
pub fn identity_of_this_thread() -> io::Result<NsIdentity> {
    let ino = fs::metadata("/proc/thread-self/ns/net")?.ino();
    // SAFETY: a socket we own, closed below; getsockopt writes at most `len` bytes.
    let cookie = unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut cookie: u64 = 0;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        let rc = libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        );
        let err = io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(err);
        }
        cookie
    };
    Ok(NsIdentity { ino, cookie })
}

/// The identity of a named namespace, or None when it is not mounted.
pub fn identity_of(name: &str) -> io::Result<Option<NsIdentity>> {
    if !is_mounted(name) {
        return Ok(None);
    }
    run_in(name, identity_of_this_thread).map(Some)
}

/// An append-only record of the namespaces a lab made, each written from inside the new
/// namespace before its name appears in /run/netns: whatever a crash leaves behind under
/// the lab's name is either in the ledger (and the lab's) or not the lab's at all.
#[derive(Debug, Clone)]
pub struct Ledger {
    path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LedgerEntry {
    pub name: String,
    #[serde(flatten)]
    pub identity: NsIdentity,
}

impl Ledger {
    pub fn at(path: PathBuf) -> Self {
        Ledger { path }
    }

    fn record(&self, name: &str, identity: NsIdentity) -> io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut line = serde_json::to_vec(&LedgerEntry {
            name: name.to_string(),
            identity,
        })
        .map_err(io::Error::other)?;
        line.push(b'\n');
        // One write on an O_APPEND file: concurrent attaches never interleave lines.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .and_then(|mut f| f.write_all(&line))
            .map_err(|e| with_path(e, &self.path))
    }

    /// Every namespace recorded; a torn last line (a crash mid-write) is skipped.
    pub fn entries(&self) -> Vec<LedgerEntry> {
        fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Whether `name`, as it is now, is a namespace this ledger recorded.
    pub fn owns(entries: &[LedgerEntry], name: &str, now: NsIdentity) -> bool {
        entries.iter().any(|e| e.name == name && e.identity == now)
    }
}

/// Creates the namespace on the calling thread: the thread leaves its namespace for good,
/// so call this only on a thread made for it. Sysctls are written from inside. With a
/// ledger, the namespace is recorded there before it gets its name. Its file is a link of
/// `sibling`'s where it can be (see [`make_file`]).
pub fn create_on_this_thread(
    name: &str,
    sysctls: &[Sysctl],
    ledger: Option<&Ledger>,
    sibling: Option<&str>,
) -> io::Result<()> {
    let path = path_of(name);
    if path.exists() && !is_mounted(name) {
        // A stale entry from a crash between creating the file and mounting on it.
        fs::remove_file(&path)?;
    }
    // Recorded in the ledger before its name exists: a crash in between (a kill -9 of the
    // verb) leaves at most a ledger entry, or a ledger entry and a stale file, which
    // teardown removes; never a file the ledger does not know.
    unshare(CloneFlags::CLONE_NEWNET)?;
    if let Some(ledger) = ledger {
        ledger.record(name, identity_of_this_thread()?)?;
    }
    make_file(name, sibling)?;
    let made = (|| -> io::Result<()> {
        mount(
            Some("/proc/thread-self/ns/net"),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
        for s in sysctls {
            let file = Path::new("/proc/sys").join(&s.key);
            fs::write(&file, &s.value).map_err(|e| with_path(e, &file))?;
        }
        Ok(())
    })();
    if made.is_err() {
        let _ = delete(name);
    }
    made
}

/// Unmounts and removes a named namespace. A namespace that is not there is already gone.
pub fn delete(name: &str) -> io::Result<()> {
    let path = path_of(name);
    match umount2(&path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(with_path(e, &path)),
        _ => Ok(()),
    }
}

pub fn open(name: &str) -> io::Result<File> {
    let path = path_of(name);
    if !is_mounted(name) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("namespace {name} does not exist"),
        ));
    }
    File::open(&path).map_err(|e| with_path(e, &path))
}

/// Runs `work` on a new OS thread that has entered namespace `name`.
pub fn run_in<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let ns = open(name)?;
    std::thread::spawn(move || {
        setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)?;
        work()
    })
    .join()
    .map_err(|_| io::Error::other("namespace worker thread panicked"))?
}

/// Processes whose network namespace is one of `namespaces` (like `ip netns pids`).
/// (device, inode) of the network namespace a process is in.
pub fn identity_of_pid(pid: i32) -> Option<(u64, u64)> {
    fs::metadata(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

pub fn pids_in(namespaces: &[(u64, u64)]) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| identity_of_pid(*pid).is_some_and(|id| namespaces.contains(&id)))
        .collect()
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}
