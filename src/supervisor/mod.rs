//! Starts agent processes inside nodes and stops them.
//!
//! An agent is this same binary (`roamlab agent KIND …`) started inside its node's
//! namespace, in its own session, with stdout and stderr going to a log file in the lab's
//! state directory. It says it is ready by writing `READY` to the pipe on
//! `ROAMLAB_READY_FD`; `up` waits for that (with a timeout) and fails naming the agent and
//! showing the tail of its log if it exits or stays silent. At `down`, SIGTERM, then
//! SIGKILL after a grace period. A process that forked a zygote at its start (see
//! [`zygote`]) starts its next agent from it, without `exec`.

pub mod enter;
pub mod zygote;

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use serde::{Deserialize, Serialize};

pub use crate::contract::published::{GATE_FD_ENV, READY_FD_ENV};
use enter::{NodeEntry, View};

/// The fd number an agent finds its readiness pipe on.
pub const READY_FD: i32 = 3;
/// The agent's end of its gate, when it has one (see [`Gate`]).
pub const GATE_FD: i32 = 4;
const READY_WORD: &[u8] = b"READY";
const LOG_TAIL_LINES: usize = 5;

/// One agent process, as the supervisor started it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub node: String,
    pub name: String,
    pub kind: String,
    pub pid: i32,
    /// The process's start time (clock ticks after boot), so a recycled pid is never
    /// mistaken for the agent.
    pub start_time: u64,
    pub log: PathBuf,
    /// How it was started, so that it can be started again.
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub view: View,
}

impl AgentRecord {
    /// A process found running in `node`'s namespace that no record names (its starter
    /// died before recording it), so that it can be stopped like an agent.
    pub fn found(node: &str, namespace: &str, pid: i32) -> Option<Self> {
        Some(AgentRecord {
            node: node.into(),
            name: "process".into(),
            kind: String::new(),
            pid,
            start_time: start_time(pid)?,
            log: PathBuf::new(),
            namespace: namespace.into(),
            args: Vec::new(),
            view: View::default(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("agent {agent}: cannot start: {cause}")]
    Spawn { agent: String, cause: String },
    #[error("agent {agent} exited before it was ready ({status}); log {log}: {tail}")]
    Exited {
        agent: String,
        status: String,
        log: String,
        tail: String,
    },
    #[error("agent {agent} was not ready within {secs:.1}s; log {log}: {tail}")]
    Timeout {
        agent: String,
        secs: f64,
        log: String,
        tail: String,
    },
    #[error("agent {agent}: interrupted while waiting for it to be ready")]
    Cancelled { agent: String },
    #[error("agent {agent} (pid {pid}): cannot stop: {cause}")]
    Stop {
        agent: String,
        pid: i32,
        cause: String,
    },
}

/// What to start, and where.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub node: String,
    pub name: String,
    pub kind: String,
    pub namespace: String,
    pub args: Vec<String>,
    /// What of the host it sees: a terminal's agent is the subscriber's device, confined.
    pub view: View,
}

impl AgentSpec {
    pub fn label(&self) -> String {
        format!("{}/{}", self.node, self.name)
    }

    /// The spec an agent was started from.
    pub fn of(record: &AgentRecord) -> Self {
        AgentSpec {
            node: record.node.clone(),
            name: record.name.clone(),
            kind: record.kind.clone(),
            namespace: record.namespace.clone(),
            args: record.args.clone(),
            view: record.view.clone(),
        }
    }
}

/// How the wait for readiness ended.
enum Readiness {
    Ready,
    Exited,
    TimedOut,
    Cancelled,
}

/// Lets an agent start before what it needs is in place: the agent, once running, waits
/// at its gate until the gate is opened; dropping the gate closed calls its start off (the
/// agent reads end of file, and ends). A process's start (fork, exec, its runtime) then
/// overlaps the work it waits for.
pub struct Gate(OwnedFd);

impl Gate {
    /// The gate, and the agent's end of it for [`start_gated`].
    pub fn new() -> io::Result<(Gate, OwnedFd)> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        // Above the descriptors the child's are moved to, so that moving one never
        // overwrites another.
        let read = nix::fcntl::fcntl(&read, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))?;
        // SAFETY: fcntl returned a new descriptor that nothing else owns.
        Ok((Gate(write), unsafe { OwnedFd::from_raw_fd(read) }))
    }

