//! A lab's lifecycle: `up` (state first, then the plan through the executor, then agents),
//! `down` and `cleanup` (one teardown that keeps going past errors and treats "not found"
//! as done), and `status`.

pub mod call;
mod configs;
pub mod etc;
mod hosted;
pub mod state;
pub mod terminals;

use std::collections::BTreeSet;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::contract::configs::{self as agent_configs, TerminalConfig};
use crate::contract::published::TerminalState;
use crate::contract::{AgentKind, LabDir};
use crate::kernel::executor::{self, ExecError};
use crate::kernel::netlink::{InterfaceInfo, NetlinkKernel};
use crate::kernel::netns;
use crate::plan::{self, Plan};
use crate::supervisor::enter::View;
use crate::supervisor::AgentRecord;
use crate::supervisor::{self, AgentSpec, SupervisorError};
use crate::topology::{Service, Topology};
use state::{LabState, Phase};

/// How long an agent gets to exit after SIGTERM.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long a restarted agent has to report ready.
const RESTART_READY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("lab {lab} is already running; stop it with `roamlab down {lab}` or pick another name with --name")]
    AlreadyRunning { lab: String },
    #[error("lab {lab} is being created by process {pid}")]
    Busy { lab: String, pid: u32 },
    #[error("lab {lab}: namespaces {namespaces} already exist and are not this lab's; remove them or pick another name with --name")]
    Orphans { lab: String, namespaces: String },
    #[error("no lab named {lab} (running labs: {running})")]
    NotFound { lab: String, running: String },
    #[error("no lab is running")]
    NoneRunning,
    #[error("several labs are running ({labs}); name one")]
    Ambiguous { labs: String },
    #[error("lab {lab}: {what}: {cause}")]
    Io {
        lab: String,
        what: String,
        cause: std::io::Error,
    },
    #[error("lab {lab}: {cause}; the lab was removed")]
    Build { lab: String, cause: ExecError },
    #[error("lab {lab}: {cause}; the lab was removed")]
    Agent { lab: String, cause: SupervisorError },
    #[error("lab {lab}: {cause}; the rest of the lab runs on")]
    Restart { lab: String, cause: SupervisorError },
    #[error("lab {lab}: {agent} hosts terminals, which a restart would not bring back; detach and attach them instead")]
    HostRestart { lab: String, agent: String },
    #[error("lab {lab} has no agent {agent} (agents: {known})")]
    NoAgent {
        lab: String,
        agent: String,
        known: String,
    },
    #[error("lab {lab}: interrupted; the lab was removed")]
    Interrupted { lab: String },
    #[error("lab {lab}: teardown left {} problem(s): {}", .errors.len(), .errors.join("; "))]
    Teardown { lab: String, errors: Vec<String> },
}

pub(crate) fn io_err(
    lab: &str,
    what: impl Into<String>,
) -> impl FnOnce(std::io::Error) -> LabError {
    let (lab, what) = (lab.to_string(), what.into());
    move |cause| LabError::Io { lab, what, cause }
}

pub struct UpOptions {
    pub topology: Topology,
    /// The topology's text, kept in the state directory for later verbs.
    pub source_text: String,
    pub origin: String,
    pub start_agents: bool,
    pub ready_timeout: Duration,
}

pub struct UpReport {
    pub plan: Plan,
    pub agents: Vec<AgentRecord>,
    /// The kind of each tunnel made, by (namespace, interface): `ipip`, or `vxlan` where
    /// the kernel has no IPIP.
    pub tunnels: Vec<(String, String, &'static str)>,
}

/// Agents the supervisor starts for a topology, in node order (a VLR retries until its HLR
/// answers, so their order does not matter).
pub fn agent_specs(topology: &Topology) -> Vec<AgentSpec> {
    let mut specs = Vec::new();
    for node in &topology.nodes {
        for service in &node.services {
            let dir = LabDir::of(&topology.name);
            let kind = match service {
                Service::Dns { .. } => Some(AgentKind::Dns),
                Service::Hlr => Some(AgentKind::Hlr),
                Service::Vlr { .. } => Some(AgentKind::Vlr),
                Service::Dhcp { .. } => Some(AgentKind::Dhcp),
                _ => None,
            };
            let config = kind.map(|k| dir.agent_config(k, &node.name));
            if let Some(config) = config {
                specs.push(AgentSpec {
                    node: node.name.clone(),
                    name: service.name().to_string(),
                    kind: service.kind().to_string(),
                    namespace: topology.namespace(&node.name),
                    args: vec!["--config".into(), config.display().to_string()],
                    view: agent_view(topology, &dir, node, service),
                });
            }
            if let Service::Echo {
                name,
                address,
                port,
                ready_after_ms,
            } = service
            {
                let ip = address
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "0.0.0.0".to_string());
                let listen = if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                };
                specs.push(AgentSpec {
                    node: node.name.clone(),
                    name: name.clone(),
                    kind: "echo".to_string(),
                    namespace: topology.namespace(&node.name),
                    args: vec![
                        "--listen".into(),
                        listen,
                        "--ready-after-ms".into(),
                        ready_after_ms.to_string(),
                    ],
                    view: View::Agent { grants: Vec::new() },
                });
            }
        }
    }
    specs
}

