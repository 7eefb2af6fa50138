//! Terminals coming and going: `attach` gives a terminal a namespace with a link into a
//! visited network's cell bridge and starts its agent, which attaches over the cell (the
//! attach succeeds when the agent reports ready); `detach` lets the agent detach, then
//! removes the terminal. Attaching a terminal that is attached elsewhere moves it: the old
//! radio link is simply lost, and its home cancels the old registration.

use std::os::unix::fs::DirBuilderExt;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::state::{LabLock, LabState, Phase, TerminalRecord};
use super::{etc, io_err, running_list, LabError, STOP_GRACE};
use crate::contract::configs::{hex, TerminalConfig};
use crate::contract::published::{write_cell_link, TerminalState};
use crate::contract::LabDir;
use crate::json_file;
use crate::kernel::executor;
use crate::kernel::netlink::NetlinkKernel;
use crate::plan::{Plan, Step, Sysctl, LOOPBACK_INDEX};
use crate::supervisor::enter::View;
use crate::supervisor::AgentRecord;
use crate::supervisor::{self, AgentSpec, SupervisorError};
use crate::topology::{Role, Service, Topology};

/// How long a terminal's agent has to complete its attach.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    #[error("lab {lab} has no subscriber {terminal} (subscribers: {known})")]
    UnknownTerminal {
        lab: String,
        terminal: String,
        known: String,
    },
    #[error("lab {lab}: {why}")]
    NoVisited { lab: String, why: String },
    #[error("{terminal}: attach at {visited} refused: {why}")]
    Refused {
        terminal: String,
        visited: String,
        why: String,
    },
    #[error("lab {lab}: {terminal} is not attached")]
    NotAttached { lab: String, terminal: String },
    #[error("{terminal}: {cause}")]
    Agent {
        terminal: String,
        cause: SupervisorError,
    },
    #[error("{terminal}: {cause}; nothing of it was left")]
    Kernel {
        terminal: String,
        cause: crate::kernel::executor::ExecError,
    },
    #[error("{0}")]
    Lab(Box<LabError>),
}

impl From<LabError> for TerminalError {
    fn from(e: LabError) -> Self {
        TerminalError::Lab(Box::new(e))
    }
}

/// What an attach achieved.
pub struct Attached {
    pub terminal: String,
    pub visited: String,
    pub namespace: String,
    pub agent: AgentRecord,
    pub address: Option<std::net::Ipv4Addr>,
    /// The fixed host the name was checked from, and how long it took to resolve.
    pub resolvable: Option<(String, Duration)>,
    pub imsi: String,
    /// The VLR's registration of it (host name and MSISDN from its home).
    pub registration: Option<crate::contract::published::AttachedTerminal>,
}