    /// Lets the agent go on.
    pub fn open(self) -> io::Result<()> {
        fs::File::from(self.0).write_all(b"G")
    }
}

/// Waits at the reading end of a [`Gate`]: Ok once it is opened, an error if it was
/// dropped closed.
pub(crate) fn wait_open(end: OwnedFd) -> io::Result<()> {
    let mut byte = [0u8; 1];
    let mut end = fs::File::from(end);
    loop {
        match end.read(&mut byte) {
            Ok(1) => return Ok(()),
            Ok(_) => return Err(io::Error::other("its start was called off")),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Starts an agent and waits until it is ready, or fails having stopped it. Setting
/// `cancel` ends the wait (and the agent) within a few milliseconds.
pub fn start(
    spec: &AgentSpec,
    log_dir: &Path,
    timeout: Duration,
    cancel: &AtomicBool,
) -> Result<AgentRecord, SupervisorError> {
    start_gated(spec, log_dir, timeout, cancel, GateEnds::default())
}

/// The agent's ends of the gates it waits at (see [`Gate`]).
#[derive(Default)]
pub struct GateEnds {
    /// Opened when its node is there (namespace and files): until then the agent's process
    /// is made (forked, in its own session and PID namespace) but enters nothing.
    pub node: Option<OwnedFd>,
    /// Opened when what its run needs is there: the agent waits here once running.
    pub run: Option<OwnedFd>,
}

/// [`start`], the agent given the reading ends of [`Gate`]s: it enters its node only after
/// the node gate opens, and is ready only after the run gate opens.
pub fn start_gated(
    spec: &AgentSpec,
    log_dir: &Path,
    timeout: Duration,
    cancel: &AtomicBool,
    gates: GateEnds,
) -> Result<AgentRecord, SupervisorError> {
    let spawn_err = |cause: io::Error| SupervisorError::Spawn {
        agent: spec.label(),
        cause: cause.to_string(),
    };
    let GateEnds { node, run: gate } = gates;
    fs::create_dir_all(log_dir).map_err(spawn_err)?;
    let log = log_dir.join(format!("{}.{}.log", spec.node, spec.name));
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(spawn_err)?;
    let (ready_read, ready_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| spawn_err(e.into()))?;
    let exe = std::env::current_exe().map_err(spawn_err)?;
    let (pid, child) = match zygote::take() {
        Some(zygote) => {
            let args = [exe.display().to_string(), "agent".into(), spec.kind.clone()]
                .into_iter()
                .chain(spec.args.iter().cloned())
                .collect();
            let pid = zygote
                .start(
                    &spec.namespace,
                    &spec.view,
                    args,
                    &log_file,
                    &ready_write,
                    [gate.as_ref(), node.as_ref()],
                )
                .map_err(spawn_err)?;
            (pid, None)
        }
        None => {
            // Without a zygote the node is entered at `exec`: its gate is waited at here.
            if let Some(node) = node {
                wait_open(node).map_err(spawn_err)?;
            }
            let child =
                spawn(spec, &exe, log_file, &ready_write, gate.as_ref()).map_err(spawn_err)?;
            (child.id() as i32, Some(child))
        }
    };
    drop(ready_write);
    drop(gate);
    let record = AgentRecord {
        node: spec.node.clone(),
        name: spec.name.clone(),
        kind: spec.kind.clone(),
        pid,
        start_time: start_time(pid).unwrap_or(0),
        log: log.clone(),
        namespace: spec.namespace.clone(),
        args: spec.args.clone(),
        view: spec.view.clone(),
    };
    let (log_name, tail) = (log.display().to_string(), || log_tail(&log));
    match wait_ready(ready_read, timeout, cancel) {
        Readiness::Ready => {
            // The child is reaped by whoever inherits it; `up` does not wait for it.
            std::mem::forget(child);
            Ok(record)
        }
        Readiness::Exited => {
            let status = reap(child);
            Err(SupervisorError::Exited {
                agent: spec.label(),
                status,
                log: log_name,
                tail: tail(),
            })
        }
        Readiness::TimedOut => {
            let _ = stop(&record, Duration::from_millis(200));
            reap(child);
            Err(SupervisorError::Timeout {
                agent: spec.label(),
                secs: timeout.as_secs_f64(),
                log: log_name,
                tail: tail(),
            })
        }
        Readiness::Cancelled => {
            let _ = stop(&record, Duration::from_millis(200));
            reap(child);
            Err(SupervisorError::Cancelled {
                agent: spec.label(),
            })
        }
    }
}

/// Forks and execs the agent of `spec` inside its node, its output to `log_file`, its
/// readiness pipe's writing end `ready_write`, its gate's end `gate`.
fn spawn(
    spec: &AgentSpec,
    exe: &Path,
    log_file: fs::File,
    ready_write: &OwnedFd,
    gate: Option<&OwnedFd>,
) -> io::Result<std::process::Child> {
    let mut command = Command::new(exe);
    command
        .arg("agent")
        .arg(&spec.kind)
        .args(&spec.args)
        .env(READY_FD_ENV, READY_FD.to_string())
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    NodeEntry::prepare_with(&spec.namespace, &spec.view)?.apply_to(&mut command);
    if gate.is_some() {
        command.env(GATE_FD_ENV, GATE_FD.to_string());
    }
    let raw_write = ready_write.as_raw_fd();
    // Never 3 or 4 (see `Gate::new`), so moving the ready pipe cannot overwrite it.
    let raw_gate = gate.as_ref().map(|g| g.as_raw_fd());
    // SAFETY: only async-signal-safe syscalls (setsid, dup2, fcntl) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // A session of its own: the agent outlives `up` and ignores the terminal's ^C.
            nix::unistd::setsid()?;
            // dup2 clears close-on-exec on the copy; an fd already in place needs it cleared.
            let result = if raw_write == READY_FD {
                libc::fcntl(raw_write, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw_write, READY_FD)
            };
            if result < 0 || raw_gate.is_some_and(|g| libc::dup2(g, GATE_FD) < 0) {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let confined = matches!(spec.view, View::Confined { .. });
    // A confined agent starts in a PID namespace of its own, made on a thread of its own.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                if confined {
                    enter::new_pid_namespace_for_children()?;
                }
                command.spawn()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("spawn thread panicked")))
    })
}

