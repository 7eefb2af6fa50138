//! Entering a node from a freshly forked child, before `exec`: its network namespace, and a
//! private mount namespace in which /etc/netns/<namespace>/* is bound over /etc and /sys
//! shows the node's interfaces, as `ip netns exec` does.
//!
//! A process the lab does not trust (a terminal, anything `roamlab exec` runs) is also
//! confined ([`View::Confined`]): /run/roamlab is covered by an empty tmpfs with only the
//! paths it is granted bound back, /proc shows only its own PID namespace (the caller puts
//! it in a new one, see [`new_pid_namespace_for_children`]), and the capabilities that
//! would let it undo any of that, or reach past it, are dropped from its bounding set:
//! no mount or setns (SYS_ADMIN), no ptrace or /proc/<pid>/root of agents (SYS_PTRACE), no
//! open_by_handle_at (DAC_READ_SEARCH), no device nodes (MKNOD), no modules or raw I/O.
//! It keeps what a device's software needs: networking (NET_ADMIN, NET_RAW,
//! NET_BIND_SERVICE), and root's file and identity capabilities for DHCP clients.
//!
//! Everything is prepared before the fork; [`NodeEntry::enter`] only makes syscalls, as
//! code between fork and exec must. A process that enters without `exec` (see `zygote`)
//! also narrows its own capabilities to the bounding set's, as `exec` would have.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::kernel::netns;
use crate::kernel::netns::{AT_RECURSIVE, OPEN_TREE_CLONE, SYS_MOVE_MOUNT, SYS_OPEN_TREE};

/// What of the host a process in a node sees.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// Everything (the lab's own agents; `roamlab exec --privileged`).
    #[default]
    Full,
    /// Nothing of /run/roamlab but `grants` (directories, or files that exist), in a PID
    /// namespace of its own, without the capabilities that would undo that.
    Confined { grants: Vec<std::path::PathBuf> },
    /// One of the lab's own agents: nothing of /run/roamlab but its `grants` (its own
    /// directory, the sockets it serves and reaches, the keys it signs with), so that it
    /// sees nothing of other agents or labs; its capabilities stay.
    Agent { grants: Vec<std::path::PathBuf> },
}

/// The capabilities a confined process keeps (everything else leaves its bounding set):
/// Docker's default set without MKNOD, plus NET_ADMIN for a node's own networking.
pub(super) const KEPT_CAPABILITIES: &[u32] = &[
    0,  // CHOWN
    1,  // DAC_OVERRIDE
    3,  // FOWNER
    4,  // FSETID
    5,  // KILL
    6,  // SETGID
    7,  // SETUID
    10, // NET_BIND_SERVICE
    11, // NET_BROADCAST
    12, // NET_ADMIN
    13, // NET_RAW
    18, // SYS_CHROOT
    29, // AUDIT_WRITE
    31, // SETFCAP
];

/// One path granted to a confined process, and the mount point to make for it in the
/// tmpfs. The child clones the path's mount (open_tree) before the tmpfs hides it, then
/// moves the clone onto the mount point: a descriptor opened before the fork would belong
/// to the host's mount namespace, which a bind in the child's namespace refuses.
struct Grant {
    target: CString,
    /// Directories to make in the tmpfs, outermost first (the target's included when it
    /// is a directory).
    dirs: Vec<CString>,
    is_dir: bool,
}

struct Confinement {
    run_dir: CString,
    grants: Vec<Grant>,
    /// A process of a node: its own /proc, and the capabilities that undo this dropped.
    untrusted: bool,
}

pub struct NodeEntry {
    namespace: File,
    /// (source in /etc/netns/<ns>, target in /etc)
    binds: Vec<(CString, CString)>,
    confinement: Option<Confinement>,
}

/// Makes children that the calling thread forks from now on start in a new PID namespace
/// (call it on a thread made for one spawn: the change cannot be undone). A confined
/// process then sees, and can signal, nothing outside its own namespace.
pub fn new_pid_namespace_for_children() -> io::Result<()> {
    unshare(CloneFlags::CLONE_NEWPID).map_err(io::Error::from)
}

impl NodeEntry {
    /// Enters with the full view (a lab's own agents).
    pub fn prepare(namespace: &str) -> io::Result<Self> {
        Self::prepare_with(namespace, &View::Full)
    }

    pub fn prepare_with(namespace: &str, view: &View) -> io::Result<Self> {
        let ns = netns::open(namespace)?;
        let mut binds = Vec::new();
        if let Ok(entries) = std::fs::read_dir(crate::kernel::netns::etc_dir(namespace)) {
            for entry in entries.flatten() {
                let target = std::path::Path::new("/etc").join(entry.file_name());
                if target.exists() {
                    binds.push((
                        cstring(entry.path().as_os_str().as_bytes())?,
                        cstring(target.as_os_str().as_bytes())?,
                    ));
                }
            }
        }
        let confinement = match view {
            View::Full => None,
            View::Confined { grants } => Some(confinement(grants, true)?),
            View::Agent { grants } => Some(confinement(grants, false)?),
        };
        Ok(NodeEntry {
            namespace: ns,
            binds,
            confinement,
        })
    }