/// How long the home DNS may take to hold the new address.
const HOME_DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// Polls `query` until it returns `address`, or `limit` passes.
fn poll(
    limit: Duration,
    address: std::net::Ipv4Addr,
    query: impl Fn() -> std::io::Result<Vec<std::net::Ipv4Addr>>,
) -> bool {
    let started = std::time::Instant::now();
    loop {
        if query().is_ok_and(|found| found.contains(&address)) {
            return true;
        }
        if started.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until `name` resolves to `address` from the lab's first fixed host through the
/// lab's resolver. The home DNS (which owns the name) is asked first, directly, so that
/// asking too early never leaves a negative answer in the resolver's cache; the resolver
/// may still answer from its cache for up to the record's TTL (a terminal that moved).
fn wait_resolvable(
    topology: &Topology,
    name: &str,
    address: std::net::Ipv4Addr,
) -> Result<Option<(String, Duration)>, String> {
    let (Some(host), Some(resolver)) = (
        topology.nodes.iter().find(|n| n.role == Role::Host),
        topology.resolver(),
    ) else {
        return Ok(None);
    };
    let namespace = topology.namespace(&host.name);
    let zone = topology
        .zones
        .iter()
        .filter(|z| name.ends_with(&format!(".{}", z.name)))
        .max_by_key(|z| z.name.len());
    let started = std::time::Instant::now();
    if let Some((server, _)) = zone.and_then(|z| topology.dns_of(&z.server)) {
        if !poll(HOME_DNS_TIMEOUT, address, || {
            crate::dns::lookup::query_a(&namespace, server, name, false)
        }) {
            return Err(format!(
                "the home DNS did not hold {name} → {address} within {HOME_DNS_TIMEOUT:?}"
            ));
        }
    }
    let cache_bound =
        Duration::from_secs(zone.map(|z| z.ttl.max(z.negative_ttl)).unwrap_or(10) as u64 + 2);
    if !poll(cache_bound, address, || {
        crate::dns::lookup::query_a(&namespace, resolver, name, true)
    }) {
        return Err(format!(
            "{name} did not resolve to {address} from {} within {cache_bound:?}",
            host.name
        ));
    }
    Ok(Some((host.name.clone(), started.elapsed())))
}

fn load(lab: &str) -> Result<(LabState, Topology), LabError> {
    let state = LabState::load(lab)
        .map_err(io_err(lab, "read state file"))?
        .filter(|s| s.phase == Phase::Running)
        .ok_or_else(|| LabError::NotFound {
            lab: lab.to_string(),
            running: running_list(),
        })?;
    let path = LabDir::of(lab).topology();
    let text = std::fs::read_to_string(&path).map_err(io_err(lab, "read the lab's topology"))?;
    let mut topology = Topology::parse(&text, &path.display().to_string()).map_err(|e| {
        io_err(lab, "parse the lab's topology")(std::io::Error::other(e.to_string()))
    })?;
    topology.name = lab.to_string();
    Ok((state, topology))
}

/// Removes a terminal's agent, link, namespace and files from the kernel and the state.
/// `graceful`: SIGTERM first (the agent detaches); otherwise the radio link just drops.
async fn remove(state: &mut LabState, topology: &Topology, terminal: &str, graceful: bool) {
    if let Some(i) = state.agents.iter().position(|a| a.node == terminal) {
        let agent = state.agents.remove(i);
        if graceful {
            let _ = supervisor::stop(&agent, STOP_GRACE);
        } else {
            supervisor::kill_now(&agent);
        }
    }
    if let Some(i) = state.terminals.iter().position(|t| t.name == terminal) {
        let record = state.terminals.remove(i);
        if let Some(s) = topology.subscribers.iter().find(|s| s.name == terminal) {
            let link = LabDir::of(&state.lab).vlr_cell_link(&record.visited, &s.imsi);
            if let Err(e) = std::fs::remove_file(&link) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("{terminal}: cannot remove {}: {e}", link.display());
                }
            }
        }
        // The cell end goes first, synchronously: a deleted namespace takes its links down
        // only later, and the next attach of this terminal needs the name free.
        if let Some(bridge) = cell_bridge(topology, &record.visited) {
            if let Ok(mut kernel) = NetlinkKernel::new(super::state::ledger(&state.lab)) {
                let port = format!("{bridge}-{terminal}");
                if let Err(e) = kernel
                    .delete_link_named(&topology.namespace(&record.visited), &port)
                    .await
                {
                    tracing::warn!("{terminal}: cannot delete {port}: {e}");
                }
            }
        }
        let mut report = super::TeardownReport::default();
        super::remove_namespaces(
            &state.lab,
            &[record.namespace.clone()].into_iter().collect(),
            &mut report,
        );
        for problem in report.errors.iter().chain(&report.left_alone) {
            tracing::warn!("{terminal}: {problem}");
        }
        state.namespaces.retain(|n| n != &record.namespace);
    }
}

/// The link-layer address of a terminal's `eth0`, as the kernel has it.
async fn link_address(kernel: &mut NetlinkKernel, namespace: &str) -> std::io::Result<[u8; 6]> {
    kernel
        .interfaces(namespace)
        .await?
        .into_iter()
        .find(|i| i.name == "eth0")
        .and_then(|i| i.mac)
        .ok_or_else(|| std::io::Error::other(format!("{namespace} has no eth0 with an address")))
}

/// The cell bridge of a visited network: its bridge with an address pool, else its first.
fn cell_bridge(topology: &Topology, visited: &str) -> Option<String> {
    let node = topology.node(visited)?;
    node.bridges
        .iter()
        .find(|b| b.pool.is_some())
        .or(node.bridges.first())
        .map(|b| b.name.clone())
}

