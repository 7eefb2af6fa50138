//! Agents: the processes the supervisor runs inside nodes (the lab's HLR, VLR, DHCP and
//! DNS servers, and terminals). Each is `roamlab agent KIND`,
//! binds its sockets, then calls [`notify_ready`], and exits cleanly on SIGTERM.

pub mod bind;
pub mod cell_tap;
pub mod dhcp;
pub mod dhcp_client;
pub mod dns;
pub mod echo;
pub mod hlr;
pub mod leases;
pub mod place;
pub mod queue;
pub mod ratelimit;
pub mod signaling;
pub mod terminal;
pub mod terminal_host;
pub mod vlr;

use std::io::Write;
use std::os::fd::FromRawFd;

use crate::contract::published::{GATE_FD_ENV, READY_FD_ENV};

/// Whether a host name a terminal claims is `own`: the whole name, or its first label (a
/// DHCP client's option 12), in any case, with or without the root's dot. The DHCP server
/// checks a claim by it against the name it was given, and the HLR one it was asked about.
pub fn names_the_same(claim: &str, own: &str) -> bool {
    let claim = claim.trim_end_matches('.');
    let own = own.trim_end_matches('.');
    let first = own.split('.').next().unwrap_or_default();
    claim.eq_ignore_ascii_case(own) || claim.eq_ignore_ascii_case(first)
}

/// How long a home network goes on naming a moved terminal's old address while its new
/// network has reported none (make before break, at the HLR). The old network keeps that
/// address out of its pool for longer, so the name never points at another terminal.
pub const MOVE_GRACE_SECS: u64 = 10;

/// Gives up every capability, for good, once the agent's sockets are bound (call it before
/// anything runs on another thread): what is left is root's ownership of the lab's files,
/// within the agent's view. Peers check for this (see [`signaling::peer_agent`]).
pub fn drop_privileges() -> std::io::Result<()> {
    use crate::kernel::privileges;
    privileges::drop_all()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot drop capabilities: {e}")))?;
    // Not dumpable: another agent (same uid, no capabilities either) can open nothing
    // behind /proc/<pid> of this one: not its root, its mounts, its descriptors.
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let holding = privileges::threads_with_capabilities()?;
    if !holding.is_empty() {
        return Err(std::io::Error::other(format!(
            "threads {holding:?} still hold capabilities after the drop"
        )));
    }
    Ok(())
}

/// Waits at the gate the supervisor gave this agent, if it gave one, until it opens; an
/// error if it was closed instead (the start was called off).
pub async fn pass_gate() -> std::io::Result<()> {
    let Some(fd) = std::env::var(GATE_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return Ok(());
    };
    std::env::remove_var(GATE_FD_ENV);
    // SAFETY: the supervisor handed us this fd for exactly this use; nothing else owns it.
    let gate = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // Read on the runtime (the pipe made non-blocking), not by a thread made to wait.
    let mut gate = tokio::net::unix::pipe::Receiver::from_owned_fd(gate)?;
    let mut byte = [0u8; 1];
    let opened = tokio::io::AsyncReadExt::read(&mut gate, &mut byte).await? == 1;
    if opened {
        Ok(())
    } else {
        Err(std::io::Error::other("its start was called off"))
    }
}

/// Tells the supervisor this agent is ready (a no-op when not started by one).
pub fn notify_ready() {
    let Some(fd) = std::env::var(READY_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    std::env::remove_var(READY_FD_ENV);
    // SAFETY: the supervisor handed us this fd for exactly this use; nothing else owns it.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(fd) };
    let _ = pipe.write_all(b"READY\n");
}

/// Resolves when the agent is asked to stop (SIGTERM or SIGINT).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
