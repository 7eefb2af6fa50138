//! One agent started without `exec`: a child forked first thing in `main`, while the CLI
//! has one thread and has done nothing, waits until the CLI knows what to start (a node,
//! a view, an agent's command line, its log and pipes), then enters the node and runs the
//! agent in its own image. An attach of one terminal starts its agent this way: `exec`,
//! loading and the runtime's start took ≈ 1 ms of every attach's path.
//!
//! What `exec` did is done by hand, so that the agent is what an exec'd one would be:
//! its descriptors are its log, its readiness pipe and its gate only; a confined agent
//! loses the capabilities outside its bounding set from its effective and permitted sets
//! too (`capset`; `exec` did that against the bounding set); and it is a session of its
//! own, in a PID namespace of its own when confined. Its command line stays the CLI's
//! (`roamlab attach NAME`, what `ps` shows): setting another needs SYS_RESOURCE, which a
//! container's root may lack, and nothing reads a terminal's (peers check only the lab's
//! agents by theirs, see `agents::signaling::peer_agent`).
//!
//! The zygote takes its request, with the descriptors, over a socket pair (SCM_RIGHTS; a
//! sequenced-packet pair, so that a request is never read in part); it
//! answers the agent's pid, or why it could not start it, and ends. A CLI that never asks
//! (it failed first, or started no agent) closes the socket, and the zygote ends with it.

use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use nix::sys::socket::{
    recv, recvmsg, send, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockType,
};
use nix::unistd::{fork, ForkResult, Pid};
use serde::{Deserialize, Serialize};

use super::enter::{NodeEntry, View};
use super::{GATE_FD, GATE_FD_ENV, READY_FD, READY_FD_ENV};

/// The zygote this process forked, until an agent's start takes it.
static ZYGOTE: Mutex<Option<Zygote>> = Mutex::new(None);

/// The largest request (a node's name, its view's grants, an agent's command line).
const MAX_REQUEST: usize = 64 * 1024;
/// Descriptors a request carries: the log, the readiness pipe's writing end, and the
/// reading ends of the run gate and the node gate, when it has them.
const MAX_FDS: usize = 4;
/// Descriptors the zygote keeps while it arranges the agent's: above those it arranges.
const SPARE_FDS_FROM: RawFd = 10;

/// The CLI's end of a zygote it forked.
pub struct Zygote {
    pid: Pid,
    socket: OwnedFd,
}

/// What a zygote is asked to start.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    namespace: String,
    view: View,
    /// The agent's command line, as `exec` would have had it (argv[0] first).
    args: Vec<String>,
    gated: bool,
    /// The agent enters its node once its node gate opens (the node is made meanwhile).
    node_gated: bool,
}

/// How the zygote answered.
#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    Started { pid: i32 },
    Failed { why: String },
}

/// Forks a zygote for this process's next agent start; call it first thing in `main`,
/// while the process has one thread. `run_agent` runs an agent's command line in the
/// zygote's child and gives its exit code. If the fork fails, agents start with `exec`.
pub fn fork_for_next_agent(run_agent: fn(&[String]) -> i32) {
    let Ok((ours, theirs)) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    ) else {
        return;
    };
    // SAFETY: the caller forks while the process has one thread, so the child may do
    // anything the parent could.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => {
            drop(theirs);
            *ZYGOTE.lock().unwrap_or_else(|e| e.into_inner()) = Some(Zygote {
                pid: child,
                socket: ours,
            });
        }
        Ok(ForkResult::Child) => {
            drop(ours);
            let code = serve(theirs, run_agent);
            // SAFETY: ends the zygote without running the CLI's exit handlers.
            unsafe { libc::_exit(code) }
        }
        Err(_) => {}
    }
}

/// The zygote this process forked, if it still has one.
pub(super) fn take() -> Option<Zygote> {
    ZYGOTE.lock().unwrap_or_else(|e| e.into_inner()).take()
}

