//! The private signaling network of the lab (patent: private network 124): Unix-domain
//! stream sockets in the lab's state directory, mode 0600, which the lab's IP network has
//! no route to. This module holds their paths, the agents' configuration files (written
//! at `up`), and the IPA link helpers the HLR, VLR and terminal share.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::json_file;
use crate::protocols::gsup::Message;
use crate::protocols::ipa::{self, Frame, IpaError};
use crate::topology::{Role, Service, Topology};

/// How long a request may wait for its answer before it fails with a cause.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a new peer has to identify itself (or a terminal to speak) before it is dropped.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(3);

/// The private network's sockets, each alone in a directory of its own: a directory is
/// what an agent is granted, so that it reaches a restarted peer's new socket too.
pub fn dir(lab_dir: &Path) -> PathBuf {
    lab_dir.join("signaling")
}

pub fn hlr_socket(lab_dir: &Path, home: &str) -> PathBuf {
    dir(lab_dir).join(format!("hlr-{home}")).join("hlr.sock")
}

/// The cell's air-interface socket.
pub fn cell_socket(lab_dir: &Path, visited: &str) -> PathBuf {
    dir(lab_dir)
        .join(format!("cell-{visited}"))
        .join("cell.sock")
}

pub fn vlr_local_socket(lab_dir: &Path, visited: &str) -> PathBuf {
    dir(lab_dir)
        .join(format!("local-{visited}"))
        .join("local.sock")
}

/// An agent's own directory: its configuration and the state it keeps (`hlr-home`,
/// `vlr-visited`, `dhcp-visited`). Only that agent is granted it (and a VLR's is read by
/// its node's DHCP agent, for the attached list).
pub fn agent_dir(lab_dir: &Path, kind: &str, node: &str) -> PathBuf {
    lab_dir.join(format!("{kind}-{node}"))
}

pub fn hlr_config_path(lab_dir: &Path, home: &str) -> PathBuf {
    agent_dir(lab_dir, "hlr", home).join("config.json")
}

pub fn vlr_config_path(lab_dir: &Path, visited: &str) -> PathBuf {
    agent_dir(lab_dir, "vlr", visited).join("config.json")
}

/// The VLR's list of attached terminals, rewritten on every change (for `status`).
pub fn vlr_attached_path(lab_dir: &Path, visited: &str) -> PathBuf {
    agent_dir(lab_dir, "vlr", visited).join("attached.json")
}

pub fn dhcp_config_path(lab_dir: &Path, visited: &str) -> PathBuf {
    agent_dir(lab_dir, "dhcp", visited).join("config.json")
}

/// The network a VLR agent serves, from its configuration's path.
pub fn vlr_of_config(config: &Path) -> Option<String> {
    config
        .parent()?
        .file_name()?
        .to_str()?
        .strip_prefix("vlr-")
        .map(String::from)
}

/// A terminal's own directory: its configuration (K and OPc: its SIM), its SQN_MS and
/// its stock DHCP client's files. The only lab state the terminal itself can see.
pub fn terminal_dir(lab_dir: &Path, terminal: &str) -> PathBuf {
    lab_dir.join("terminals").join(terminal)
}

pub fn terminal_config_path(lab_dir: &Path, terminal: &str) -> PathBuf {
    terminal_dir(lab_dir, terminal).join("config.json")
}

pub fn terminal_state_path(lab_dir: &Path, terminal: &str) -> PathBuf {
    terminal_dir(lab_dir, terminal).join("state.json")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlrConfig {
    /// The home network's node name.
    pub name: String,
    pub socket: PathBuf,
    /// Sequence numbers and locations, kept across restarts.
    pub state_file: PathBuf,
    pub events_file: PathBuf,
    /// VLRs (visited networks) with a roaming agreement.
    pub partners: Vec<String>,
    /// The address pools of those networks: the only session addresses they may report.
    #[serde(default)]
    pub partner_pools: Vec<super::hlr::PartnerPool>,
    pub subscribers: Vec<SubscriberRecord>,
    /// The home DNS zone the HLR keeps terminals' forward records in.
    pub dns: Option<DnsTarget>,
}

/// A zone an agent updates by TSIG-signed RFC 2136, and the key to sign with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsTarget {
    pub server: std::net::SocketAddr,
    pub zone: String,
    pub key_name: String,
    pub key_file: PathBuf,
    pub ttl: u32,
}

