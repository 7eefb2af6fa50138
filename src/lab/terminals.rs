//! Terminals coming and going: `attach` gives a terminal a namespace with a link into a
//! visited network's cell bridge and starts its agent, which attaches over the cell (the
//! attach succeeds when the agent reports ready); `detach` lets the agent detach, then
//! removes the terminal. Attaching a terminal that is attached elsewhere moves it: the old
//! radio link is simply lost, and its home cancels the old registration.
//!
//! Both verbs take many terminals at once: the lab is locked and its state written once
//! for all of them, their agents start and stop side by side, and each terminal's outcome
//! is reported on its own, so one failure neither hides nor stops the others.

use std::os::unix::fs::DirBuilderExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;

use super::state::{LabLock, LabState, Phase, TerminalRecord};
use super::{etc, hosted, io_err, lock_lab, running_list, LabError, STOP_GRACE};
use crate::contract::configs::{hex, HostedTerminal, TerminalConfig};
use crate::contract::published::{write_cell_link, TerminalState};
use crate::contract::LabDir;
use crate::json_file;
use crate::kernel::executor;
use crate::kernel::netlink::NetlinkKernel;
use crate::plan::{Plan, Step, Sysctl, LOOPBACK_INDEX};
use crate::supervisor::enter::View;
use crate::supervisor::AgentRecord;
use crate::supervisor::{self, AgentSpec, SupervisorError};
use crate::topology::{Role, Subscriber, Topology};

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
    #[error("lab {lab} has no {what} matching {pattern}")]
    NoMatch {
        lab: String,
        pattern: String,
        what: String,
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
    /// Its own host name (the subscriber's): the one checked.
    pub host_name: String,
    /// How the visited network serves it (with `no-update`, its home DNS is not told).
    pub mode: crate::topology::Mode,
    pub imsi: String,
    /// The VLR's registration of it (host name and MSISDN from its home).
    pub registration: Option<crate::contract::published::AttachedTerminal>,
}

/// How long the home DNS may take to hold the new address.
const HOME_DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a name's check first waits after a miss: a terminal attached on its own asks
/// again soon (its name is usually there within a millisecond); terminals of a bulk attach
/// later, as a thousand of them polling must not load the servers they wait for.
#[derive(Debug, Clone, Copy)]
enum Eagerness {
    One,
    Many,
}

impl Eagerness {
    fn first_wait(self) -> Duration {
        match self {
            Eagerness::One => Duration::from_micros(100),
            Eagerness::Many => Duration::from_micros(500),
        }
    }
}

/// Polls `query` until it returns `address`, or `limit` passes: at once, then after
/// `first`, waiting twice as long each time up to 16 ms.
fn poll(
    limit: Duration,
    first: Duration,
    address: std::net::Ipv4Addr,
    query: impl Fn() -> std::io::Result<Vec<std::net::Ipv4Addr>>,
) -> bool {
    let started = std::time::Instant::now();
    let mut wait = first;
    loop {
        if query().is_ok_and(|found| found.contains(&address)) {
            return true;
        }
        if started.elapsed() > limit {
            return false;
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_millis(16));
    }
}

/// Waits until `name` resolves to `address` from the lab's first fixed host through the
/// lab's resolver. The home DNS (which owns the name) is asked first, directly, so that
/// asking too early never leaves a negative answer in the resolver's cache; the resolver
/// may still answer from its cache for up to the record's TTL (a terminal that moved).
/// Both are asked from one thread inside the host's namespace, which takes the address
/// from `address` once it is there (none: nothing to ask); the time is counted from then.
fn wait_resolvable(
    topology: &Topology,
    name: &str,
    ttl: Option<u32>,
    eagerness: Eagerness,
    address: impl FnOnce() -> Option<std::net::Ipv4Addr> + Send + 'static,
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
    let home = zone
        .and_then(|z| topology.dns_of(&z.server))
        .map(|(server, _)| server);
    // The subscriber's own TTL, when it has one, is what the resolver may cache.
    let cache_bound = Duration::from_secs(
        zone.map(|z| ttl.unwrap_or(z.ttl).max(z.negative_ttl))
            .unwrap_or(10) as u64
            + 2,
    );
    let (name, host_name) = (name.to_string(), host.name.clone());
    let waited = crate::dns::lookup::from_namespace(&namespace, move |asker| {
        let Some(address) = address() else {
            return Ok(Ok(None));
        };
        let started = std::time::Instant::now();
        if let Some(server) = home {
            if !poll(HOME_DNS_TIMEOUT, eagerness.first_wait(), address, || {
                asker.query_a(server, &name, false)
            }) {
                return Ok(Err(format!(
                    "the home DNS did not hold {name} → {address} within {HOME_DNS_TIMEOUT:?}"
                )));
            }
        }
        if !poll(cache_bound, eagerness.first_wait(), address, || {
            asker.query_a(resolver, &name, true)
        }) {
            return Ok(Err(format!(
                "{name} did not resolve to {address} from {host_name} within {cache_bound:?}"
            )));
        }
        Ok(Ok(Some(started.elapsed())))
    })
    .map_err(|e| format!("cannot ask from {}: {e}", host.name))?;
    waited.map(|took| took.map(|took| (host.name.clone(), took)))
}

/// A check of a terminal's name begun before its address is known: the address goes in,
/// the outcome of [`wait_resolvable`] comes out.
type NameCheck = (
    std::sync::mpsc::Sender<std::net::Ipv4Addr>,
    tokio::task::JoinHandle<Result<Option<(String, Duration)>, String>>,
);

/// Starts checking `subscriber`'s name: the thread that asks enters the fixed host's
/// namespace and makes its runtime now, and asks as soon as it is given the address.
fn check_name(topology: &Topology, subscriber: &Subscriber, eagerness: Eagerness) -> NameCheck {
    let (address, given) = std::sync::mpsc::channel();
    let (topology, name, ttl) = (
        topology.clone(),
        subscriber.hostname.clone(),
        subscriber.ttl,
    );
    let outcome = tokio::task::spawn_blocking(move || {
        wait_resolvable(&topology, &name, ttl, eagerness, move || given.recv().ok())
    });
    (address, outcome)
}