/// The order `up` starts agents in: a host's plain services (echo), ready before the lab's
/// own agents start side by side.
fn start_waves(specs: Vec<AgentSpec>) -> [Vec<AgentSpec>; 2] {
    let (plain, agents) = specs.into_iter().partition(|spec| spec.kind == "echo");
    [plain, agents]
}

/// What one of the lab's agents is granted of the lab's state: its own directory, the
/// sockets it serves and reaches, the key it signs updates with, the event log. Nothing of
/// other agents (the HLR's subscriber keys stay the HLR's) or of other labs.
fn agent_view(
    topology: &Topology,
    dir: &LabDir,
    node: &crate::topology::Node,
    service: &Service,
) -> View {
    let socket_dir =
        |socket: std::path::PathBuf| socket.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let name = node.name.as_str();
    let key = dir.key_file(name);
    let events = dir.events();
    let mut grants = match service {
        // Its own key, and the key of any other node one of its zones takes updates from.
        Service::Dns { .. } => {
            let mut g = vec![dir.agent_dir(AgentKind::Dns, name), key];
            let signers: std::collections::BTreeSet<&str> = topology
                .zones
                .iter()
                .filter(|z| z.server == name && z.signer() != name)
                .map(|z| z.signer())
                .collect();
            g.extend(signers.into_iter().map(|s| dir.key_file(s)));
            g
        }
        Service::Hlr => vec![
            dir.agent_dir(AgentKind::Hlr, name),
            socket_dir(dir.hlr_socket(name)),
            key,
            events,
        ],
        Service::Vlr { .. } => {
            let mut g = vec![
                dir.agent_dir(AgentKind::Vlr, name),
                socket_dir(dir.cell_socket(name)),
                socket_dir(dir.vlr_local_socket(name)),
                events,
            ];
            g.extend(
                (node.hlr_partners().into_iter())
                    .filter(|p| topology.node(p).is_some())
                    .map(|p| socket_dir(dir.hlr_socket(p))),
            );
            g
        }
        // The VLR's published list, not the VLR's directory.
        Service::Dhcp { .. } => vec![
            dir.agent_dir(AgentKind::Dhcp, name),
            socket_dir(dir.vlr_local_socket(name)),
            dir.vlr_published(name),
            key,
            events,
        ],
        _ => Vec::new(),
    };
    // A network without a DNS server has no key to grant; a DHCP server without a VLR
    // has no list to read.
    grants.retain(|g| g.exists());
    View::Agent { grants }
}

/// Builds a lab. On any failure, or when `cancel` is set, everything made so far is
/// removed before returning.
pub async fn up(opts: &UpOptions, cancel: Arc<AtomicBool>) -> Result<UpReport, LabError> {
    let lab = opts.topology.name.clone();
    let plan = plan::build(&opts.topology);
    claim(&lab, &plan.namespaces())?;
    let mut state = LabState {
        lab: lab.clone(),
        phase: Phase::Creating,
        owner_pid: std::process::id(),
        source: opts.origin.clone(),
        namespaces: plan.namespaces(),
        agents: Vec::new(),
        created_unix: state::now_unix(),
        terminals: Vec::new(),
    };
    let built = build(opts, &plan, &mut state, cancel).await;
    match built {
        Ok(tunnels) => Ok(UpReport {
            plan,
            agents: state.agents,
            tunnels,
        }),
        Err(e) => {
            // Agents, namespaces, /etc/netns files and the state directory all go.
            let _ = teardown(&lab);
            Err(e)
        }
    }
}