pub async fn attach(
    lab: &str,
    terminal: &str,
    at: Option<&str>,
    dhcp_client: &str,
) -> Result<Attached, TerminalError> {
    let lock = LabLock::take(lab).map_err(io_err(lab, "lock the lab"))?;
    let (mut state, topology) = load(lab)?;
    let Some(subscriber) = topology.subscribers.iter().find(|s| s.name == terminal) else {
        let known: Vec<&str> = topology
            .subscribers
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        return Err(TerminalError::UnknownTerminal {
            lab: lab.into(),
            terminal: terminal.into(),
            known: known.join(", "),
        });
    };
    let visited_nodes: Vec<&str> = topology
        .nodes
        .iter()
        .filter(|n| n.role == Role::Visited && n.services.contains(&Service::Vlr))
        .map(|n| n.name.as_str())
        .collect();
    let visited = match (at, visited_nodes.as_slice()) {
        (Some(v), _) if visited_nodes.contains(&v) => v.to_string(),
        (Some(v), _) => {
            return Err(TerminalError::NoVisited {
                lab: lab.into(),
                why: format!(
                    "{v} is not a visited network with a VLR (those are: {})",
                    visited_nodes.join(", ")
                ),
            })
        }
        (None, [one]) => one.to_string(),
        (None, []) => {
            return Err(TerminalError::NoVisited {
                lab: lab.into(),
                why: "the lab has no visited network with a VLR".into(),
            })
        }
        (None, many) => {
            return Err(TerminalError::NoVisited {
                lab: lab.into(),
                why: format!(
                    "several visited networks ({}); name one with --at",
                    many.join(", ")
                ),
            })
        }
    };
    let bridge = cell_bridge(&topology, &visited).ok_or_else(|| TerminalError::NoVisited {
        lab: lab.into(),
        why: format!("{visited} has no cell bridge"),
    })?;
    let port = format!("{bridge}-{terminal}");
    if port.len() > crate::topology::MAX_IFNAME {
        return Err(TerminalError::NoVisited {
            lab: lab.into(),
            why: format!(
                "the cell port name {port} is longer than 15 bytes; use a shorter terminal name"
            ),
        });
    }

    // A terminal attached elsewhere moves: its old radio link is lost without a detach.
    remove(&mut state, &topology, terminal, false).await;
    state.save().map_err(io_err(lab, "write state file"))?;

    let namespace = topology.namespace(terminal);
    let visited_ns = topology.namespace(&visited);
    let mut kernel =
        NetlinkKernel::new(super::state::ledger(lab)).map_err(io_err(lab, "prepare /run/netns"))?;
    let interfaces = kernel
        .interfaces(&visited_ns)
        .await
        .map_err(io_err(lab, format!("read {visited_ns}")))?;
    let master = interfaces
        .iter()
        .find(|i| i.name == bridge)
        .map(|i| i.index)
        .ok_or_else(|| TerminalError::NoVisited {
            lab: lab.into(),
            why: format!("{visited_ns} has no bridge {bridge}"),
        })?;
    let index = interfaces
        .iter()
        .map(|i| i.index)
        .max()
        .unwrap_or(LOOPBACK_INDEX)
        + 1;
    let plan = Plan {
        lab: lab.to_string(),
        steps: vec![
            Step::CreateNamespace {
                namespace: namespace.clone(),
                sysctls: vec![
                    Sysctl {
                        key: "net/ipv6/conf/all/disable_ipv6".into(),
                        value: "1".into(),
                    },
                    Sysctl {
                        key: "net/ipv6/conf/default/disable_ipv6".into(),
                        value: "1".into(),
                    },
                ],
            },
            Step::SetLinkUp {
                namespace: namespace.clone(),
                interface: "lo".into(),
                index: LOOPBACK_INDEX,
            },
            Step::CreateVeth {
                namespace: visited_ns.clone(),
                name: port.clone(),
                index,
                master: Some(master),
                peer_namespace: namespace.clone(),
                peer_name: "eth0".into(),
                peer_index: LOOPBACK_INDEX + 1,
            },
            // The terminal's link carries its own address only: it cannot pose as another
            // terminal on the cell.
            Step::LockPort {
                namespace: visited_ns.clone(),
                interface: port,
                index,
                peer_namespace: namespace.clone(),
                peer_index: LOOPBACK_INDEX + 1,
            },
            Step::SetLinkUp {
                namespace: namespace.clone(),
                interface: "eth0".into(),
                index: LOOPBACK_INDEX + 1,
            },
        ],
    };
    // Recorded before the kernel is touched, so a crash leaves it findable.
    state.namespaces.push(namespace.clone());
    state.terminals.push(TerminalRecord {
        name: terminal.into(),
        visited: visited.clone(),
        namespace: namespace.clone(),
    });
    state.save().map_err(io_err(lab, "write state file"))?;
    let never = AtomicBool::new(false);
    if let Err(e) = executor::apply(&mut kernel, &plan, &never).await {
        remove(&mut state, &topology, terminal, false).await;
        let _ = state.save();
        return Err(TerminalError::Kernel {
            terminal: terminal.into(),
            cause: e,
        });
    }
    let dir = LabDir::of(lab);
    // The cell's record of the link: the VLR takes this address, not the one the terminal
    // reports, as the terminal's (the port is locked to it).
    let recorded = link_address(&mut kernel, &namespace)
        .await
        .and_then(|mac| write_cell_link(&dir.vlr_cell_link(&visited, &subscriber.imsi), &mac));
    if let Err(e) = recorded {
        remove(&mut state, &topology, terminal, false).await;
        let _ = state.save();
        return Err(io_err(lab, "record the terminal's link on the cell")(e).into());
    }
    let config = TerminalConfig {
        name: terminal.into(),
        imsi: subscriber.imsi.clone(),
        k: hex(&subscriber.k),
        opc: hex(&subscriber.opc),
        claim_host_name: None,
        cell_socket: dir.cell_socket(&visited),
        state_file: dir.terminal_state(terminal),
        // Its own log: the lab's is not the device's to write (see `events::Tail`).
        events_file: dir.terminal_events(terminal),
        interface: "eth0".into(),
        dhcp: true,
        dhcp_client: dhcp_client.to_string(),
        http_port: subscriber.http_port,
    };
    let config_path = dir.terminal_config(terminal);
    let own_dir = dir.terminal_dir(terminal);
    let written = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&own_dir)
        .and_then(|_| crate::events::create(&config.events_file))
        .and_then(|_| json_file::write_private_json(&config_path, &config))
        .and_then(|_| etc::write_node(&topology, terminal));
    // The subscriber's device sees its own files (its log among them) and its cell.
    let view = View::Confined {
        grants: vec![
            own_dir,
            config
                .cell_socket
                .parent()
                .map(|p| p.to_path_buf())
                .unwrap_or_default(),
        ],
    };
    if let Err(e) = written {
        remove(&mut state, &topology, terminal, false).await;
        let _ = state.save();
        return Err(io_err(lab, "write the terminal's files")(e).into());
    }
    // The attach itself runs without the lock, so that terminals attach side by side.
    drop(lock);
    let spec = AgentSpec {
        node: terminal.into(),
        name: "terminal".into(),
        kind: "terminal".into(),
        namespace: namespace.clone(),
        args: vec!["--config".into(), config_path.display().to_string()],
        view,
    };
    let log_dir = dir.logs();
    let started = tokio::task::spawn_blocking(move || {
        supervisor::start(&spec, &log_dir, ATTACH_TIMEOUT, &never)
    })
    .await
    .map_err(|e| io_err(lab, "agent supervisor")(std::io::Error::other(e)))?;
    match started {
        Ok(agent) => {
            {
                let _lock = LabLock::take(lab).map_err(io_err(lab, "lock the lab"))?;
                let mut state = LabState::load(lab)
                    .map_err(io_err(lab, "read state file"))?
                    .unwrap_or(state);
                state.agents.push(agent.clone());
                state.save().map_err(io_err(lab, "write state file"))?;
            }
            let terminal_state = TerminalState::read(&dir.terminal_state(terminal));
            // An HLR that is not roamlab's (osmo-hlr) keeps no DNS: nothing to wait for.
            let home_keeps_dns = topology
                .node(&subscriber.home)
                .is_some_and(|h| h.external_hlr.is_none());
            let resolvable = match terminal_state.address {
                Some(address) if home_keeps_dns => {
                    let (topology, host_name) = (topology.clone(), subscriber.hostname.clone());
                    tokio::task::spawn_blocking(move || {
                        wait_resolvable(&topology, &host_name, address)
                    })
                    .await
                    .map_err(|e| io_err(lab, "wait for DNS")(std::io::Error::other(e)))?
                    .map_err(|why| TerminalError::Refused {
                        terminal: terminal.into(),
                        visited: visited.clone(),
                        why,
                    })?
                }
                _ => None,
            };
            let registration =
                crate::contract::published::read_attached(&dir.vlr_attached(&visited))
                    .into_iter()
                    .find(|r| r.imsi == subscriber.imsi);
            Ok(Attached {
                imsi: subscriber.imsi.clone(),
                registration,
                terminal: terminal.into(),
                visited,
                namespace,
                agent,
                address: terminal_state.address,
                resolvable,
            })
        }
        Err(cause) => {
            {
                let _lock = LabLock::take(lab).map_err(io_err(lab, "lock the lab"))?;
                let mut state = LabState::load(lab)
                    .map_err(io_err(lab, "read state file"))?
                    .unwrap_or(state);
                remove(&mut state, &topology, terminal, false).await;
                let _ = state.save();
            }
            match TerminalState::read(&dir.terminal_state(terminal)).refusal() {
                Some(why) => Err(TerminalError::Refused {
                    terminal: terminal.into(),
                    visited,
                    why,
                }),
                None => Err(TerminalError::Agent {
                    terminal: terminal.into(),
                    cause,
                }),
            }
        }
    }
}

pub async fn detach(lab: &str, terminal: &str) -> Result<String, TerminalError> {
    let _lock = LabLock::take(lab).map_err(io_err(lab, "lock the lab"))?;
    let (mut state, topology) = load(lab)?;
    let Some(record) = state.terminals.iter().find(|t| t.name == terminal).cloned() else {
        return Err(TerminalError::NotAttached {
            lab: lab.into(),
            terminal: terminal.into(),
        });
    };
    remove(&mut state, &topology, terminal, true).await;
    state.save().map_err(io_err(lab, "write state file"))?;
    Ok(record.visited)
}