/// Whether a terminal's home is told its address: an HLR that is not roamlab's (osmo-hlr)
/// keeps no DNS, and a network that does not update the home DNS tells it nothing.
fn home_keeps_dns(topology: &Topology, visited: &str, subscriber: &Subscriber) -> bool {
    let mode = topology.node(visited).map(|v| v.mode).unwrap_or_default();
    topology
        .node(&subscriber.home)
        .is_some_and(|h| h.external_hlr.is_none())
        && mode != crate::topology::Mode::NoUpdate
}

pub(crate) fn load(lab: &str) -> Result<(LabState, Topology), LabError> {
    let state = LabState::load(lab)
        .map_err(io_err(lab, "read state file"))?
        .filter(|s| s.phase == Phase::Running)
        .ok_or_else(|| LabError::NotFound {
            lab: lab.to_string(),
            running: running_list(),
        })?;
    let mut topology = crate::contract::model::read_or_parse(&LabDir::of(lab))
        .map_err(io_err(lab, "read the lab's topology"))?;
    topology.name = lab.to_string();
    Ok((state, topology))
}

/// Removes terminals' agents, links, namespaces and files from the kernel and the state.
/// `graceful`: SIGTERM first, all side by side (each agent detaches); otherwise the radio
/// links just drop. Goes on past failures, logging each.
async fn remove(state: &mut LabState, topology: &Topology, terminals: &[&str], graceful: bool) {
    let terminals: std::collections::HashSet<&str> = terminals.iter().copied().collect();
    let (mut agents, kept): (Vec<AgentRecord>, Vec<AgentRecord>) =
        std::mem::take(&mut state.agents)
            .into_iter()
            .partition(|a| terminals.contains(&a.node.as_str()));
    state.agents = kept;
    let (records, kept): (Vec<TerminalRecord>, Vec<TerminalRecord>) =
        std::mem::take(&mut state.terminals)
            .into_iter()
            .partition(|t| terminals.contains(&t.name.as_str()));
    state.terminals = kept;
    if graceful {
        // An agent whose `attach` was killed before it recorded it is stopped the same way,
        // so it too detaches and leaves no registration behind.
        let ids: std::collections::HashMap<(u64, u64), &TerminalRecord> = records
            .iter()
            .filter_map(|r| Some((crate::kernel::netns::identity(&r.namespace)?, r)))
            .collect();
        let keys: Vec<(u64, u64)> = ids.keys().copied().collect();
        let recorded: std::collections::HashSet<i32> = agents.iter().map(|a| a.pid).collect();
        for pid in crate::kernel::netns::pids_in(&keys) {
            let r = crate::kernel::netns::identity_of_pid(pid).and_then(|id| ids.get(&id));
            if let (false, Some(r)) = (recorded.contains(&pid), r) {
                agents.extend(AgentRecord::found(&r.name, &r.namespace, pid));
            }
        }
        for e in supervisor::stop_all(&agents, STOP_GRACE) {
            tracing::warn!("{e}");
        }
    } else {
        agents.iter().for_each(supervisor::kill_now);
    }
    // Hosted terminals are ended by their hosts (a host left with none ends itself).
    let mut hosts: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for r in &records {
        if let Some(host) = &r.host {
            hosts.entry(host.clone()).or_default().push(r.name.clone());
        }
    }
    let hosts: Vec<(String, Vec<String>)> = hosts.into_iter().collect();
    hosted::end(state, &hosts, graceful).await;
    if records.is_empty() {
        return;
    }
    for record in &records {
        let Some(s) = topology.subscribers.iter().find(|s| s.name == record.name) else {
            continue;
        };
        let link = LabDir::of(&state.lab).vlr_cell_link(&record.visited, &s.imsi);
        if let Err(e) = std::fs::remove_file(&link) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("{}: cannot remove {}: {e}", record.name, link.display());
            }
        }
    }
    let namespaces = records.iter().map(|r| r.namespace.clone()).collect();
    let mut report = super::TeardownReport::default();
    super::remove_namespaces(&state.lab, &namespaces, &mut report);
    for problem in report.errors.iter().chain(&report.left_alone) {
        tracing::warn!("{problem}");
    }
    state.namespaces.retain(|n| !namespaces.contains(n));
    remove_cell_ports(state, topology, &records).await;
}

/// How long the kernel gets to take a deleted namespace's links down with it.
const PORTS_GONE: Duration = Duration::from_secs(5);