/// Waits for READY on the pipe, in short slices so that `cancel` is seen promptly.
fn wait_ready(pipe: OwnedFd, timeout: Duration, cancel: &AtomicBool) -> Readiness {
    const SLICE: Duration = Duration::from_millis(20);
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut file = fs::File::from(pipe);
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Readiness::Cancelled;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Readiness::TimedOut;
        }
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        let slice =
            PollTimeout::try_from(left.min(SLICE).as_millis() as i32).unwrap_or(PollTimeout::ZERO);
        match poll(&mut fds, slice) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => return Readiness::Exited,
        }
        let mut buf = [0u8; 64];
        match file.read(&mut buf) {
            Ok(0) => return Readiness::Exited,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(READY_WORD.len()).any(|w| w == READY_WORD) {
                    return Readiness::Ready;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Readiness::Exited,
        }
    }
}

/// How an agent that ended before it was ready ended: its exit status when it is our
/// child; one a zygote forked is not.
fn reap(child: Option<std::process::Child>) -> String {
    match child.map(|mut c| c.wait()) {
        Some(Ok(status)) => status.to_string(),
        Some(Err(e)) => e.to_string(),
        None => "started without exec: its status is not ours to read".into(),
    }
}

/// Whether the recorded agent process is still the one we started and still running.
pub fn is_alive(record: &AgentRecord) -> bool {
    process_alive(record.pid, record.start_time)
}

