//! A process's privileges: which capabilities it keeps. The supervisor narrows a confined
//! process's bounding set before `exec` ([`drop_bounding_except`], only syscalls, as code
//! between fork and exec must); each of the lab's agents gives up every capability once
//! its sockets are bound ([`drop_all`]), so that what is left of it — root's ownership of
//! its own files — cannot reach past its view.

use std::io;

/// Highest capability number the kernel may know (CAP_LAST_CAP is 40 in 6.x).
const LAST_CAPABILITY: u32 = 63;
/// SETPCAP: dropped last, since dropping the others needs it.
const CAP_SETPCAP: u32 = 8;

/// securebits(7): root is not special on exec or on a uid change, and nobody can change
/// that again.
const SECBIT_NOROOT: libc::c_ulong = 1 << 0;
const SECBIT_NOROOT_LOCKED: libc::c_ulong = 1 << 1;
const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;
const SECBIT_NO_SETUID_FIXUP_LOCKED: libc::c_ulong = 1 << 3;
const SECBIT_KEEP_CAPS_LOCKED: libc::c_ulong = 1 << 5;
const SECBIT_NO_CAP_AMBIENT_RAISE: libc::c_ulong = 1 << 6;
const SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED: libc::c_ulong = 1 << 7;

fn prctl(option: libc::c_int, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(option, arg, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Drops every capability but `kept` from the bounding set (SETPCAP last).
pub fn drop_bounding_except(kept: &[u32]) -> io::Result<()> {
    for cap in 0..=LAST_CAPABILITY {
        if kept.contains(&cap) || cap == CAP_SETPCAP {
            continue;
        }
        // EINVAL: past the kernel's last capability.
        match prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong) {
            Err(e) if e.raw_os_error() != Some(libc::EINVAL) => return Err(e),
            _ => {}
        }
    }
    if kept.contains(&CAP_SETPCAP) {
        return Ok(());
    }
    prctl(libc::PR_CAPBSET_DROP, CAP_SETPCAP as libc::c_ulong)
}

/// Gives up every capability of the calling thread for good: none effective, permitted,
/// inheritable, ambient or in the bounding set, root not special on exec, no new
/// privileges. Threads made later inherit this; threads that already exist do not (see
/// [`threads_with_capabilities`]).
pub fn drop_all() -> io::Result<()> {
    prctl(
        libc::PR_SET_SECUREBITS,
        SECBIT_NOROOT
            | SECBIT_NOROOT_LOCKED
            | SECBIT_NO_SETUID_FIXUP
            | SECBIT_NO_SETUID_FIXUP_LOCKED
            | SECBIT_KEEP_CAPS_LOCKED
            | SECBIT_NO_CAP_AMBIENT_RAISE
            | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
    )?;
    clear_ambient()?;
    drop_bounding_except(&[])?;
    let mut header = Header {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let none = [CapData::default(); 2];
    // SAFETY: capset with a version-3 header and its two data words, both ours.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, none.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1)
}

/// Narrows the calling thread's effective, permitted and inheritable capabilities to `kept`
/// and clears its ambient ones: what `exec` leaves a root process whose bounding set is
/// `kept`, for a process that goes on without `exec`.
pub fn narrow_to(kept: &[u32]) -> io::Result<()> {
    let mask: u64 = kept
        .iter()
        .filter(|c| **c <= LAST_CAPABILITY)
        .fold(0, |m, c| m | 1 << c);
    let mut header = Header {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut now = [CapData::default(); 2];
    // SAFETY: capget with a version-3 header and room for its two data words.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, now.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let narrowed = [0, 1].map(|word| {
        let keep = (mask >> (32 * word)) as u32;
        CapData {
            effective: now[word].permitted & keep,
            permitted: now[word].permitted & keep,
            inheritable: now[word].inheritable & keep,
        }
    });
    // SAFETY: capset with a version-3 header and its two data words, both ours.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, narrowed.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    clear_ambient()
}

fn clear_ambient() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// capget/capset's header and data words (linux/capability.h, version 3: two words).
#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The threads of this process that still hold a capability (permitted, effective or in
/// the bounding set), by thread id.
pub fn threads_with_capabilities() -> io::Result<Vec<u32>> {
    let mut holding = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task")?.flatten() {
        let status = std::fs::read_to_string(entry.path().join("status"))?;
        if capabilities_held(&status) {
            if let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) {
                holding.push(tid);
            }
        }
    }
    Ok(holding)
}

/// Whether a /proc/<pid>/status says the process holds any capability.
pub fn capabilities_held(status: &str) -> bool {
    status.lines().any(|l| {
        ["CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"]
            .iter()
            .any(|field| {
                l.strip_prefix(field)
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                    .is_some_and(|v| v != 0)
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_with_any_capability_holds_one() {
        let none = "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\n";
        assert!(!capabilities_held(none));
        assert!(capabilities_held(&none.replace(
            "CapBnd:\t0000000000000000",
            "CapBnd:\t0000000000200000"
        )));
        assert!(capabilities_held(&none.replace(
            "CapPrm:\t0000000000000000",
            "CapPrm:\t0000000000000001"
        )));
    }

    /// Dropping in a thread of its own leaves it with nothing, and the test process as it was.
    #[test]
    fn after_drop_all_a_thread_holds_nothing_and_gains_nothing() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: the root tier runs this");
            return;
        }
        let before = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let after = std::thread::spawn(|| {
            drop_all().unwrap();
            let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            let child_status =
                std::thread::spawn(|| std::fs::read_to_string("/proc/thread-self/status").unwrap())
                    .join()
                    .unwrap();
            (status, child_status)
        })
        .join()
        .unwrap();
        assert!(!capabilities_held(&after.0), "{}", after.0);
        assert!(!capabilities_held(&after.1), "a later thread: {}", after.1);
        assert!(after.0.contains("NoNewPrivs:\t1"), "{}", after.0);
        let still = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        assert_eq!(capabilities_held(&before), capabilities_held(&still));
    }
}