/// Waits until the cell ends of removed terminals' links are gone, so that their next
/// attach finds the names free. The kernel removes a deleted namespace's links in one
/// batch, soon after; deleting each port here would wait out a grace period per link
/// (about 20 ms each). What is still there after [`PORTS_GONE`] is deleted one by one.
async fn remove_cell_ports(state: &LabState, topology: &Topology, records: &[TerminalRecord]) {
    let mut kernel = match NetlinkKernel::new(super::state::ledger(&state.lab)) {
        Ok(k) => k,
        Err(e) => return tracing::warn!("cannot reach the kernel: {e}"),
    };
    let mut ports: Vec<(String, String)> = records
        .iter()
        .filter_map(|r| {
            let bridge = cell_bridge(topology, &r.visited)?;
            Some((
                topology.namespace(&r.visited),
                format!("{bridge}-{}", r.name),
            ))
        })
        .collect();
    let deadline = std::time::Instant::now() + PORTS_GONE;
    while !ports.is_empty() && std::time::Instant::now() < deadline {
        let mut present = std::collections::HashSet::new();
        let visited: std::collections::BTreeSet<&String> = ports.iter().map(|(ns, _)| ns).collect();
        for ns in visited {
            // A visited network's namespace that is gone took its ports with it.
            if let Ok(found) = kernel.interfaces(ns).await {
                present.extend(found.into_iter().map(|i| (ns.clone(), i.name)));
            }
        }
        ports.retain(|p| present.contains(p));
        if !ports.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    for (ns, port) in ports {
        if let Err(e) = kernel.delete_link_named(&ns, &port).await {
            tracing::warn!("cannot delete {port}: {e}");
        }
    }
}

/// A terminal's link-layer address, chosen the way the kernel chooses one for a new
/// device (random, locally administered, unicast), but here, so that the plan carries it:
/// its cell port is locked to it and its VLR told it without asking the kernel back.
fn random_mac() -> std::io::Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    // SAFETY: getrandom writes at most `mac.len()` bytes into our buffer.
    let got = unsafe { libc::getrandom(mac.as_mut_ptr().cast(), mac.len(), 0) };
    if got != mac.len() as isize {
        return Err(std::io::Error::last_os_error());
    }
    mac[0] = (mac[0] & 0xfe) | 0x02;
    Ok(mac)
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

/// The first few of `names`, and how many more there are (a lab may have thousands).
fn some_of<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> String {
    const SHOWN: usize = 10;
    let total = names.len();
    let shown: Vec<&str> = names.take(SHOWN).collect();
    match total - shown.len() {
        0 => shown.join(", "),
        more => format!("{}, and {more} more", shown.join(", ")),
    }
}

/// The visited network terminals attach at: `at`, or the lab's only one.
fn visited_of(lab: &str, topology: &Topology, at: Option<&str>) -> Result<String, TerminalError> {
    let with_cell = |role: Role| -> Vec<&str> {
        (topology.nodes.iter())
            .filter(|n| n.role == role && n.vlr().is_some())
            .map(|n| n.name.as_str())
            .collect()
    };
    let visited_nodes = with_cell(Role::Visited);
    // A home network's own cell (Fig. 2) is attached at only when named.
    let home_cells = with_cell(Role::Home);
    let why = match (at, visited_nodes.as_slice()) {
        (Some(v), _) if visited_nodes.contains(&v) || home_cells.contains(&v) => {
            return Ok(v.to_string())
        }
        (None, [one]) => return Ok(one.to_string()),
        (Some(v), _) => format!(
            "{v} is not a visited network with a VLR (those are: {})",
            visited_nodes.join(", ")
        ),
        (None, []) => "the lab has no visited network with a VLR".into(),
        (None, many) => format!(
            "several visited networks ({}); name one with --at",
            many.join(", ")
        ),
    };
    Err(TerminalError::NoVisited {
        lab: lab.into(),
        why,
    })
}

/// The `names` a glob (`*` any run of characters, `?` any one) matches, in their order;
/// matching none is an error naming the pattern.
pub fn select(
    lab: &str,
    names: &[&str],
    pattern: &str,
    what: &str,
) -> Result<Vec<String>, TerminalError> {
    let matched: Vec<String> = names
        .iter()
        .filter(|n| glob_match(pattern, n))
        .map(|n| n.to_string())
        .collect();
    if matched.is_empty() {
        return Err(TerminalError::NoMatch {
            lab: lab.into(),
            pattern: pattern.into(),
            what: what.into(),
        });
    }
    Ok(matched)
}

/// Shell-style glob: `*` any run of characters, `?` any one; everything else itself.
fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// How far a bulk verb has got, for a progress line.
#[derive(Debug, Default)]
pub struct Progress {
    pub total: AtomicUsize,
    pub done: AtomicUsize,
    pub failed: AtomicUsize,
}

impl Progress {
    fn finished(&self, ok: bool) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Each terminal's outcome, in the order asked.
pub type Outcomes<T> = Vec<(String, Result<T, TerminalError>)>;

/// The index of the visited network's cell bridge `bridge` among its `links` (name,
/// index), and the first index after all of them (where a terminal's ports are put).
fn cell_port_indices(
    links: &[(String, u32)],
    visited_ns: &str,
    bridge: &str,
) -> Result<(u32, u32), String> {
    let master = links
        .iter()
        .find(|(name, _)| name == bridge)
        .map(|(_, index)| *index)
        .ok_or_else(|| format!("{visited_ns} has no bridge {bridge}"))?;
    let first_index = links
        .iter()
        .map(|(_, index)| *index)
        .max()
        .unwrap_or(LOOPBACK_INDEX)
        + 1;
    Ok((master, first_index))
}

/// A terminal's namespace, with IPv6 off and its loopback up.
fn namespace_plan(lab: &str, namespace: &str) -> Plan {
    Plan {
        lab: lab.to_string(),
        steps: vec![
            Step::CreateNamespace {
                namespace: namespace.into(),
                // `all` sets `default` too (the kernel's addrconf_disable_ipv6), so its link,
                // made next, comes without IPv6. One write, not two: each looks its path up
                // among every namespace's /proc/sys/net, and takes RTNL, spinning while
                // the rest of a bulk attach holds it.
                sysctls: vec![Sysctl {
                    key: "net/ipv6/conf/all/disable_ipv6".into(),
                    value: "1".into(),
                }],
            },
            Step::SetLinkUp {
                namespace: namespace.into(),
                interface: "lo".into(),
                index: LOOPBACK_INDEX,
            },
        ],
    }
}

/// A terminal's link: its port `port` on the visited network's cell bridge (index
/// `master`) at `index`, locked to the terminal's own address `mac`, and its eth0 up.
fn link_plan(
    lab: &str,
    namespace: &str,
    visited_ns: &str,
    port: &str,
    master: u32,
    index: u32,
    mac: [u8; 6],
) -> Plan {
    let steps = vec![
        Step::CreateVeth {
            namespace: visited_ns.into(),
            name: port.into(),
            index,
            master: Some(master),
            peer_namespace: namespace.into(),
            peer_name: "eth0".into(),
            peer_index: LOOPBACK_INDEX + 1,
            peer_mac: Some(mac),
        },
        // The terminal's link carries its own address only: it cannot pose as another
        // terminal on the cell.
        Step::LockPort {
            namespace: visited_ns.into(),
            interface: port.into(),
            index,
            peer_namespace: namespace.into(),
            peer_mac: mac,
        },
        Step::SetLinkUp {
            namespace: namespace.into(),
            interface: "eth0".into(),
            index: LOOPBACK_INDEX + 1,
        },
    ];
    Plan {
        lab: lab.to_string(),
        steps,
    }
}

/// A terminal whose kernel objects and files are in place, ready for its agent (or with
/// its agent started already, see [`supervisor::Gate`]).
struct Prepared {
    subscriber: Subscriber,
    namespace: String,
    spec: AgentSpec,
    config: TerminalConfig,
    started: Option<Started>,
}

/// An agent's start under way, on a blocking thread.
type Started = tokio::task::JoinHandle<Result<AgentRecord, SupervisorError>>;

/// Attaches one terminal (see [`attach_many`]).
pub async fn attach(
    lab: &str,
    terminal: &str,
    at: Option<&str>,
    setup: &TerminalSetup,
) -> Result<Attached, TerminalError> {
    let names = [terminal.to_string()];
    let mut outcomes = attach_many(lab, &names, at, setup, 1, &Progress::default()).await?;
    outcomes.pop().map(|(_, r)| r).unwrap_or_else(|| {
        Err(TerminalError::NotAttached {
            lab: lab.into(),
            terminal: terminal.into(),
        })
    })
}

/// How a terminal's agent runs: the DHCP client it uses for its address (`builtin`, a stock
/// client's name, or `none`), and the host name it claims at attach (claim 23: the visited
/// network learns it from the terminal, and its home must hold the same name).
#[derive(Debug, Clone)]
pub struct TerminalSetup {
    pub dhcp_client: String,
    pub host_name: Option<String>,
}

impl Default for TerminalSetup {
    fn default() -> Self {
        TerminalSetup {
            dhcp_client: "builtin".into(),
            host_name: None,
        }
    }
}

/// Attaches terminals at a visited network, `parallel` agents starting at a time. The lab
/// is locked while their namespaces, links and files are made (recorded in the state
/// first), then the agents attach side by side. A terminal that fails is removed again and
/// named with its reason; the others go on.
pub async fn attach_many(
    lab: &str,
    terminals: &[String],
    at: Option<&str>,
    setup: &TerminalSetup,
    parallel: usize,
    progress: &Progress,
) -> Result<Outcomes<Attached>, TerminalError> {
    let started = std::time::Instant::now();
    progress.total.store(terminals.len(), Ordering::Relaxed);
    let lock = lock_lab(lab)?;
    let (mut state, topology) = load(lab)?;
    let visited = visited_of(lab, &topology, at)?;
    let bridge = cell_bridge(&topology, &visited).ok_or_else(|| TerminalError::NoVisited {
        lab: lab.into(),
        why: format!("{visited} has no cell bridge"),
    })?;
    let mut outcomes: Outcomes<Attached> = Vec::new();
    let fail = |terminal: &str, e: TerminalError, outcomes: &mut Outcomes<Attached>| {
        progress.finished(false);
        outcomes.push((terminal.to_string(), Err(e)));
    };

    // Everything checked before the kernel is touched.
    let mut chosen: Vec<(Subscriber, String)> = Vec::new();
    for terminal in terminals {
        let Some(subscriber) = topology.subscribers.iter().find(|s| &s.name == terminal) else {
            let e = TerminalError::UnknownTerminal {
                lab: lab.into(),
                terminal: terminal.clone(),
                known: some_of(topology.subscribers.iter().map(|s| s.name.as_str())),
            };
            fail(terminal, e, &mut outcomes);
            continue;
        };
        let port = format!("{bridge}-{terminal}");
        if port.len() > crate::topology::MAX_IFNAME {
            let e = TerminalError::NoVisited {
                lab: lab.into(),
                why: format!(
                    "the cell port name {port} is longer than 15 bytes; use a shorter terminal name"
                ),
            };
            fail(terminal, e, &mut outcomes);
            continue;
        }
        chosen.push((subscriber.clone(), port));
    }

    // Terminals attached elsewhere move: their old radio links are lost without a detach.
    let moving: Vec<&str> = chosen.iter().map(|(s, _)| s.name.as_str()).collect();
    remove(&mut state, &topology, &moving, false).await;
    let visited_ns = topology.namespace(&visited);
    let mut kernel =
        NetlinkKernel::new(super::state::ledger(lab)).map_err(io_err(lab, "prepare /run/netns"))?;
    kernel.share_files_with(&visited_ns);
    // The visited network's links are read (for its cell bridge's index and the next free
    // one) while the first terminal's namespace is made.
    let visited_links = kernel
        .link_indices(&visited_ns)
        .map_err(io_err(lab, format!("read {visited_ns}")))?;
    let mut visited_links = tokio::spawn(visited_links);
    let mut cell_indices: Option<Result<(u32, u32), String>> = None;
    let hosted = hosted::hosts(chosen.len(), &setup.dhcp_client);
    let single_agent = !hosted && chosen.len() == 1;
    // Recorded before the kernel is touched, so a crash leaves them findable.
    for (subscriber, _) in &chosen {
        let namespace = topology.namespace(&subscriber.name);
        state.namespaces.push(namespace.clone());
        state.terminals.push(TerminalRecord {
            name: subscriber.name.clone(),
            visited: visited.clone(),
            namespace,
            imsi: subscriber.imsi.clone(),
            host: None,
        });
    }
    state.save().map_err(io_err(lab, "write state file"))?;

    let dir = LabDir::of(lab);
    let never = AtomicBool::new(false);
    // Hosted terminals go to their hosts a chunk at a time, each host attaching its chunk
    // while the next one is made (making namespaces and links is the kernel's work on
    // one core; attaching is the agents' on the other).
    let (chunks, ready) = futures::channel::mpsc::unbounded::<HostChunk>();
    // Terminals' namespaces and files are made a few at a time, ahead of their links: each
    // waits mostly on a thread of its own and on the kernel, and the links, made one by
    // one on the visited network, need them in order.
    let files_from = std::sync::Arc::new(FilesFrom {
        topology: topology.clone(),
        dir: dir.clone(),
        visited: visited.clone(),
        setup: setup.clone(),
    });
    // One terminal's agent of its own starts first: its process is made while its node
    // is, and waits to enter it.
    let mut early = match (single_agent, chosen.first()) {
        (true, Some((subscriber, _))) => {
            Some(Early::start(&dir, &terminal_spec(&files_from, subscriber)))
        }
        _ => None,
    };
    let template = kernel.another();
    let (ahead, mut made_ahead) = futures::channel::mpsc::channel(NAMESPACES_AHEAD);
    let make_ahead = futures::stream::iter(chosen)
        .map(|(subscriber, port)| {
            let (mut own, from) = (template.another(), files_from.clone());
            async move {
                let made =
                    make_namespace(lab, &mut own, &subscriber, from, hosted, !single_agent).await;
                (subscriber, port, own, made)
            }
        })
        .buffered(NAMESPACES_AHEAD)
        .enumerate()
        .map(Ok)
        .forward(ahead);
    let link = async {
        let mut prepared = Vec::new();
        let mut undo: Vec<String> = Vec::new();
        while let Some((i, (subscriber, port, own, made))) = made_ahead.next().await {
            let terminal = subscriber.name.clone();
            let namespace = topology.namespace(&terminal);
            kernel.adopt(own);
            // One terminal's agent of its own was started before its node was made (see
            // `early` above); it enters the node now, and attaches once the link and the
            // cell's record of it are there.
            let made = match (made, early.take().transpose()) {
                (Ok(made), Ok(early)) => Ok((made, early)),
                (Ok(_), Err(e)) => Err(io_err(lab, format!("start {terminal}"))(e).into()),
                (Err(e), early) => {
                    if let Ok(Some(early)) = early {
                        early.call_off().await;
                    }
                    Err(e)
                }
            };
            let ((spec, config), early) = match made {
                Ok(made) => made,
                Err(e) => {
                    undo.push(terminal.clone());
                    fail(&terminal, e, &mut outcomes);
                    continue;
                }
            };
            let (gate, started) = match early {
                Some(Early { node, run, started }) => {
                    // An agent that ended meanwhile says why when its start is awaited.
                    let _ = node.open();
                    (Some(run), Some(started))
                }
                None => (None, None),
            };
            if cell_indices.is_none() {
                let read = (&mut visited_links)
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                cell_indices = Some(
                    read.map_err(|e| format!("cannot read {visited_ns}: {e}"))
                        .and_then(|links| cell_port_indices(&links, &visited_ns, &bridge)),
                );
            }
            let linked = match cell_indices.clone().expect("read above") {
                Ok((master, first_index)) => {
                    let index = first_index + i as u32;
                    let prepare_failed = |e| io_err(lab, format!("prepare {terminal}"))(e).into();
                    let mac = config.mac;
                    let link = link_plan(lab, &namespace, &visited_ns, &port, master, index, mac);
                    match executor::apply(&mut kernel, &link, &never).await {
                        Ok(()) => record_cell_link(&dir, &subscriber, &visited, mac)
                            .map_err(prepare_failed),
                        Err(e) => Err(TerminalError::Kernel {
                            terminal: terminal.clone(),
                            cause: e,
                        }),
                    }
                }
                Err(why) => Err(TerminalError::NoVisited {
                    lab: lab.into(),
                    why,
                }),
            };
            match linked {
                Ok(()) => {
                    // An agent that ended meanwhile says why when its start is awaited.
                    if let Some(gate) = gate {
                        let _ = gate.open();
                    }
                    prepared.push(Prepared {
                        subscriber,
                        namespace,
                        spec,
                        config,
                        started,
                    })
                }
                Err(e) => {
                    drop(gate);
                    // Its gate went closed: an agent started early ends by itself.
                    if let Some(started) = started {
                        if let Ok(Ok(agent)) = started.await {
                            supervisor::kill_now(&agent);
                        }
                    }
                    undo.push(terminal.clone());
                    fail(&terminal, e, &mut outcomes);
                }
            }
            if hosted && prepared.len() == HOST_CHUNK {
                let chunk = std::mem::take(&mut prepared);
                let _ = chunks.unbounded_send(start_host(
                    lab, &topology, &visited, &mut state, chunk, parallel,
                ));
            }
        }
        if hosted && !prepared.is_empty() {
            let chunk = std::mem::take(&mut prepared);
            let _ = chunks.unbounded_send(start_host(
                lab, &topology, &visited, &mut state, chunk, parallel,
            ));
        }
        drop(chunks);
        if !undo.is_empty() {
            let undo: Vec<&str> = undo.iter().map(String::as_str).collect();
            remove(&mut state, &topology, &undo, false).await;
            state.save().map_err(io_err(lab, "write state file"))?;
        }
        // The attaches themselves run without the lock, side by side.
        drop(lock);
        Ok::<_, TerminalError>(prepared)
    };
    // The namespaces are made while the links of those before them are.
    let prepare = async { futures::join!(make_ahead, link).1 };
    let attach_chunks = ready
        .map(|(host, chunk)| attach_hosted(lab, &topology, &visited, host, chunk, progress))
        .buffer_unordered(HOST_CHUNKS_AT_ONCE)
        .concat();
    let (prepared, hosted_outcomes) = futures::join!(prepare, attach_chunks);
    let prepared = prepared?;

    let agents = if hosted {
        hosted_outcomes
    } else {
        futures::stream::iter(prepared)
            .map(|p| run_attach(lab, &topology, &visited, p, progress))
            .buffer_unordered(parallel.max(1))
            .collect::<Vec<_>>()
            .await
    };

    // The outcomes go into the state at once: agents of terminals still recorded (a
    // `detach` meanwhile may have removed one), and failed terminals removed.
    let _lock = LabLock::take(lab).map_err(io_err(lab, "lock the lab"))?;
    let mut state = LabState::load(lab)
        .map_err(io_err(lab, "read state file"))?
        .unwrap_or(state);
    let registrations = crate::contract::published::read_attached(&dir.vlr_attached(&visited));
    let mut failed = Vec::new();
    for (terminal, agent, result) in agents {
        match agent {
            // Recorded when it started.
            Some(agent) if agent.kind == hosted::HOST_KIND => {}
            Some(agent) if state.terminals.iter().any(|t| t.name == terminal) => {
                state.agents.push(agent)
            }
            Some(agent) => supervisor::kill_now(&agent),
            None => failed.push(terminal.clone()),
        }
        let result = result.map(|mut a| {
            a.registration = registrations.iter().find(|r| r.imsi == a.imsi).cloned();
            a
        });
        outcomes.push((terminal, result));
    }
    let failed: Vec<&str> = failed.iter().map(String::as_str).collect();
    remove(&mut state, &topology, &failed, false).await;
    state.save().map_err(io_err(lab, "write state file"))?;
    // In the order asked.
    let order: std::collections::HashMap<&String, usize> =
        terminals.iter().enumerate().map(|(i, t)| (t, i)).collect();
    outcomes.sort_by_key(|(t, _)| order.get(t).copied().unwrap_or(usize::MAX));
    tracing::debug!(
        "attach of {} terminals took {:?}",
        terminals.len(),
        started.elapsed()
    );
    Ok(outcomes)
}

/// How many terminals' namespaces and files a bulk attach makes ahead of their links.
const NAMESPACES_AHEAD: usize = 4;

/// What the terminals of one attach have their files written from.
struct FilesFrom {
    topology: Topology,
    dir: LabDir,
    visited: String,
    setup: TerminalSetup,
}

/// Makes one terminal's namespace on `kernel`, then its files: on a blocking thread when
/// `aside`, so that other terminals' work goes on meanwhile.
async fn make_namespace(
    lab: &str,
    kernel: &mut NetlinkKernel,
    subscriber: &Subscriber,
    from: std::sync::Arc<FilesFrom>,
    hosted: bool,
    aside: bool,
) -> Result<(AgentSpec, TerminalConfig), TerminalError> {
    let terminal = subscriber.name.clone();
    let namespace = from.topology.namespace(&terminal);
    let own = namespace_plan(lab, &namespace);
    executor::apply(kernel, &own, &AtomicBool::new(false))
        .await
        .map_err(|cause| TerminalError::Kernel {
            terminal: terminal.clone(),
            cause,
        })?;
    let subscriber = subscriber.clone();
    let write = move || write_terminal_files(&from, &subscriber, hosted);
    let written = match aside {
        true => tokio::task::spawn_blocking(write)
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e))),
        false => write(),
    };
    written.map_err(|e| io_err(lab, format!("prepare {terminal}"))(e).into())
}