fn process_alive(pid: i32, expected_start: u64) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((state, start)) = parse_stat(&stat) else {
        return false;
    };
    state != 'Z' && state != 'X' && (expected_start == 0 || start == expected_start)
}

/// SIGTERM, then SIGKILL after `grace`. An agent that is already gone is stopped.
pub fn stop(record: &AgentRecord, grace: Duration) -> Result<(), SupervisorError> {
    stop_all(std::slice::from_ref(record), grace)
        .into_iter()
        .next()
        .map_or(Ok(()), Err)
}

/// Stops many agents side by side: SIGTERM to each, one shared grace period, then SIGKILL
/// to those still there. Goes on past a failed signal; returns every failure.
pub fn stop_all(records: &[AgentRecord], grace: Duration) -> Vec<SupervisorError> {
    let mut errors = Vec::new();
    let send = |record: &AgentRecord, signal| match kill(Pid::from_raw(record.pid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(SupervisorError::Stop {
            agent: format!("{}/{}", record.node, record.name),
            pid: record.pid,
            cause: e.to_string(),
        }),
    };
    let mut running: Vec<&AgentRecord> = records.iter().filter(|r| is_alive(r)).collect();
    running.retain(|r| match send(r, Signal::SIGTERM) {
        Ok(()) => true,
        Err(e) => {
            errors.push(e);
            false
        }
    });
    let deadline = Instant::now() + grace;
    while !running.is_empty() && Instant::now() < deadline {
        running.retain(|r| {
            reap_if_child(r.pid);
            is_alive(r)
        });
        if !running.is_empty() {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    for record in running {
        if let Err(e) = send(record, Signal::SIGKILL) {
            errors.push(e);
        }
        reap_if_child(record.pid);
    }
    errors
}

/// Kills an agent at once, giving it no chance to say goodbye (a lost radio link).
pub fn kill_now(record: &AgentRecord) {
    if is_alive(record) {
        let _ = kill(Pid::from_raw(record.pid), Signal::SIGKILL);
        reap_if_child(record.pid);
    }
}

/// Kills processes outright (those left in a namespace being deleted).
pub fn kill_all(pids: &[i32]) {
    for pid in pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        reap_if_child(*pid);
    }
}

fn reap_if_child(pid: i32) {
    let _ = nix::sys::wait::waitpid(
        Pid::from_raw(pid),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    );
}

/// The start time (field 22) and state (field 3) of /proc/PID/stat.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

pub fn start_time(pid: i32) -> Option<u64> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?).map(|(_, s)| s)
}

/// The last lines of a log, on one line.
pub fn log_tail(path: &PathBuf) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    if tail.is_empty() {
        "(empty)".to_string()
    } else {
        tail.join(" | ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let stat =
            "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(stat), Some(('S', 987654)));
    }

    #[test]
    fn a_gate_lets_its_agent_go_or_calls_it_off() {
        let read_all = |end: OwnedFd| {
            let mut got = Vec::new();
            fs::File::from(end).read_to_end(&mut got).map(|_| got)
        };
        // Opened: the agent reads its byte. Dropped: it reads end of file, nothing else.
        let (gate, end) = Gate::new().unwrap();
        gate.open().unwrap();
        assert_eq!(read_all(end).unwrap(), b"G");
        let (gate, end) = Gate::new().unwrap();
        // Above the descriptors a child's are moved to (3, 4), so a move never overwrites it.
        assert!(end.as_raw_fd() >= 10, "{}", end.as_raw_fd());
        drop(gate);
        assert_eq!(read_all(end).unwrap(), b"");
    }

    #[test]
    fn waiting_at_a_gate_ends_when_it_opens_or_is_called_off() {
        let (gate, end) = Gate::new().unwrap();
        gate.open().unwrap();
        assert!(wait_open(end).is_ok());
        let (gate, end) = Gate::new().unwrap();
        drop(gate);
        let e = wait_open(end).unwrap_err();
        assert!(e.to_string().contains("called off"), "{e}");
    }
}
