//! Many terminals in one process: the lab's side of a terminal host
//! (`agents::terminal_host`). A bulk attach starts one host for its terminals, records it
//! in the lab's state before any terminal attaches, tells it to start, and settles each
//! terminal as the host reports it; a detach tells the host to stop those terminals, and
//! stops the host itself with its last one.

use std::os::unix::fs::DirBuilderExt;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::state::LabState;
use super::STOP_GRACE;
use crate::contract::configs::{HostedTerminal, TerminalHostConfig};
use crate::contract::host_control::{self, Command};
use crate::contract::LabDir;
use crate::json_file;
use crate::supervisor::enter::View;
use crate::supervisor::{self, AgentRecord, AgentSpec};
use crate::topology::Topology;

/// The kind a terminal host's agent record has.
pub const HOST_KIND: &str = "terminal-host";

/// How long a host has to say it is ready (it binds its control socket, nothing more).
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether these terminals go to one host rather than an agent each: several of them, on
/// the built-in DHCP client or none (a stock client is a program of its own).
pub fn hosts(count: usize, dhcp_client: &str) -> bool {
    count > 1 && matches!(dhcp_client, "builtin" | "none")
}

/// Tells a started host to attach its terminals: the names of its terminals as each one's
/// attach ends, until all have (or the host has gone).
pub(super) async fn watch(
    lab: &str,
    host: &AgentRecord,
) -> Result<impl futures::Stream<Item = String>, String> {
    let path = LabDir::of(lab).terminal_host_control(&host.name);
    let mut control = UnixStream::connect(&path)
        .await
        .map_err(|e| format!("cannot reach its terminal host: {e}"))?;
    control
        .write_all(Command::Start.line().as_bytes())
        .await
        .map_err(|e| format!("cannot start its terminal host: {e}"))?;
    let lines = futures::stream::unfold(BufReader::new(control).lines(), |mut lines| async {
        match lines.next_line().await {
            Ok(Some(line)) => Some((line, lines)),
            _ => None,
        }
    });
    Ok(lines
        .take_while(|line| futures::future::ready(line != host_control::END))
        .filter_map(|line| {
            let name = line
                .strip_prefix(host_control::SETTLED)
                .map(|n| n.trim().to_string());
            futures::future::ready(name)
        }))
}

/// Writes a host's config, starts it, and records it in the lab's `state` (the caller holds
/// the lab's lock) before it is told to start; its terminals' records name it.
pub(super) fn start(
    lab: &str,
    topology: &Topology,
    visited: &str,
    state: &mut LabState,
    terminals: Vec<HostedTerminal>,
    parallel: usize,
) -> Result<AgentRecord, String> {
    let dir = LabDir::of(lab);
    let name = (1..)
        .map(|n| format!("terminals-{n}"))
        .find(|n| !state.agents.iter().any(|a| &a.name == n))
        .expect("a free name");
    let own = dir.terminal_host_dir(&name);
    let names: std::collections::HashSet<String> =
        terminals.iter().map(|t| t.config.name.clone()).collect();
    let config = TerminalHostConfig {
        name: name.clone(),
        control_socket: dir.terminal_host_control(&name),
        parallel,
        terminals,
    };
    let made = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&own)
        .and_then(|()| json_file::write_private_json(&dir.terminal_host_config(&name), &config));
    made.map_err(|e| format!("cannot write {}: {e}", own.display()))?;
    let cell = dir
        .cell_socket(visited)
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    // The lab's own agent, in the visited network's namespace (its terminals' sockets are
    // each opened in the terminal's own): it sees its terminals' files, the cell, and the
    // lab's event log, which it writes for them.
    let spec = AgentSpec {
        node: visited.to_string(),
        name: name.clone(),
        kind: HOST_KIND.into(),
        namespace: topology.namespace(visited),
        args: vec![
            "--config".into(),
            dir.terminal_host_config(&name).display().to_string(),
        ],
        view: View::Agent {
            grants: vec![dir.terminals(), cell, own, dir.events()],
        },
    };
    let record = supervisor::start(&spec, &dir.logs(), READY_TIMEOUT, &AtomicBool::new(false))
        .map_err(|e| e.to_string())?;
    for t in &mut state.terminals {
        if names.contains(&t.name) {
            t.host = Some(name.clone());
        }
    }
    state.agents.push(record.clone());
    if let Err(e) = state.save() {
        supervisor::kill_now(&record);
        return Err(format!("cannot write the lab's state: {e}"));
    }
    Ok(record)
}

/// Ends hosted terminals: for each host, its `terminals` are stopped (`graceful`: each
/// detaches) or dropped; a host left with none of the lab's terminals is stopped itself
/// and its record taken out of `state`. Goes on past failures, logging each: a host that
/// is gone took its terminals with it.
pub(super) async fn end(state: &mut LabState, hosted: &[(String, Vec<String>)], graceful: bool) {
    let dir = LabDir::of(&state.lab);
    for (host, terminals) in hosted {
        let Some(slot) = state
            .agents
            .iter()
            .position(|a| a.kind == HOST_KIND && &a.name == host)
        else {
            continue;
        };
        let others = state
            .terminals
            .iter()
            .any(|t| t.host.as_ref() == Some(host));
        if !others {
            let record = state.agents.remove(slot);
            if graceful {
                if let Err(e) = supervisor::stop(&record, STOP_GRACE * 2) {
                    tracing::warn!("{e}");
                }
            } else {
                supervisor::kill_now(&record);
            }
            let _ = std::fs::remove_dir_all(dir.terminal_host_dir(host));
            continue;
        }
        let command = if graceful {
            Command::Stop(terminals.clone())
        } else {
            Command::Drop(terminals.clone())
        };
        let path = dir.terminal_host_control(host);
        let said = tokio::time::timeout(STOP_GRACE * 2, tell(&path, &command)).await;
        match said {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("terminal host {host}: {e}"),
            Err(_) => tracing::warn!("terminal host {host} did not end {terminals:?} in time"),
        }
    }
}

/// Says `command` to a host and waits for its answer (a host that has gone is done).
async fn tell(path: &std::path::Path, command: &Command) -> std::io::Result<()> {
    let Ok(mut stream) = UnixStream::connect(path).await else {
        return Ok(());
    };
    stream.write_all(command.line().as_bytes()).await?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).await?;
    match answer.trim() {
        "" | host_control::DONE => Ok(()),
        other => Err(std::io::Error::other(other.to_string())),
    }
}