/// A terminal's agent started before its node is made: its process enters the node when
/// the first gate opens, and attaches when the second does.
struct Early {
    node: supervisor::Gate,
    run: supervisor::Gate,
    started: Started,
}

impl Early {
    fn start(dir: &LabDir, spec: &AgentSpec) -> std::io::Result<Early> {
        let (node, node_end) = supervisor::Gate::new()?;
        let (run, run_end) = supervisor::Gate::new()?;
        let (spec, log_dir) = (spec.clone(), dir.logs());
        let started = tokio::task::spawn_blocking(move || {
            let never = AtomicBool::new(false);
            let ends = supervisor::GateEnds {
                node: Some(node_end),
                run: Some(run_end),
            };
            supervisor::start_gated(&spec, &log_dir, ATTACH_TIMEOUT, &never, ends)
        });
        Ok(Early { node, run, started })
    }

    /// Calls the start off: the agent, its gates dropped closed, ends by itself; one that
    /// got as far as ready is stopped.
    async fn call_off(self) {
        drop((self.node, self.run));
        if let Ok(Ok(agent)) = self.started.await {
            supervisor::kill_now(&agent);
        }
    }
}

/// Records a terminal's link for its VLR: the VLR takes this address, not the one the
/// terminal reports, as the terminal's (the port is locked to it).
fn record_cell_link(
    dir: &LabDir,
    subscriber: &Subscriber,
    visited: &str,
    mac: [u8; 6],
) -> std::io::Result<()> {
    write_cell_link(&dir.vlr_cell_link(visited, &subscriber.imsi), &mac)
}

