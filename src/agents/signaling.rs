//! The private signaling network of the lab (patent: private network 124): Unix-domain
//! stream sockets in the lab's state directory, mode 0600, which the lab's IP network has
//! no route to. This module holds their paths, the agents' configuration files (written
//! at `up`), and the IPA link helpers the HLR, VLR and terminal share.

use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Mutex;

use crate::protocols::gsup::Message;
use crate::protocols::ipa::{self, Frame, IpaError};
use crate::topology::{Role, Service, Topology};

/// How long a request may wait for its answer before it fails with a cause.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a new peer has to identify itself (or a terminal to speak) before it is dropped.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(3);

pub fn dir(lab_dir: &Path) -> PathBuf {
    lab_dir.join("signaling")
}

pub fn hlr_socket(lab_dir: &Path, home: &str) -> PathBuf {
    dir(lab_dir).join(format!("hlr-{home}.sock"))
}

pub fn cell_socket(lab_dir: &Path, visited: &str) -> PathBuf {
    dir(lab_dir).join(format!("cell-{visited}.sock"))
}

pub fn hlr_config_path(lab_dir: &Path, home: &str) -> PathBuf {
    dir(lab_dir).join(format!("hlr-{home}.json"))
}

pub fn vlr_config_path(lab_dir: &Path, visited: &str) -> PathBuf {
    dir(lab_dir).join(format!("vlr-{visited}.json"))
}

/// The VLR's list of attached terminals, rewritten on every change (for `status`).
pub fn vlr_attached_path(lab_dir: &Path, visited: &str) -> PathBuf {
    dir(lab_dir).join(format!("vlr-{visited}.attached.json"))
}

pub fn terminal_config_path(lab_dir: &Path, terminal: &str) -> PathBuf {
    dir(lab_dir).join(format!("terminal-{terminal}.json"))
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
    pub subscribers: Vec<SubscriberRecord>,
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

/// Writes JSON readable by root only (configurations hold subscriber keys).
pub fn write_private_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
    }
    std::fs::rename(&tmp, path)
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> io::Result<T> {
    let bytes = std::fs::read(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// Writes the HLR and VLR configurations of a new lab.
pub fn prepare_lab(topology: &Topology, lab_dir: &Path) -> io::Result<()> {
    let sig = dir(lab_dir);
    std::fs::create_dir_all(&sig)?;
    std::fs::set_permissions(&sig, std::fs::Permissions::from_mode(0o700))?;
    let events_file = crate::events::path(lab_dir);
    let runs = |node: &crate::topology::Node, kind: &Service| node.services.contains(kind);
    for node in &topology.nodes {
        if node.role == Role::Home && runs(node, &Service::Hlr) {
            let partners = topology
                .nodes
                .iter()
                .filter(|v| v.role == Role::Visited && v.partners.contains(&node.name))
                .map(|v| v.name.clone())
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
            let config = HlrConfig {
                name: node.name.clone(),
                socket: hlr_socket(lab_dir, &node.name),
                state_file: sig.join(format!("hlr-{}.state.json", node.name)),
                events_file: events_file.clone(),
                partners,
                subscribers,
            };
            write_private_json(&hlr_config_path(lab_dir, &node.name), &config)?;
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
                    })
                })
                .collect();
            let config = VlrConfig {
                name: node.name.clone(),
                cell_socket: cell_socket(lab_dir, &node.name),
                attached_file: vlr_attached_path(lab_dir, &node.name),
                events_file: events_file.clone(),
                partners,
            };
            write_private_json(&vlr_config_path(lab_dir, &node.name), &config)?;
        }
    }
    Ok(())
}

/// Binds a Unix socket readable and writable by root only, replacing a stale one.
pub fn bind_private(path: &Path) -> io::Result<tokio::net::UnixListener> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// The sending half of a signaling link, shareable between tasks.
#[derive(Clone)]
pub struct Sender(Arc<Mutex<OwnedWriteHalf>>);

impl Sender {
    pub fn new(half: OwnedWriteHalf) -> Self {
        Sender(Arc::new(Mutex::new(half)))
    }

    pub async fn frame(&self, frame: &Frame) -> Result<(), IpaError> {
        let mut w = self.0.lock().await;
        ipa::write_frame(&mut *w, frame).await
    }

    pub async fn gsup(&self, message: &Message) -> Result<(), IpaError> {
        self.frame(&Frame::Gsup(message.encode())).await
    }
}

/// Reads frames until a GSUP one arrives, answering pings on the way.
pub async fn next_gsup(reader: &mut OwnedReadHalf, sender: &Sender) -> Result<Vec<u8>, IpaError> {
    loop {
        match ipa::read_frame(reader).await? {
            Frame::Gsup(bytes) => return Ok(bytes),
            Frame::Ping => sender.frame(&Frame::Pong).await?,
            _ => {}
        }
    }
}

/// Client side of the identity exchange: answers ID_GET with our name, waits for ID_ACK.
pub async fn identify(
    reader: &mut OwnedReadHalf,
    sender: &Sender,
    name: &str,
) -> Result<(), String> {
    let exchange = async {
        loop {
            match ipa::read_frame(reader).await.map_err(|e| e.to_string())? {
                Frame::IdGet(_) => sender
                    .frame(&Frame::IdResp(vec![(ipa::TAG_UNIT_NAME, name.to_string())]))
                    .await
                    .map_err(|e| e.to_string())?,
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
    tokio::time::timeout(HELLO_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err("no identity exchange".to_string()))
}