impl Zygote {
    /// Starts the agent of `args` in `namespace` with `view`: its stdout and stderr go to
    /// `log`, it says READY on `ready`, and waits at the run gate and enters its node at
    /// the node gate, of `[run, node]`, where given. Returns its pid.
    pub(super) fn start(
        self,
        namespace: &str,
        view: &View,
        args: Vec<String>,
        log: &File,
        ready: &OwnedFd,
        [run, node]: [Option<&OwnedFd>; 2],
    ) -> io::Result<i32> {
        let request = Request {
            namespace: namespace.to_string(),
            view: view.clone(),
            args,
            gated: run.is_some(),
            node_gated: node.is_some(),
        };
        let bytes = serde_json::to_vec(&request)?;
        let mut fds = vec![log.as_raw_fd(), ready.as_raw_fd()];
        fds.extend(run.map(|g| g.as_raw_fd()));
        fds.extend(node.map(|g| g.as_raw_fd()));
        sendmsg::<()>(
            self.socket.as_raw_fd(),
            &[IoSlice::new(&bytes)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )?;
        let mut buf = vec![0u8; 4096];
        let n = read_answer(&self.socket, &mut buf);
        // The zygote ends once it has answered: reap it.
        let _ = nix::sys::wait::waitpid(self.pid, None);
        let answer: Answer = match n {
            Ok(n) if n > 0 => serde_json::from_slice(&buf[..n])
                .map_err(|e| io::Error::other(format!("the zygote's answer: {e}")))?,
            Ok(_) => return Err(io::Error::other("the zygote ended without an answer")),
            Err(e) => return Err(e),
        };
        match answer {
            Answer::Started { pid } => Ok(pid),
            Answer::Failed { why } => Err(io::Error::other(why)),
        }
    }
}

fn read_answer(socket: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match recv(socket.as_raw_fd(), buf, MsgFlags::empty()) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// The zygote: waits for its request, starts the agent, answers, ends.
fn serve(received: OwnedFd, run_agent: fn(&[String]) -> i32) -> i32 {
    // Above the descriptors the agent's are copied to, so that no copy overwrites it.
    let spared = spare(&received);
    drop(received);
    let Ok(socket) = spared else {
        return 1;
    };
    // The CLI's terminal or pipes are not the zygote's to hold while it waits.
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        for fd in 0..=2 {
            // SAFETY: dup2 onto the standard descriptors, which we replace.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let (request, fds) = match receive(&socket) {
        Ok(Some(got)) => got,
        // The CLI ended, or started no agent.
        Ok(None) => return 0,
        Err(e) => {
            answer(&socket, &Answer::Failed { why: e.to_string() });
            return 1;
        }
    };
    match start(request, fds, run_agent) {
        Ok(pid) => {
            answer(&socket, &Answer::Started { pid });
            0
        }
        Err(e) => {
            answer(&socket, &Answer::Failed { why: e.to_string() });
            1
        }
    }
}

fn answer(socket: &OwnedFd, answer: &Answer) {
    if let Ok(bytes) = serde_json::to_vec(answer) {
        let _ = send(socket.as_raw_fd(), &bytes, MsgFlags::MSG_NOSIGNAL);
    }
}

/// The request and its descriptors; none if the CLI closed the socket without one.
fn receive(socket: &OwnedFd) -> io::Result<Option<(Request, Vec<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (n, fds) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(msg) => {
                let mut fds = Vec::new();
                for cmsg in msg.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(got) = cmsg {
                        // SAFETY: descriptors the kernel just gave us; nothing else owns them.
                        fds.extend(
                            got.into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
                break (msg.bytes, fds);
            }
        }
    };
    if n == 0 {
        return Ok(None);
    }
    let request = serde_json::from_slice(&buf[..n])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(Some((request, fds)))
}

/// Arranges the agent's descriptors and environment, forks it (into a PID namespace of
/// its own when confined), and gives its pid. An agent with a node gate enters its node
/// once that opens: its node is looked at then, not before.
fn start(request: Request, fds: Vec<OwnedFd>, run_agent: fn(&[String]) -> i32) -> io::Result<i32> {
    let [log, ready, gates @ ..] = &fds[..] else {
        return Err(io::Error::other(
            "the request carries no log and readiness pipe",
        ));
    };
    if usize::from(request.gated) + usize::from(request.node_gated) != gates.len() {
        return Err(io::Error::other("the request's gates are missing"));
    }
    let mut gates = gates.iter();
    let gate = request.gated.then(|| gates.next()).flatten();
    let node_gate = request.node_gated.then(|| gates.next()).flatten();
    let entry = match request.node_gated {
        false => Some(NodeEntry::prepare_with(&request.namespace, &request.view)?),
        true => None,
    };
    // Each descriptor moved above those it is about to be copied to, so that no copy
    // overwrites another.
    let null = spare(&OwnedFd::from(File::open("/dev/null")?))?;
    let (log, ready, gate, node_gate) = (
        spare(log)?,
        spare(ready)?,
        gate.map(spare).transpose()?,
        node_gate.map(spare).transpose()?,
    );
    // The copies received go before theirs take their places.
    drop(fds);
    let mut moves = vec![
        (null.as_raw_fd(), 0),
        (log.as_raw_fd(), 1),
        (log.as_raw_fd(), 2),
    ];
    moves.push((ready.as_raw_fd(), READY_FD));
    moves.extend(gate.as_ref().map(|g| (g.as_raw_fd(), GATE_FD)));
    for (from, to) in moves {
        // SAFETY: dup2 between descriptors we own; the copy is not close-on-exec, which
        // does not matter here: nothing is exec'd.
        if unsafe { libc::dup2(from, to) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    std::env::set_var(READY_FD_ENV, READY_FD.to_string());
    if request.gated {
        std::env::set_var(GATE_FD_ENV, GATE_FD.to_string());
    } else {
        std::env::remove_var(GATE_FD_ENV);
    }
    let confined = matches!(request.view, View::Confined { .. });
    if confined {
        super::enter::new_pid_namespace_for_children()?;
    }
    // SAFETY: the zygote has one thread.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => Ok(child.as_raw()),
        ForkResult::Child => {
            let entered =
                nix::unistd::setsid()
                    .map_err(io::Error::from)
                    .and_then(|_| match &entry {
                        Some(entry) => become_agent(entry, confined),
                        None => enter_at_gate(node_gate, &request, confined),
                    });
            let code = match entered {
                Ok(()) => run_agent(&request.args),
                Err(e) => {
                    eprintln!("roamlab: cannot start the agent in its node: {e}");
                    1
                }
            };
            std::process::exit(code)
        }
    }
}

/// In the agent's own process, made before its node: once the node gate opens,
/// [`become_agent`] in the node as it is then.
fn enter_at_gate(gate: Option<OwnedFd>, request: &Request, confined: bool) -> io::Result<()> {
    if let Some(gate) = gate {
        super::wait_open(gate)?;
    }
    let entry = NodeEntry::prepare_with(&request.namespace, &request.view)?;
    let entered = become_agent(&entry, confined);
    // Its namespace's descriptor went with every other above the agent's own (close_range
    // in `become_agent`): dropping it would close that number again, and it may be
    // another descriptor's by then.
    std::mem::forget(entry);
    entered
}

/// In the agent's own process, in a session of its own: its node, its capabilities, and
/// no descriptor but its own (0–4).
fn become_agent(entry: &NodeEntry, confined: bool) -> io::Result<()> {
    entry.enter()?;
    if confined {
        crate::kernel::privileges::narrow_to(super::enter::KEPT_CAPABILITIES)?;
    }
    // SAFETY: closes every descriptor above the agent's own; none is used after this.
    if unsafe { libc::syscall(libc::SYS_close_range, GATE_FD + 1, u32::MAX, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A copy of `fd` above the descriptors an agent's are copied to (0–4), close-on-exec.
fn spare(fd: &OwnedFd) -> io::Result<OwnedFd> {
    let moved = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(SPARE_FDS_FROM))?;
    // SAFETY: fcntl returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}