/// Writes a terminal's config, log and /etc files; returns how its agent starts.
fn write_terminal_files(
    from: &FilesFrom,
    subscriber: &Subscriber,
    hosted: bool,
) -> std::io::Result<(AgentSpec, TerminalConfig)> {
    let FilesFrom { topology, dir, .. } = from;
    // Chosen here, so that its agent need not ask its link (see `random_mac`).
    let config = terminal_config(from, subscriber, hosted, random_mac()?);
    let terminal = &subscriber.name;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir.terminal_dir(terminal))?;
    // A host has its terminals' configs in its own.
    if !hosted {
        crate::events::create(&config.events_file)?;
        json_file::write_private_json(&dir.terminal_config(terminal), &config)?;
    }
    etc::write_node(topology, terminal)?;
    Ok((terminal_spec(from, subscriber), config))
}

/// A terminal's config, its link's address `mac` in it: what [`write_terminal_files`]
/// writes.
fn terminal_config(
    from: &FilesFrom,
    subscriber: &Subscriber,
    hosted: bool,
    mac: [u8; 6],
) -> TerminalConfig {
    let FilesFrom {
        dir,
        visited,
        setup,
        ..
    } = from;
    let terminal = &subscriber.name;
    TerminalConfig {
        name: terminal.clone(),
        imsi: subscriber.imsi.clone(),
        k: hex(&subscriber.k),
        opc: hex(&subscriber.opc),
        claim_host_name: setup.host_name.clone(),
        host_name: Some(subscriber.hostname.clone()),
        cell_socket: dir.cell_socket(visited),
        state_file: dir.terminal_state(terminal),
        // A device of its own writes its own log: the lab's is not the device's to write
        // (see `events::Tail`). A host is the lab's agent, and writes the lab's.
        events_file: if hosted {
            dir.events()
        } else {
            dir.terminal_events(terminal)
        },
        interface: "eth0".into(),
        dhcp: setup.dhcp_client != "none",
        dhcp_client: setup.dhcp_client.clone(),
        http_port: subscriber.http_port,
        mac,
    }
}