    /// Runs in the child between fork and exec (or in a zygote's child, see `zygote`).
    pub(super) fn enter(&self) -> io::Result<()> {
        setns(self.namespace.as_fd(), CloneFlags::CLONE_NEWNET)?;
        unshare(CloneFlags::CLONE_NEWNS)?;
        // Our mounts must not leak back to the host.
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )?;
        // A sysfs mounted from inside the namespace lists the node's own interfaces. It
        // goes over the host's rather than in its place (as `ip netns exec` does it): an
        // unmount waits out an RCU grace period, ~1 ms here and many more while the kernel
        // is busy destroying another lab's namespaces.
        let _ = mount(
            Some("sysfs"),
            "/sys",
            Some("sysfs"),
            MsFlags::empty(),
            None::<&str>,
        );
        for (source, target) in &self.binds {
            mount(
                Some(source.as_c_str()),
                target.as_c_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
        }
        if let Some(c) = &self.confinement {
            c.enter()?;
        }
        Ok(())
    }

    /// Makes `command` start inside the node.
    pub fn apply_to(self, command: &mut Command) {
        // SAFETY: `enter` only makes syscalls on memory prepared before the fork.
        unsafe {
            command.pre_exec(move || self.enter());
        }
    }
}

fn confinement(grants: &[std::path::PathBuf], untrusted: bool) -> io::Result<Confinement> {
    let run_dir = std::path::Path::new(crate::contract::RUN_DIR);
    let mut prepared = Vec::new();
    for path in grants {
        let is_dir = std::fs::metadata(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?
            .is_dir();
        let inside = path.strip_prefix(run_dir).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not under {}", path.display(), run_dir.display()),
            )
        })?;
        let mut dirs = Vec::new();
        let mut at = run_dir.to_path_buf();
        let parts: Vec<_> = inside.components().collect();
        let keep = if is_dir { parts.len() } else { parts.len() - 1 };
        for part in &parts[..keep] {
            at.push(part);
            dirs.push(cstring(at.as_os_str().as_bytes())?);
        }
        prepared.push(Grant {
            target: cstring(path.as_os_str().as_bytes())?,
            dirs,
            is_dir,
        });
    }
    if prepared.len() > MAX_GRANTS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} grants; at most {MAX_GRANTS}", prepared.len()),
        ));
    }
    Ok(Confinement {
        run_dir: cstring(run_dir.as_os_str().as_bytes())?,
        grants: prepared,
        untrusted,
    })
}

/// Grants one confined process may have (their clones are held in a fixed array: the
/// child must not allocate).
const MAX_GRANTS: usize = 16;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

impl Confinement {
    /// Runs in the child between fork and exec, after the node's own mounts.
    fn enter(&self) -> io::Result<()> {
        let hidden = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        let mut clones = [-1 as libc::c_int; MAX_GRANTS];
        for (clone, grant) in clones.iter_mut().zip(&self.grants) {
            // SAFETY: a syscall on a path prepared before the fork.
            let fd = unsafe {
                libc::syscall(
                    SYS_OPEN_TREE,
                    libc::AT_FDCWD,
                    grant.target.as_ptr(),
                    OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as libc::c_uint,
                )
            };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            *clone = fd as libc::c_int;
        }
        mount(
            Some("tmpfs"),
            self.run_dir.as_c_str(),
            Some("tmpfs"),
            hidden,
            Some("mode=0700,size=64k"),
        )?;
        for grant in &self.grants {
            for dir in &grant.dirs {
                // SAFETY: mkdir on a path prepared before the fork.
                if unsafe { libc::mkdir(dir.as_ptr(), 0o700) } != 0
                    && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
                {
                    return Err(io::Error::last_os_error());
                }
            }
            if !grant.is_dir {
                // SAFETY: open/close of a path prepared before the fork.
                let fd = unsafe {
                    libc::open(
                        grant.target.as_ptr(),
                        libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                        0o600,
                    )
                };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                unsafe { libc::close(fd) };
            }
        }
        for (clone, grant) in clones.iter().zip(&self.grants) {
            // SAFETY: a syscall on a descriptor and a path prepared before the fork.
            let moved = unsafe {
                libc::syscall(
                    SYS_MOVE_MOUNT,
                    *clone,
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    grant.target.as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH,
                )
            };
            if moved < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if !self.untrusted {
            return Ok(());
        }
        // A /proc of the process's own PID namespace: no other process of the lab in it.
        mount(Some("proc"), "/proc", Some("proc"), hidden, None::<&str>)?;
        crate::kernel::privileges::drop_bounding_except(KEPT_CAPABILITIES)?;
        Ok(())
    }
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}
