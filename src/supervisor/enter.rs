//! Entering a node from a freshly forked child, before `exec`: its network namespace, and a
//! private mount namespace in which /etc/netns/<namespace>/* is bound over /etc and /sys
//! shows the node's interfaces, as `ip netns exec` does.
//!
//! Everything is prepared before the fork; [`NodeEntry::enter`] only makes syscalls, as
//! code between fork and exec must.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::kernel::netns;
use crate::lab::etc;

pub struct NodeEntry {
    namespace: File,
    /// (source in /etc/netns/<ns>, target in /etc)
    binds: Vec<(CString, CString)>,
}

impl NodeEntry {
    pub fn prepare(namespace: &str) -> io::Result<Self> {
        let ns = netns::open(namespace)?;
        let mut binds = Vec::new();
        if let Ok(entries) = std::fs::read_dir(etc::dir_of(namespace)) {
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
        Ok(NodeEntry {
            namespace: ns,
            binds,
        })
    }

    /// Runs in the child between fork and exec.
    fn enter(&self) -> io::Result<()> {
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
        // A sysfs mounted from inside the namespace lists the node's own interfaces.
        if umount2("/sys", MntFlags::MNT_DETACH).is_ok() {
            let _ = mount(
                Some("sysfs"),
                "/sys",
                Some("sysfs"),
                MsFlags::empty(),
                None::<&str>,
            );
        }
        for (source, target) in &self.binds {
            mount(
                Some(source.as_c_str()),
                target.as_c_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
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

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}