/// How a terminal's own agent starts: in its node, confined, from its config's file.
fn terminal_spec(from: &FilesFrom, subscriber: &Subscriber) -> AgentSpec {
    let FilesFrom {
        topology,
        dir,
        visited,
        ..
    } = from;
    let terminal = &subscriber.name;
    let cell_socket = dir.cell_socket(visited);
    // The subscriber's device sees its own files (its log among them) and its cell.
    let view = View::Confined {
        grants: vec![
            dir.terminal_dir(terminal),
            cell_socket
                .parent()
                .map(|p| p.to_path_buf())
                .unwrap_or_default(),
        ],
    };
    AgentSpec {
        node: terminal.clone(),
        name: "terminal".into(),
        kind: "terminal".into(),
        namespace: topology.namespace(terminal),
        args: vec![
            "--config".into(),
            dir.terminal_config(terminal).display().to_string(),
        ],
        view,
    }
}

/// Starts one terminal's agent and waits until its name resolves: (terminal, the agent if
/// it runs, the outcome). An agent that runs stays even when its name does not resolve.
async fn run_attach(
    lab: &str,
    topology: &Topology,
    visited: &str,
    mut p: Prepared,
    progress: &Progress,
) -> (String, Option<AgentRecord>, Result<Attached, TerminalError>) {
    let dir = LabDir::of(lab);
    let terminal = p.subscriber.name.clone();
    let refused = |why: String| refusal(&terminal, visited, why);
    // The name's check gets ready while the agent starts and attaches.
    let check = home_keeps_dns(topology, visited, &p.subscriber)
        .then(|| check_name(topology, &p.subscriber, Eagerness::One));
    let (spec, log_dir) = (p.spec.clone(), dir.logs());
    let started = match p.started.take() {
        Some(started) => started,
        None => tokio::task::spawn_blocking(move || {
            supervisor::start(&spec, &log_dir, ATTACH_TIMEOUT, &AtomicBool::new(false))
        }),
    };
    let started = started.await.unwrap_or_else(|e| {
        Err(SupervisorError::Spawn {
            agent: format!("{terminal}/terminal"),
            cause: e.to_string(),
        })
    });
    let agent = match started {
        Ok(agent) => agent,
        Err(cause) => {
            progress.finished(false);
            let terminal_state = TerminalState::read(&dir.terminal_state(&terminal));
            let e = match terminal_state.refusal() {
                Some(why) => refused(with_network_reason(&dir, &p.subscriber.imsi, why)),
                None => TerminalError::Agent {
                    terminal: terminal.clone(),
                    cause,
                },
            };
            return (terminal, None, Err(e));
        }
    };
    let result = settle(lab, topology, visited, &p, &agent, check).await;
    progress.finished(result.is_ok());
    (terminal, Some(agent), result)
}

