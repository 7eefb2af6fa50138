//! `roamlab exec`: a command inside a node. By default it runs as a process of the node,
//! which the lab does not trust: confined (no lab state in view, a PID namespace of its
//! own, no capability that undoes that; see `supervisor::enter`). `--privileged` gives the
//! operator the full view instead, as `docker exec --privileged` does.
//!
//! The command is the first process of its PID namespace, so its children end with it.
//! Signals to `roamlab exec` are passed on; since the first process of a namespace ignores
//! a signal it has no handler for, one that is still running shortly after SIGINT, SIGTERM,
//! SIGHUP or SIGQUIT is killed, as that signal would have ended an ordinary process.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::supervisor::enter::{self, NodeEntry, View};

/// How long a command has to act on a passed-on signal before it is killed.
const SIGNAL_GRACE: Duration = Duration::from_millis(300);

/// Runs `command` in `namespace` (node `node`) and returns its exit status as a code.
pub fn run(node: &str, namespace: &str, command: &[String], privileged: bool) -> Result<i32> {
    let view = if privileged {
        View::Full
    } else {
        View::Confined { grants: Vec::new() }
    };
    let entry =
        NodeEntry::prepare_with(namespace, &view).with_context(|| format!("enter node {node}"))?;
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]);
    entry.apply_to(&mut cmd);
    let program = command[0].clone();
    // A thread of its own makes the PID namespace, so that nothing else this process
    // starts later lands in it.
    let child = std::thread::spawn(move || -> std::io::Result<std::process::Child> {
        if !privileged {
            enter::new_pid_namespace_for_children()?;
        }
        cmd.spawn()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("exec thread panicked"))?
    .with_context(|| format!("node {node}: cannot run {program}"))?;
    wait_passing_signals(child)
}

fn wait_passing_signals(mut child: std::process::Child) -> Result<i32> {
    use tokio::signal::unix::{signal, SignalKind};
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status = runtime.block_on(async move {
        let mut streams = Vec::new();
        for (kind, sig) in [
            (SignalKind::interrupt(), nix::sys::signal::Signal::SIGINT),
            (SignalKind::terminate(), nix::sys::signal::Signal::SIGTERM),
            (SignalKind::hangup(), nix::sys::signal::Signal::SIGHUP),
            (SignalKind::quit(), nix::sys::signal::Signal::SIGQUIT),
        ] {
            streams.push((signal(kind)?, sig));
        }
        let mut waiter = tokio::task::spawn_blocking(move || child.wait());
        loop {
            let received = async {
                let futures = streams.iter_mut().map(|(s, sig)| {
                    let sig = *sig;
                    Box::pin(async move {
                        s.recv().await;
                        sig
                    })
                });
                futures::future::select_all(futures).await.0
            };
            tokio::select! {
                done = &mut waiter => return done.map_err(std::io::Error::other)?,
                sig = received => {
                    let _ = nix::sys::signal::kill(pid, sig);
                    tokio::select! {
                        done = &mut waiter => return done.map_err(std::io::Error::other)?,
                        _ = tokio::time::sleep(SIGNAL_GRACE) => {
                            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                        }
                    }
                }
            }
        }
    })?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// A command to run inside a node of a lab with the operator's view (as `--privileged`).
fn command_in(lab: &str, node: &str, argv: &[&str]) -> std::io::Result<Command> {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    NodeEntry::prepare(&crate::topology::namespace_name(lab, node))?.apply_to(&mut cmd);
    Ok(cmd)
}

/// Runs a command inside a node of a lab with the operator's view and returns whether it
/// succeeded and what it printed (standard output, then error): for verbs that run real
/// tools in a lab (demo, scenarios, compare).
pub(super) fn output_in(lab: &str, node: &str, argv: &[&str]) -> (bool, String) {
    let mut cmd = match command_in(lab, node, argv) {
        Ok(cmd) => cmd,
        Err(e) => return (false, format!("cannot enter {node}: {e}")),
    };
    match cmd.output() {
        Ok(out) => {
            let mut text = String::from_utf8_lossy(&out.stdout).to_string();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            (out.status.success(), text)
        }
        Err(e) => (false, format!("cannot run {}: {e}", argv[0])),
    }
}

/// Runs a command inside a node of a lab as `output_in` does, its output discarded, and
/// returns its exit code.
pub(super) fn exit_code_in(lab: &str, node: &str, argv: &[&str]) -> std::io::Result<i32> {
    let status = command_in(lab, node, argv)?
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    Ok(status.code().unwrap_or(-1))
}
