//! Named network namespaces the way `ip netns` keeps them: a file under /run/netns with
//! the namespace bind-mounted on it. Work inside a namespace happens on a short-lived OS
//! thread that enters it, never on a tokio worker.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::plan::Sysctl;

/// Where named namespaces live, shared with iproute2.
pub const NETNS_DIR: &str = "/run/netns";

pub fn path_of(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
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

/// Creates the namespace on the calling thread: the thread leaves its namespace for good,
/// so call this only on a thread made for it. Sysctls are written from inside.
pub fn create_on_this_thread(name: &str, sysctls: &[Sysctl]) -> io::Result<()> {
    let path = path_of(name);
    if path.exists() && !is_mounted(name) {
        // A stale entry from a crash between creating the file and mounting on it.
        fs::remove_file(&path)?;
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| with_path(e, &path))?;
    let made = (|| -> io::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET)?;
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
pub fn pids_in(namespaces: &[(u64, u64)]) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            fs::metadata(format!("/proc/{pid}/ns/net"))
                .map(|m| namespaces.contains(&(m.dev(), m.ino())))
                .unwrap_or(false)
        })
        .collect()
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}