fn refusal(terminal: &str, visited: &str, why: String) -> TerminalError {
    TerminalError::Refused {
        terminal: terminal.to_string(),
        visited: visited.to_string(),
        why,
    }
}

/// What a terminal whose agent says it attached achieved: its address, and how long its
/// name took to resolve (unless its home keeps no DNS). Refused if its name does not
/// resolve (its agent stays). The name is checked by `check` if one was begun early, else
/// by one begun here at a bulk attach's pace.
async fn settle(
    lab: &str,
    topology: &Topology,
    visited: &str,
    p: &Prepared,
    agent: &AgentRecord,
    check: Option<NameCheck>,
) -> Result<Attached, TerminalError> {
    let dir = LabDir::of(lab);
    let terminal = p.subscriber.name.clone();
    let refused = |why: String| refusal(&terminal, visited, why);
    let terminal_state = TerminalState::read(&dir.terminal_state(&terminal));
    let mode = topology.node(visited).map(|v| v.mode).unwrap_or_default();
    // A check begun early and not needed ends when its sender goes.
    let resolvable = match terminal_state.address {
        Some(address) if home_keeps_dns(topology, visited, &p.subscriber) => {
            let (give, outcome) =
                check.unwrap_or_else(|| check_name(topology, &p.subscriber, Eagerness::Many));
            let _ = give.send(address);
            outcome
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
                .map_err(&refused)?
        }
        _ => None,
    };
    Ok(Attached {
        imsi: p.subscriber.imsi.clone(),
        registration: None,
        terminal: terminal.clone(),
        visited: visited.to_string(),
        namespace: p.namespace.clone(),
        agent: agent.clone(),
        address: terminal_state.address,
        resolvable,
        host_name: p.subscriber.hostname.clone(),
        mode,
    })
}

/// Each terminal's outcome: (terminal, its agent if it runs, what it achieved).
type Outcome = (String, Option<AgentRecord>, Result<Attached, TerminalError>);

/// How many terminals one terminal host takes, and how many hosts attach at once.
const HOST_CHUNK: usize = 128;
const HOST_CHUNKS_AT_ONCE: usize = 16;

/// A host started for a chunk of prepared terminals (or why it could not be), and them.
type HostChunk = (Result<AgentRecord, String>, Vec<Prepared>);

/// Starts a terminal host for `prepared` (recorded in the state, namespaces and files
/// made), recording it in `state` (the caller holds the lab's lock).
fn start_host(
    lab: &str,
    topology: &Topology,
    visited: &str,
    state: &mut LabState,
    prepared: Vec<Prepared>,
    parallel: usize,
) -> HostChunk {
    let terminals = prepared
        .iter()
        .map(|p| HostedTerminal {
            namespace: p.namespace.clone(),
            config: p.config.clone(),
        })
        .collect();
    let host = hosted::start(lab, topology, visited, state, terminals, parallel);
    (host, prepared)
}

/// Attaches a chunk of terminals through the host started for them, `parallel` of them at a
/// time; each is checked by name as soon as the host says it settled.
async fn attach_hosted(
    lab: &str,
    topology: &Topology,
    visited: &str,
    host: Result<AgentRecord, String>,
    prepared: Vec<Prepared>,
    progress: &Progress,
) -> Vec<Outcome> {
    let fail_all = |prepared: &mut dyn Iterator<Item = Prepared>, why: &str| -> Vec<Outcome> {
        prepared
            .map(|p| {
                progress.finished(false);
                let e = refusal(&p.subscriber.name, visited, why.to_string());
                (p.subscriber.name, None, Err(e))
            })
            .collect()
    };
    let host = match host {
        Ok(host) => host,
        Err(why) => return fail_all(&mut prepared.into_iter(), &why),
    };
    let settled = match hosted::watch(lab, &host).await {
        Ok(settled) => settled,
        Err(why) => return fail_all(&mut prepared.into_iter(), &why),
    };
    let parallel = prepared.len().max(1);
    let mut waiting: std::collections::HashMap<String, Prepared> = prepared
        .into_iter()
        .map(|p| (p.subscriber.name.clone(), p))
        .collect();
    let mut outcomes: Vec<Outcome> = settled
        .filter_map(|name| futures::future::ready(waiting.remove(&name)))
        .map(|p| settle_hosted(lab, topology, visited, p, &host, progress))
        .buffer_unordered(parallel)
        .collect()
        .await;
    let why = format!(
        "its terminal host {} ended before it settled: {}",
        host.name,
        supervisor::log_tail(&host.log)
    );
    outcomes.extend(fail_all(&mut waiting.into_values(), &why));
    outcomes
}