impl DnsTarget {
    pub fn update_target(&self) -> io::Result<crate::dns::update::UpdateTarget> {
        let secret = std::fs::read(&self.key_file)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.key_file.display())))?;
        Ok(crate::dns::update::UpdateTarget {
            server: self.server,
            zone: self.zone.clone(),
            key: crate::dns::keys::TsigKey {
                name: self.key_name.clone(),
                secret,
            },
            ttl: self.ttl,
        })
    }

    /// The target for `zone` if `node` serves it in `topology`.
    pub fn of(topology: &Topology, lab_dir: &Path, node: &str, zone: &str) -> Option<Self> {
        let (address, _) = topology.dns_of(node)?;
        let z = topology
            .zones
            .iter()
            .find(|z| z.server == node && z.name == zone)?;
        Some(DnsTarget {
            server: std::net::SocketAddr::new(address, 53),
            zone: z.fqdn(),
            key_name: crate::dns::keys::key_name(node),
            key_file: crate::dns::keys::raw_path(&crate::dns::config::keys_dir(lab_dir), node),
            ttl: z.ttl,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriberRecord {
    pub name: String,
    pub imsi: String,
    pub msisdn: Option<String>,
    pub host_name: String,
    /// K and OPc, hex.
    pub k: String,
    pub opc: String,
    pub roaming: bool,
    pub packet_data: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VlrConfig {
    pub name: String,
    pub cell_socket: PathBuf,
    /// Where the visited network's DHCP agent reaches the VLR.
    pub local_socket: PathBuf,
    pub attached_file: PathBuf,
    pub events_file: PathBuf,
    pub partners: Vec<PartnerHlr>,
}

/// A home network this VLR has an agreement with, and how to reach its HLR.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerHlr {
    pub network: String,
    pub plmn: String,
    pub socket: PathBuf,
    /// An HLR that is not roamlab's, reached over TCP (GSUP over IPA, as osmo-hlr serves it)
    /// instead of the private network's socket.
    #[serde(default)]
    pub address: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalConfig {
    pub name: String,
    pub imsi: String,
    pub k: String,
    pub opc: String,
    /// The host name the terminal says is its own (claim 23), if it says one.
    pub claim_host_name: Option<String>,
    pub cell_socket: PathBuf,
    /// The highest sequence number the terminal has accepted (its SQN_MS), kept across
    /// attaches as a USIM keeps it.
    pub state_file: PathBuf,
    pub events_file: PathBuf,
    /// Its link into the cell.
    pub interface: String,
    /// Take an address by DHCP after attaching.
    pub dhcp: bool,
    /// Which DHCP client: builtin, dhclient, udhcpc or dhcpcd.
    #[serde(default = "builtin_client")]
    pub dhcp_client: String,
    /// Serve HTTP on this port (a mobile server, claim 21).
    pub http_port: Option<u16>,
}

pub fn hex_key(hex: &str) -> io::Result<[u8; 16]> {
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(hex.as_bytes())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a key is not 32 hex digits"))
}

pub fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// Writes the HLR and VLR configurations of a new lab.
pub fn prepare_lab(topology: &Topology, lab_dir: &Path) -> io::Result<()> {
    private_dir(&dir(lab_dir))?;
    let events_file = crate::events::path(lab_dir);
    // Every path an agent is granted exists before the agent starts.
    crate::events::create(&events_file)?;
    let socket_dir = |socket: PathBuf| private_dir(socket.parent().expect("a socket's directory"));
    let runs = |node: &crate::topology::Node, kind: &Service| node.services.contains(kind);
    for node in &topology.nodes {
        if node.role == Role::Home && runs(node, &Service::Hlr) {
            let visited: Vec<&crate::topology::Node> = topology
                .nodes
                .iter()
                .filter(|v| v.role == Role::Visited && v.partners.contains(&node.name))
                .collect();
            let partners = visited.iter().map(|v| v.name.clone()).collect();
            let partner_pools = visited
                .iter()
                .flat_map(|v| {
                    v.bridges.iter().filter_map(|b| {
                        b.pool.map(|p| super::hlr::PartnerPool {
                            network: v.name.clone(),
                            start: p.start,
                            end: p.end,
                        })
                    })
                })
                .collect();
            let subscribers = topology
                .subscribers
                .iter()
                .filter(|s| s.home == node.name)
                .map(|s| SubscriberRecord {
                    name: s.name.clone(),
                    imsi: s.imsi.clone(),
                    msisdn: s.msisdn.clone(),
                    host_name: s.hostname.clone(),
                    k: hex(&s.k),
                    opc: hex(&s.opc),
                    roaming: s.roaming,
                    packet_data: s.packet_data,
                })
                .collect();
            private_dir(&agent_dir(lab_dir, "hlr", &node.name))?;
            socket_dir(hlr_socket(lab_dir, &node.name))?;
            let config = HlrConfig {
                name: node.name.clone(),
                socket: hlr_socket(lab_dir, &node.name),
                state_file: agent_dir(lab_dir, "hlr", &node.name).join("state.json"),
                events_file: events_file.clone(),
                partners,
                partner_pools,
                subscribers,
                dns: node
                    .domain
                    .as_deref()
                    .and_then(|d| DnsTarget::of(topology, lab_dir, &node.name, d)),
            };
            json_file::write_private_json(&hlr_config_path(lab_dir, &node.name), &config)?;
        }
        if node.role == Role::Visited && runs(node, &Service::Vlr) {
            let partners = node
                .partners
                .iter()
                .filter_map(|p| topology.node(p))
                .filter_map(|home| {
                    Some(PartnerHlr {
                        network: home.name.clone(),
                        plmn: home.plmn.clone()?,
                        socket: hlr_socket(lab_dir, &home.name),
                        address: home.external_hlr,
                    })
                })
                .collect();
            private_dir(&agent_dir(lab_dir, "vlr", &node.name))?;
            socket_dir(cell_socket(lab_dir, &node.name))?;
            socket_dir(vlr_local_socket(lab_dir, &node.name))?;
            let config = VlrConfig {
                name: node.name.clone(),
                cell_socket: cell_socket(lab_dir, &node.name),
                local_socket: vlr_local_socket(lab_dir, &node.name),
                attached_file: vlr_attached_path(lab_dir, &node.name),
                events_file: events_file.clone(),
                partners,
            };
            json_file::write_private_json(&vlr_config_path(lab_dir, &node.name), &config)?;
        }
        if node.role == Role::Visited
            && node
                .services
                .iter()
                .any(|s| matches!(s, Service::Dhcp { .. }))
        {
            if let Some(config) = dhcp_config(topology, lab_dir, node) {
                private_dir(&agent_dir(lab_dir, "dhcp", &node.name))?;
                json_file::write_private_json(&dhcp_config_path(lab_dir, &node.name), &config)?;
            }
        }
    }
    Ok(())
}

fn dhcp_config(
    topology: &Topology,
    lab_dir: &Path,
    node: &crate::topology::Node,
) -> Option<super::dhcp::DhcpConfig> {
    let bridge = node.bridges.iter().find(|b| b.pool.is_some())?;
    let pool = bridge.pool?;
    let (std::net::IpAddr::V4(start), std::net::IpAddr::V4(end)) = (pool.start, pool.end) else {
        return None;
    };
    let own = bridge.addresses.iter().find_map(|a| match a {
        ipnet::IpNet::V4(v4) if v4.contains(&start) => Some(*v4),
        _ => None,
    })?;
    let dns_servers = match topology.resolver() {
        Some(std::net::IpAddr::V4(r)) => vec![r],
        _ => Vec::new(),
    };
    let reverse_zones = topology
        .zones
        .iter()
        .filter(|z| z.server == node.name && z.name.ends_with("in-addr.arpa"))
        .filter_map(|z| DnsTarget::of(topology, lab_dir, &node.name, &z.name))
        .collect();
    Some(super::dhcp::DhcpConfig {
        name: node.name.clone(),
        interface: bridge.name.clone(),
        server_ip: own.addr(),
        prefix_len: own.prefix_len(),
        pool_start: start,
        pool_end: end,
        router: own.addr(),
        dns_servers,
        lease_secs: node
            .services
            .iter()
            .find_map(|s| match s {
                Service::Dhcp { lease_secs } => Some(*lease_secs),
                _ => None,
            })
            .unwrap_or(crate::topology::DEFAULT_LEASE_SECS),
        vlr_attached: vlr_attached_path(lab_dir, &node.name),
        vlr_local_socket: vlr_local_socket(lab_dir, &node.name),
        leases_file: agent_dir(lab_dir, "dhcp", &node.name).join("leases.json"),
        queue_file: agent_dir(lab_dir, "dhcp", &node.name).join("queue.json"),
        reverse_zones,
        events_file: crate::events::path(lab_dir),
    })
}

/// Makes a directory (and its parents) that only root can enter.
pub fn private_dir(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

/// Binds a Unix socket readable and writable by root only, replacing a stale one (its
/// directory is made, root only, if it is not there).
pub fn bind_private(path: &Path) -> io::Result<tokio::net::UnixListener> {
    if let Some(parent) = path.parent() {
        private_dir(parent)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// How many connections a listener serves at once, and from one peer process.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub total: usize,
    pub per_peer: usize,
}

/// Accepts connections for ever and hands each to `serve` on a task of its own, within
/// `limits` (a connection over a limit is closed at once; the refusals are logged at a
/// bounded rate, per peer). Running out of descriptors or memory (EMFILE, ENFILE,
/// ENOBUFS, ENOMEM) is logged and waited out, never the end of the listener.
pub async fn serve_connections<F, Fut>(
    listener: tokio::net::UnixListener,
    what: &'static str,
    limits: Limits,
    serve: F,
) where
    F: Fn(tokio::net::UnixStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use std::collections::HashMap;
    use std::time::Instant;
    let open = Arc::new(std::sync::Mutex::new(HashMap::<i32, usize>::new()));
    let mut refusals = super::ratelimit::RateLimited::new(Duration::from_secs(10));
    let mut failures = super::ratelimit::RateLimited::new(Duration::from_secs(10));
    let mut backoff = Duration::from_millis(5);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(5);
                stream
            }
            Err(e) => {
                let kind = e.raw_os_error().unwrap_or(0);
                if let Some(n) = failures.note(&kind, Instant::now()) {
                    tracing::warn!(
                        "{what}: accept failed ({e}), {n} time(s); waiting and serving on"
                    );
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let pid = stream.peer_cred().ok().and_then(|c| c.pid()).unwrap_or(0);
        let admitted = {
            let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
            let total: usize = open.values().sum();
            let mine = open.entry(pid).or_insert(0);
            if total >= limits.total || *mine >= limits.per_peer {
                false
            } else {
                *mine += 1;
                true
            }
        };
        if !admitted {
            if let Some(n) = refusals.note(&pid, Instant::now()) {
                tracing::warn!(
                    peer_pid = pid,
                    "{what}: connection refused: over the limit of {} per peer or {} in all ({n} refused)",
                    limits.per_peer,
                    limits.total
                );
            }
            continue;
        }
        let work = serve(stream);
        let open = open.clone();
        tokio::spawn(async move {
            work.await;
            let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = open.get_mut(&pid) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&pid);
                }
            }
        });
    }
}

/// Where a peer must be, for [`peer_agent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerNode {
    /// In this agent's own node (network namespace).
    Same,
    /// In any node.
    Any,
}

/// Whether the peer of `stream` is this lab's own agent of `kind` in this node, by what
/// the kernel says of it, not by anything it sends: its network namespace is ours, its
/// executable is ours, it was started as `roamlab agent KIND`, and it has not been
/// confined (a process in a node has lost SYS_ADMIN from its bounding set).
pub fn peer_is_agent(stream: &tokio::net::UnixStream, kind: &str) -> Result<(), String> {
    peer_agent(stream, kind, PeerNode::Same).map(drop)
}

/// As [`peer_is_agent`], in the node `node` says; returns the peer's configuration file
/// (its `--config`), which names the network it serves.
pub fn peer_agent(
    stream: &tokio::net::UnixStream,
    kind: &str,
    node: PeerNode,
) -> Result<PathBuf, String> {
    use std::os::unix::fs::MetadataExt;
    let pid = stream
        .peer_cred()
        .ok()
        .and_then(|c| c.pid())
        .ok_or("the peer's credentials are unknown")?;
    let id = |path: String| {
        std::fs::metadata(&path)
            .map(|m| (m.dev(), m.ino()))
            .map_err(|e| format!("{path}: {e}"))
    };
    if node == PeerNode::Same
        && id(format!("/proc/{pid}/ns/net"))? != id("/proc/self/ns/net".into())?
    {
        return Err(format!("process {pid} is in another node"));
    }
    if id(format!("/proc/{pid}/exe"))? != id("/proc/self/exe".into())? {
        return Err(format!("process {pid} is not a roamlab agent"));
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).map_err(|e| e.to_string())?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    if args.get(1) != Some(&&b"agent"[..]) || args.get(2) != Some(&kind.as_bytes()) {
        return Err(format!("process {pid} is not the {kind} agent"));
    }
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    if bounding & CAP_SYS_ADMIN == 0 {
        return Err(format!("process {pid} is confined (a process of the node)"));
    }
    let config = args
        .windows(2)
        .find(|w| w[0] == b"--config")
        .map(|w| PathBuf::from(String::from_utf8_lossy(w[1]).to_string()))
        .ok_or_else(|| format!("process {pid} has no configuration"))?;
    Ok(config)
}

/// The sending half of a signaling link (a Unix socket, or TCP to an external HLR),
/// shareable between tasks.
#[derive(Clone)]
pub struct Sender(Arc<Mutex<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>>);

impl Sender {
    pub fn new(half: impl tokio::io::AsyncWrite + Send + Unpin + 'static) -> Self {
        Sender(Arc::new(Mutex::new(Box::new(half))))
    }

    pub async fn frame(&self, frame: &Frame) -> Result<(), IpaError> {
        let mut w = self.0.lock().await;
        ipa::write_frame(&mut *w, frame).await
    }

    pub async fn gsup(&self, message: &Message) -> Result<(), IpaError> {
        let bytes = message
            .try_encode()
            .map_err(|e| IpaError::Io(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        self.frame(&Frame::Gsup(bytes)).await
    }
}

/// Reads frames until a GSUP one arrives, answering pings on the way.
pub async fn next_gsup<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    sender: &Sender,
) -> Result<Vec<u8>, IpaError> {
    loop {
        match ipa::read_frame(reader).await? {
            Frame::Gsup(bytes) => return Ok(bytes),
            Frame::Ping => sender.frame(&Frame::Pong).await?,
            _ => {}
        }
    }
}

/// How long a client waits for ID_ACK or ID_NACK after its identity: roamlab's HLR
/// answers at once; osmo-hlr never does, and the link is up all the same.
const ID_ACK_WAIT: Duration = Duration::from_millis(200);

/// Client side of the identity exchange, as libosmocore's GSUP client does it: answers
/// ID_GET with every tag asked for that it has (unit name and serial number: `name`; unit
/// ID: `0/0/0`), then takes ID_ACK, or silence, as accepted, and ID_NACK as refused.
pub async fn identify<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    sender: &Sender,
    name: &str,
) -> Result<(), String> {
    let asked = async {
        loop {
            match ipa::read_frame(reader).await.map_err(|e| e.to_string())? {
                Frame::IdGet(tags) => return Ok::<_, String>(tags),
                Frame::Ping => sender
                    .frame(&Frame::Pong)
                    .await
                    .map_err(|e| e.to_string())?,
                _ => {}
            }
        }
    };
    let tags = tokio::time::timeout(HELLO_TIMEOUT, asked)
        .await
        .unwrap_or_else(|_| Err("no identity exchange".to_string()))?;
    let items: Vec<(u8, String)> = tags
        .iter()
        .filter_map(|tag| match *tag {
            ipa::TAG_UNIT_NAME | ipa::TAG_SERIAL => Some((*tag, name.to_string())),
            ipa::TAG_UNIT_ID => Some((*tag, "0/0/0".to_string())),
            _ => None,
        })
        .collect();
    sender
        .frame(&Frame::IdResp(items))
        .await
        .map_err(|e| e.to_string())?;
    let answer = async {
        loop {
            match ipa::read_frame(reader).await.map_err(|e| e.to_string())? {
                Frame::IdAck => return Ok(()),
                Frame::IdNack => {
                    return Err("the HLR refused our identity (no roaming agreement)".to_string())
                }
                Frame::Ping => sender
                    .frame(&Frame::Pong)
                    .await
                    .map_err(|e| e.to_string())?,
                _ => {}
            }
        }
    };
    tokio::time::timeout(ID_ACK_WAIT, answer)
        .await
        .unwrap_or(Ok(()))
}

fn builtin_client() -> String {
    "builtin".to_string()
}