/// [`up`], after removing what a dead lab of the same name left behind (a live one is
/// refused by `up`): for verbs that bring up a lab of their own (demo, compare, run).
pub async fn up_over_leftovers(
    opts: &UpOptions,
    cancel: Arc<AtomicBool>,
) -> Result<UpReport, LabError> {
    let name = &opts.topology.name;
    if LabDir::of(name).path().exists() && !in_use(name) {
        cleanup(Some(name), true);
    }
    up(opts, cancel).await
}

async fn build(
    opts: &UpOptions,
    plan: &Plan,
    state: &mut LabState,
    cancel: Arc<AtomicBool>,
) -> Result<Vec<(String, String, &'static str)>, LabError> {
    let lab = state.lab.clone();
    state.save().map_err(io_err(&lab, "write state file"))?;
    // Files take as long as the kernel work on a slow disk, and nothing in the kernel
    // needs them: write them alongside, and wait for them before any agent starts.
    let files = {
        let (topology, text, dir) = (
            opts.topology.clone(),
            opts.source_text.clone(),
            LabDir::of(&lab),
        );
        std::thread::spawn(move || -> Result<(), (&'static str, std::io::Error)> {
            // Every subscriber's K and OPc: root only.
            crate::json_file::write_private(&dir.topology(), text.as_bytes())
                .map_err(|e| ("save topology", e))?;
            crate::contract::model::write(&dir, &topology)
                .map_err(|e| ("save the topology's model", e))?;
            configs::write_dns_configs(&topology, &dir)
                .map_err(|e| ("write DNS zones and keys", e))?;
            configs::write_agent_configs(&topology, &dir)
                .map_err(|e| ("write HLR and VLR configurations", e))?;
            etc::write_all(&topology).map_err(|e| ("write /etc/netns files", e))
        })
    };
    let mut kernel =
        NetlinkKernel::new(state::ledger(&lab)).map_err(io_err(&lab, "prepare /run/netns"))?;
    let applied = executor::apply(&mut kernel, plan, &cancel).await;
    let written = files
        .join()
        .unwrap_or_else(|_| Err(("write lab files", std::io::Error::other("writer panicked"))));
    applied.map_err(|source| match source {
        ExecError::Interrupted { .. } => LabError::Interrupted { lab: lab.clone() },
        cause => LabError::Build {
            lab: lab.clone(),
            cause,
        },
    })?;
    written.map_err(|(what, cause)| io_err(&lab, what)(cause))?;
    if opts.start_agents {
        // Two waves. First a host's own plain services (echo): they stand for what already
        // runs on a host, so a lab that says one holds a port finds it held. Then the lab's
        // agents, all side by side: one that needs another (a VLR its HLR, a DHCP server its
        // VLR) reconnects until it is there, so none waits for another to be ready.
        let log_dir = LabDir::of(&lab).logs();
        let mut failure = None;
        for wave in start_waves(agent_specs(&opts.topology)) {
            if failure.is_some() {
                break;
            }
            let starts = wave.into_iter().map(|spec| {
                let (timeout, cancel, log_dir) =
                    (opts.ready_timeout, cancel.clone(), log_dir.clone());
                tokio::task::spawn_blocking(move || {
                    supervisor::start(&spec, &log_dir, timeout, &cancel)
                })
            });
            for started in futures::future::join_all(starts).await {
                let started =
                    started.map_err(|e| io_err(&lab, "agent supervisor")(std::io::Error::other(e)));
                match started {
                    Ok(Ok(record)) => state.agents.push(record),
                    Ok(Err(cause)) => {
                        failure.get_or_insert(match cause {
                            SupervisorError::Cancelled { .. } => {
                                LabError::Interrupted { lab: lab.clone() }
                            }
                            cause => LabError::Agent {
                                lab: lab.clone(),
                                cause,
                            },
                        });
                    }
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
        }
        // Recorded before any failure is reported, so the rollback stops every one.
        state.save().map_err(io_err(&lab, "write state file"))?;
        if let Some(e) = failure {
            return Err(e);
        }
    }
    if cancel.load(Ordering::SeqCst) {
        return Err(LabError::Interrupted { lab });
    }
    state.phase = Phase::Running;
    state.save().map_err(io_err(&lab, "write state file"))?;
    Ok(kernel.tunnels)
}

/// Takes the lab's name: its state directory is the lock. Leftovers of a crashed `up` of
/// the same name are removed first; a live lab is refused, and so is a lab whose
/// namespaces' names are taken by namespaces it has no record of.
fn claim(lab: &str, planned: &[String]) -> Result<(), LabError> {
    state::create_run_dir().map_err(io_err(lab, "create /run/roamlab"))?;
    for _ in 0..2 {
        match state::create_private_dir(LabDir::of(lab).path()) {
            Ok(()) => {
                if let Err(e) = state::mount_lab_dir(LabDir::of(lab).path()) {
                    let _ = fs::remove_dir(LabDir::of(lab).path());
                    return Err(io_err(lab, "make its state directory")(e));
                }
                let orphans: Vec<String> = planned
                    .iter()
                    .filter(|n| netns::is_mounted(n))
                    .cloned()
                    .collect();
                if !orphans.is_empty() {
                    let _ = state::unmount_lab_dir(LabDir::of(lab).path());
                    let _ = fs::remove_dir_all(LabDir::of(lab).path());
                    return Err(LabError::Orphans {
                        lab: lab.to_string(),
                        namespaces: orphans.join(", "),
                    });
                }
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match LabState::load(lab) {
                Ok(Some(s)) if s.phase == Phase::Running => {
                    return Err(LabError::AlreadyRunning {
                        lab: lab.to_string(),
                    })
                }
                Ok(Some(s)) if pid_alive(s.owner_pid) && s.owner_pid != std::process::id() => {
                    return Err(LabError::Busy {
                        lab: lab.to_string(),
                        pid: s.owner_pid,
                    })
                }
                _ => {
                    tracing::warn!(lab, "removing what a crashed `up` of this lab left");
                    let _ = teardown(lab);
                }
            },
            Err(e) => return Err(io_err(lab, "create state directory")(e)),
        }
    }
    Err(LabError::Busy {
        lab: lab.to_string(),
        pid: 0,
    })
}

fn pid_alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// Namespaces under /run/netns that belong to `lab` by the naming rule.
fn namespaces_with_prefix(lab: &str) -> Vec<String> {
    let prefix = format!("{lab}-");
    list_names(netns::NETNS_DIR, &prefix)
}

fn list_names(dir: &str, prefix: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// What a teardown removed, what it could not, and what it left alone because the lab did
/// not make it.
#[derive(Debug, Default, Serialize)]
pub struct TeardownReport {
    pub removed: Vec<String>,
    pub errors: Vec<String>,
    pub left_alone: Vec<String>,
}

/// Whether a namespace is the lab's own, by its ledger.
enum Ownership {
    Gone,
    Ours(netns::NsIdentity),
    NotOurs,
}

fn ownership(entries: &[netns::LedgerEntry], ns: &str) -> Ownership {
    match netns::identity_of(ns) {
        Ok(None) => Ownership::Gone,
        Ok(Some(id)) if netns::Ledger::owns(entries, ns, id) => Ownership::Ours(id),
        _ => Ownership::NotOurs,
    }
}

/// Removes the namespaces of `names` that the lab made (by its ledger), with every process
/// still inside them and their /etc/netns files; anything else is reported and left alone.
pub(crate) fn remove_namespaces(lab: &str, names: &BTreeSet<String>, report: &mut TeardownReport) {
    let entries = state::ledger(lab).entries();
    let mut ours = Vec::new();
    for ns in names {
        match ownership(&entries, ns) {
            Ownership::Ours(id) => ours.push((ns.clone(), id)),
            Ownership::Gone => {
                if entries.iter().any(|e| &e.name == ns) {
                    remove_etc(lab, ns, report);
                }
                // A stale file (a crash between creating it and mounting on it).
                if netns::path_of(ns).exists() && entries.iter().any(|e| &e.name == ns) {
                    if let Err(e) = netns::delete(ns) {
                        report.errors.push(format!("namespace {ns}: {e}"));
                    }
                }
            }
            Ownership::NotOurs => report.left_alone.push(format!(
                "namespace {ns} (and its processes and /etc/netns files): lab {lab} did not make it"
            )),
        }
    }
    // Anything still running inside the lab (an `exec` left behind) goes too.
    let ids: Vec<(u64, u64)> = ours
        .iter()
        .filter_map(|(ns, _)| netns::identity(ns))
        .collect();
    let stray = netns::pids_in(&ids);
    if !stray.is_empty() {
        supervisor::kill_all(&stray);
        report.removed.push(format!(
            "{} process(es) left in the lab's namespaces",
            stray.len()
        ));
    }
    for (ns, _) in &ours {
        match netns::delete(ns) {
            Ok(()) => report.removed.push(format!("namespace {ns}")),
            Err(e) => report.errors.push(format!("namespace {ns}: {e}")),
        }
        remove_etc(lab, ns, report);
    }
}

fn remove_etc(lab: &str, ns: &str, report: &mut TeardownReport) {
    if let Err(e) = etc::remove(lab, ns) {
        report
            .errors
            .push(format!("{}: {e}", etc::dir_of(ns).display()));
    }
}

/// Removes everything of `lab` that exists and that the lab made: agents, processes in its
/// namespaces, the namespaces, /etc/netns files, the state directory. Keeps going past
/// errors. A namespace that merely carries the lab's prefix is left alone and reported.
pub fn teardown(lab: &str) -> TeardownReport {
    let mut report = TeardownReport::default();
    let state = match LabState::load(lab) {
        Ok(s) => s,
        Err(e) => {
            report.errors.push(format!(
                "state file unreadable, finding objects by its ledger: {e}"
            ));
            None
        }
    };
    let mut namespaces: BTreeSet<String> = namespaces_with_prefix(lab).into_iter().collect();
    if let Some(state) = &state {
        for agent in &state.agents {
            match supervisor::stop(agent, STOP_GRACE) {
                Ok(()) => report.removed.push(format!(
                    "agent {}/{} (pid {})",
                    agent.node, agent.name, agent.pid
                )),
                Err(e) => report.errors.push(e.to_string()),
            }
        }
        namespaces.extend(state.namespaces.iter().cloned());
    }
    // /etc/netns files of a namespace that is gone but was the lab's.
    namespaces.extend(state::ledger(lab).entries().into_iter().map(|e| e.name));
    remove_namespaces(lab, &namespaces, &mut report);
    let dir = LabDir::of(lab).path().to_path_buf();
    // The ledger is the only proof of what the lab made: keep it while a namespace of the
    // lab's could not be removed.
    if dir.exists() && report.errors.iter().all(|e| !e.starts_with("namespace ")) {
        if let Err(e) = state::unmount_lab_dir(&dir) {
            report.errors.push(e.to_string());
        }
        match fs::remove_dir_all(&dir) {
            Ok(()) => report
                .removed
                .push(format!("state directory {}", dir.display())),
            Err(e) => report.errors.push(format!("{}: {e}", dir.display())),
        }
    }
    report
}

/// Stops one agent of a running lab and starts it again from the same spec, waiting until
/// it is ready; the state file records the new process.
pub fn restart_agent(lab: &str, agent: &str) -> Result<AgentRecord, LabError> {
    let _lock = lock_lab(lab)?;
    let mut state = lab_state(lab)?;
    let slot = agent_slot(&state, lab, agent)?;
    let old = state.agents[slot].clone();
    if old.kind == hosted::HOST_KIND {
        return Err(LabError::HostRestart {
            lab: lab.to_string(),
            agent: agent.to_string(),
        });
    }
    let failed = |cause| LabError::Restart {
        lab: lab.to_string(),
        cause,
    };
    supervisor::stop(&old, STOP_GRACE).map_err(failed)?;
    let never = AtomicBool::new(false);
    let record = supervisor::start(
        &AgentSpec::of(&old),
        &LabDir::of(lab).logs(),
        RESTART_READY_TIMEOUT,
        &never,
    )
    .map_err(failed)?;
    state.agents[slot] = record.clone();
    state.save().map_err(io_err(lab, "write state file"))?;
    Ok(record)
}

/// Kills one agent of a running lab with SIGKILL, as a crash would, and waits until it is
/// gone; the state file keeps its record, so `restart` or `down` find it.
pub fn kill_agent(lab: &str, agent: &str) -> Result<(), LabError> {
    let state = lab_state(lab)?;
    let record = &state.agents[agent_slot(&state, lab, agent)?];
    supervisor::kill_now(record);
    let deadline = std::time::Instant::now() + STOP_GRACE;
    while supervisor::is_alive(record) {
        if std::time::Instant::now() > deadline {
            return Err(io_err(lab, "kill agent")(std::io::Error::other(format!(
                "{agent} (pid {}) lives on after SIGKILL",
                record.pid
            ))));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// The state of lab `lab`, or that there is no such lab (and which ones there are).
fn lab_state(lab: &str) -> Result<LabState, LabError> {
    LabState::load(lab)
        .map_err(io_err(lab, "read state file"))?
        .ok_or_else(|| LabError::NotFound {
            lab: lab.to_string(),
            running: running_list(),
        })
}

/// Where agent `node/name` is in the lab's state.
fn agent_slot(state: &LabState, lab: &str, agent: &str) -> Result<usize, LabError> {
    let name = |a: &AgentRecord| format!("{}/{}", a.node, a.name);
    state
        .agents
        .iter()
        .position(|a| name(a) == agent)
        .ok_or_else(|| LabError::NoAgent {
            lab: lab.to_string(),
            agent: agent.to_string(),
            known: state.agents.iter().map(name).collect::<Vec<_>>().join(", "),
        })
}

/// Stops a lab. Everything that can be removed is, even when some parts fail.
pub fn down(lab: &str) -> Result<TeardownReport, LabError> {
    if !LabDir::of(lab).path().exists() && namespaces_with_prefix(lab).is_empty() {
        return Err(LabError::NotFound {
            lab: lab.to_string(),
            running: running_list(),
        });
    }
    let report = teardown(lab);
    if report.errors.is_empty() {
        Ok(report)
    } else {
        Err(LabError::Teardown {
            lab: lab.to_string(),
            errors: report.errors,
        })
    }
}

/// Takes a running lab's lock; a lab with no state directory is no lab of that name.
pub(crate) fn lock_lab(lab: &str) -> Result<state::LabLock, LabError> {
    state::LabLock::take(lab).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LabError::NotFound {
            lab: lab.to_string(),
            running: running_list(),
        },
        _ => io_err(lab, "lock the lab")(e),
    })
}

pub(crate) fn running_list() -> String {
    let labs = state::known_labs();
    if labs.is_empty() {
        "none".to_string()
    } else {
        labs.join(", ")
    }
}

/// The lab a verb acts on: the one named, or the only one there is.
pub fn resolve(name: Option<&str>) -> Result<String, LabError> {
    if let Some(name) = name {
        return Ok(name.to_string());
    }
    let labs = state::known_labs();
    match labs.as_slice() {
        [] => Err(LabError::NoneRunning),
        [one] => Ok(one.clone()),
        _ => Err(LabError::Ambiguous {
            labs: labs.join(", "),
        }),
    }
}

/// Whether a lab is in use: up and whole (running, every namespace mounted), or still
/// being built by a live `up`.
pub fn in_use(lab: &str) -> bool {
    match LabState::load(lab) {
        Ok(Some(s)) => match s.phase {
            Phase::Running => s.namespaces.iter().all(|n| netns::is_mounted(n)),
            Phase::Creating => pid_alive(s.owner_pid),
        },
        _ => false,
    }
}

/// Removes what crashed or killed labs left; labs in use stay unless `all` is set or the
/// lab is named in `only`.
pub fn cleanup(only: Option<&str>, all: bool) -> TeardownReport {
    let mut report = TeardownReport::default();
    let labs: Vec<String> = match only {
        Some(lab) => vec![lab.to_string()],
        None => state::known_labs(),
    };
    for lab in labs {
        if only.is_none() && !all && in_use(&lab) {
            continue;
        }
        let one = teardown(&lab);
        report.removed.extend(one.removed);
        report.errors.extend(one.errors);
        report.left_alone.extend(one.left_alone);
    }
    report
}

#[derive(Debug, Serialize)]
pub struct LabStatus {
    pub lab: String,
    pub phase: Phase,
    pub source: String,
    pub state_dir: String,
    pub nodes: Vec<NodeStatus>,
    pub agents: Vec<AgentStatus>,
    /// TSIG key files (BIND syntax, for `nsupdate -k`), one per DNS server node.
    pub tsig_keys: Vec<String>,
    /// Each VLR's list of attached terminals.
    pub attached:
        std::collections::BTreeMap<String, Vec<crate::contract::published::AttachedTerminal>>,
    pub terminals: Vec<TerminalStatus>,
}

/// A terminal `attach` started, as it is now.
#[derive(Debug, Serialize)]
pub struct TerminalStatus {
    #[serde(flatten)]
    pub record: state::TerminalRecord,
    /// Its agent runs and the network has it registered: listed by its VLR, and not told
    /// it was detached. A terminal the network dropped stays listed here, registered false.
    pub registered: bool,
    pub address: Option<std::net::Ipv4Addr>,
}

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub node: String,
    pub namespace: String,
    pub exists: bool,
    pub interfaces: Vec<InterfaceInfo>,
}

#[derive(Debug, Serialize)]
pub struct AgentStatus {
    pub node: String,
    pub name: String,
    pub kind: String,
    pub pid: i32,
    pub alive: bool,
    pub log: String,
}

/// What exists of a lab right now, read from the kernel and /proc.
pub async fn status(lab: &str) -> Result<LabStatus, LabError> {
    let state = lab_state(lab)?;
    let mut kernel = NetlinkKernel::default();
    let mut nodes = Vec::new();
    for ns in &state.namespaces {
        let exists = netns::is_mounted(ns);
        let interfaces = if exists {
            kernel
                .interfaces(ns)
                .await
                .map_err(io_err(lab, format!("read {ns}")))?
        } else {
            Vec::new()
        };
        nodes.push(NodeStatus {
            node: ns
                .strip_prefix(&format!("{lab}-"))
                .unwrap_or(ns)
                .to_string(),
            namespace: ns.clone(),
            exists,
            interfaces,
        });
    }
    let agents = state
        .agents
        .iter()
        .map(|a| AgentStatus {
            node: a.node.clone(),
            name: a.name.clone(),
            kind: a.kind.clone(),
            pid: a.pid,
            alive: supervisor::is_alive(a),
            log: a.log.display().to_string(),
        })
        .collect();
    let dir = LabDir::of(lab);
    let keys_dir = dir.keys();
    let mut tsig_keys: Vec<String> = fs::read_dir(&keys_dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    tsig_keys.sort();
    let mut attached = std::collections::BTreeMap::new();
    for entry in fs::read_dir(dir.path()).into_iter().flatten().flatten() {
        let config = entry.path().join("config.json");
        if let Some(visited) = LabDir::node_of_config(&config, AgentKind::Vlr) {
            let list = crate::contract::published::read_attached(&dir.vlr_attached(&visited));
            attached.insert(visited, list);
        }
    }
    let terminals = state
        .terminals
        .iter()
        .map(|t| {
            let own = TerminalState::read(&dir.terminal_state(&t.name));
            // A record of an older roamlab may lack it: its own agent's config has it.
            let imsi = Some(t.imsi.clone())
                .filter(|i| !i.is_empty())
                .or_else(|| {
                    agent_configs::load::<TerminalConfig>(&dir.terminal_config(&t.name))
                        .ok()
                        .map(|c| c.imsi)
                })
                .unwrap_or_default();
            // Its own agent, or the host it shares.
            let alive = state.agents.iter().any(|a| {
                let runs_it = match &t.host {
                    Some(host) => a.kind == hosted::HOST_KIND && &a.name == host,
                    None => a.node == t.name,
                };
                runs_it && supervisor::is_alive(a)
            });
            let listed = attached
                .get(&t.visited)
                .is_some_and(|list| list.iter().any(|a| a.imsi == imsi));
            TerminalStatus {
                record: t.clone(),
                registered: alive && own.registered && listed,
                address: own.address.filter(|_| alive),
            }
        })
        .collect();
    Ok(LabStatus {
        attached,
        terminals,
        tsig_keys,
        lab: lab.to_string(),
        phase: state.phase,
        source: state.source,
        state_dir: dir.path().display().to_string(),
        nodes,
        agents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lab that says a host's service holds a port finds it held: the DNS agent that
    /// would take the same port starts only once the squatter is ready (else `up` races).
    #[test]
    fn a_hosts_plain_services_start_before_the_labs_agents() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/labs/dns-clash.yaml");
        let topology = Topology::load(&path).unwrap();
        let [plain, agents] = start_waves(agent_specs(&topology));
        let names = |wave: &[AgentSpec]| -> Vec<String> {
            wave.iter()
                .map(|s| format!("{}/{}", s.node, s.name))
                .collect()
        };
        assert_eq!(names(&plain), ["home/squatter"]);
        assert!(names(&agents).contains(&"home/dns".to_string()));
        assert!(agents.iter().all(|s| s.kind != "echo"));
    }
}