/// One terminal its host says settled: refused (its state says why), or attached and
/// checked by name.
async fn settle_hosted(
    lab: &str,
    topology: &Topology,
    visited: &str,
    p: Prepared,
    host: &AgentRecord,
    progress: &Progress,
) -> Outcome {
    let dir = LabDir::of(lab);
    let terminal = p.subscriber.name.clone();
    let state = TerminalState::read(&dir.terminal_state(&terminal));
    if !state.registered || state.refusal().is_some() {
        progress.finished(false);
        let why = state
            .refusal()
            .map(|why| with_network_reason(&dir, &p.subscriber.imsi, why))
            .unwrap_or_else(|| "it ended without attaching".into());
        let e = refusal(&terminal, visited, why);
        return (terminal, None, Err(e));
    }
    let result = settle(lab, topology, visited, &p, host, None).await;
    progress.finished(result.is_ok());
    (terminal, Some(host.clone()), result)
}

/// Reads the reason out of an event's fields.
type EventReason = fn(&serde_json::Map<String, serde_json::Value>) -> Option<String>;

/// A terminal's refusal with what the visited network said of it, which the terminal cannot
/// know: for want of an address, the DHCP server's last `no lease` event (the pool it ran
/// out of, say: a DHCP server does not answer a DISCOVER it cannot serve); for an illegal
/// MS, the VLR's `host name refused` (the name claimed, and the one its home holds).
fn with_network_reason(dir: &LabDir, imsi: &str, why: String) -> String {
    let (event, said): (&str, EventReason) = if why.contains("no address") {
        ("no lease", |f| Some(f.get("why")?.as_str()?.to_string()))
    } else if why.contains("illegal MS") {
        ("host name refused", |f| {
            let (claimed, own) = (f.get("claimed")?.as_str()?, f.get("own")?.as_str()?);
            Some(format!("it claimed {claimed}, and its home holds {own}"))
        })
    } else {
        return why;
    };
    let events = crate::events::read_all(dir).unwrap_or_default();
    let said = events
        .iter()
        .rev()
        .find(|e| e.event == event && e.terminal.as_deref() == Some(imsi))
        .and_then(|e| Some((e.agent.clone(), said(&e.fields)?)));
    match said {
        Some((agent, reason)) => format!("{why} ({agent}: {reason})"),
        None => why,
    }
}

/// Detaches one terminal (see [`detach_many`]); returns the visited network it was at.
pub async fn detach(lab: &str, terminal: &str) -> Result<String, TerminalError> {
    let names = [terminal.to_string()];
    let mut outcomes = detach_many(lab, &names, &Progress::default()).await?;
    outcomes.pop().map(|(_, r)| r).unwrap_or_else(|| {
        Err(TerminalError::NotAttached {
            lab: lab.into(),
            terminal: terminal.into(),
        })
    })
}

/// The terminals attached to a running lab.
pub fn attached(lab: &str) -> Result<Vec<String>, TerminalError> {
    let (state, _) = load(lab)?;
    Ok(state.terminals.into_iter().map(|t| t.name).collect())
}

/// The subscribers of a running lab.
pub fn subscribers(lab: &str) -> Result<Vec<String>, TerminalError> {
    let (_, topology) = load(lab)?;
    Ok(topology.subscribers.into_iter().map(|s| s.name).collect())
}

/// Detaches terminals side by side (each agent sends its detach, its VLR purges it at
/// home) and removes them; each outcome is the visited network it was at.
pub async fn detach_many(
    lab: &str,
    terminals: &[String],
    progress: &Progress,
) -> Result<Outcomes<String>, TerminalError> {
    progress.total.store(terminals.len(), Ordering::Relaxed);
    let _lock = lock_lab(lab)?;
    let (mut state, topology) = load(lab)?;
    let mut outcomes = Vec::new();
    let mut present = Vec::new();
    for terminal in terminals {
        match state.terminals.iter().find(|t| &t.name == terminal) {
            Some(record) => {
                present.push(terminal.as_str());
                outcomes.push((terminal.clone(), Ok(record.visited.clone())));
            }
            None => {
                progress.finished(false);
                let e = TerminalError::NotAttached {
                    lab: lab.into(),
                    terminal: terminal.clone(),
                };
                outcomes.push((terminal.clone(), Err(e)));
            }
        }
    }
    remove(&mut state, &topology, &present, true).await;
    state.save().map_err(io_err(lab, "write state file"))?;
    for _ in &present {
        progress.finished(true);
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_the_shell() {
        for (pattern, name, expected) in [
            ("t*", "t1", true),
            ("t*", "t", true),
            ("t*", "phone1", false),
            ("*1", "phone1", true),
            ("t?", "t1", true),
            ("t?", "t10", false),
            ("*o*e*", "phone1", true),
            ("phone1", "phone1", true),
            ("phone1", "phone10", false),
            ("**", "", true),
            ("a*b*c", "aXbYbc", true),
            ("a*b*c", "aXbYbcd", false),
        ] {
            assert_eq!(glob_match(pattern, name), expected, "{pattern} ~ {name}");
        }
    }

    #[test]
    fn a_glob_that_matches_nothing_is_named() {
        let names = ["phone1", "server1", "t1", "t2"];
        assert_eq!(
            select("roam", &names, "t*", "subscriber").unwrap(),
            ["t1", "t2"]
        );
        let e = select("roam", &names, "x*", "subscriber").unwrap_err();
        assert_eq!(e.to_string(), "lab roam has no subscriber matching x*");
    }

    /// A terminal's port goes on the cell bridge, at the first index after every link
    /// the visited network has; a network without that bridge is named with it.
    #[test]
    fn a_port_goes_on_the_cell_bridge_after_every_link() {
        let links = [
            ("lo".to_string(), 1),
            ("cell".to_string(), 7),
            ("v-core".to_string(), 12),
            ("cell-t1".to_string(), 9),
        ];
        assert_eq!(
            cell_port_indices(&links, "roam-visited", "cell"),
            Ok((7, 13))
        );
        assert_eq!(
            cell_port_indices(&links, "roam-visited", "radio"),
            Err("roam-visited has no bridge radio".to_string())
        );
    }
}
