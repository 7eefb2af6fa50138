//! The lab's state directory, /run/roamlab/<lab>/: a state file naming every object the
//! lab made, agent logs and pid files. It is written before the first kernel object is
//! created, so whatever a crash leaves behind is findable.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::contract::{LabDir, RUN_DIR};

/// Creates /run/roamlab, open to root only: labs' keys, subscriber data and signaling
/// sockets live below it.
pub fn create_run_dir() -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(RUN_DIR)?;
    fs::set_permissions(RUN_DIR, fs::Permissions::from_mode(0o700))
}

/// Creates a directory (not its parents) that only root can enter.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().mode(0o700).create(path)
}

/// Puts a lab's directory on a tmpfs of its own (mode 0700): what its agents and terminals
/// write there (state, journals, logs, sockets) then never reaches a disk, where a
/// thousand terminals' files would cost their creation on the disk's filesystem (ext4
/// without a journal passes over every inode deleted in the last seconds to find a free
/// one). `down` unmounts it.
pub fn mount_lab_dir(path: &Path) -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    mount(
        Some("tmpfs"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0700"),
    )
    .map_err(|e| io::Error::other(format!("cannot mount a tmpfs on {}: {e}", path.display())))
}

/// Unmounts a lab directory's tmpfs (and all it holds); one that is not mounted is done.
pub fn unmount_lab_dir(path: &Path) -> io::Result<()> {
    use nix::mount::{umount2, MntFlags};
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(io::Error::other(format!(
            "cannot unmount {}: {e}",
            path.display()
        ))),
    }
}

/// The record of every namespace the lab made (see [`crate::kernel::netns::Ledger`]).
pub fn ledger(lab: &str) -> crate::kernel::netns::Ledger {
    crate::kernel::netns::Ledger::at(LabDir::of(lab).namespaces())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `up` is building the lab (or died while building it).
    Creating,
    /// The lab is up.
    Running,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub lab: String,
    pub phase: Phase,
    /// The `roamlab up` process that owns a lab still being created.
    pub owner_pid: u32,
    /// Where the topology came from (a file, or the built-in lab).
    pub source: String,
    pub namespaces: Vec<String>,
    pub agents: Vec<crate::supervisor::AgentRecord>,
    pub created_unix: u64,
    /// Terminals attached with `roamlab attach`.
    #[serde(default)]
    pub terminals: Vec<TerminalRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalRecord {
    pub name: String,
    /// The visited network it attached at.
    pub visited: String,
    pub namespace: String,
    /// Its subscriber's IMSI.
    #[serde(default)]
    pub imsi: String,
    /// The terminal host it runs in, if it shares one (otherwise it has an agent of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// An exclusive lock on a lab's state, held while a verb changes it (attach, detach,
/// restart), so that concurrent verbs do not lose each other's changes.
pub struct LabLock {
    _held: std::fs::File,
}

impl LabLock {
    pub fn take(lab: &str) -> io::Result<Self> {
        use std::os::fd::AsRawFd;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LabDir::of(lab).lock())?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(LabLock { _held: file })
    }
}

impl LabState {
    pub fn path(lab: &str) -> PathBuf {
        LabDir::of(lab).state()
    }

    pub fn load(lab: &str) -> io::Result<Option<Self>> {
        match fs::read(Self::path(lab)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", Self::path(lab).display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the state file atomically (write, then rename).
    pub fn save(&self) -> io::Result<()> {
        crate::json_file::write_private_json(&Self::path(&self.lab), self)
    }
}

/// Labs that have a state directory, sorted.
pub fn known_labs() -> Vec<String> {
    let Ok(entries) = fs::read_dir(RUN_DIR) else {
        return Vec::new();
    };
    let mut labs: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    labs.sort();
    labs
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
